"""The real DVC pipeline (dvc.yaml + params.yaml) in a fresh repo, on tiny params."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = {
    ("strategy", "population_size"): 8,
    ("model", "hidden"): 8,
    ("train", "num_generations"): 3,
    ("train", "images_per_class"): 2,
    ("train", "eval_every"): 1,
    ("data", "val_size"): 500,
    ("train", "val_images"): 500,
    ("train", "device"): "cpu",
}


def set_params(repo: Path, values: dict[tuple[str, ...], object]) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for (*sections, key), value in values.items():
        node = params
        for section in sections:
            node = node[section]
        node[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def repo(tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project (code, params.yaml, dvc.yaml) as a fresh git + DVC repo."""
    repo = tmp_path / "repo"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "genreg", repo / "genreg", ignore=ignore)
    shutil.copytree(ROOT / "dvc_plots", repo / "dvc_plots", ignore=ignore)
    for name in ("params.yaml", "dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    set_params(repo, TINY)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("GENREG_DATA_DIR", str(mnist_dir))  # as .ci/run does
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "genreg tests")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "tests@genreg.invalid")
    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    return repo


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{output}"
    return output


def ran(output: str) -> set[str]:
    return {
        s
        for s in ("fetch", "prepare", "train", "evaluate")
        if f"Running stage '{s}'" in output
    }


def test_repro_noop_rerun_and_push_pull(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ran(run("dvc", "repro")) == {"fetch", "prepare", "train", "evaluate"}
    lock = (repo / "dvc.lock").read_text()
    assert str(repo.parent) not in lock and "GENREG_DATA_DIR" not in lock
    best = repo / "runs" / "train" / "checkpoints" / "best.npz"
    assert best.exists() and (repo / "runs" / "evaluate" / "metrics.json").exists()
    assert (repo / "runs" / "train" / "mlflow_run_id").exists()
    assert "up to date" in run("dvc", "status")
    assert ran(run("dvc", "repro")) == set()
    # an experiment in a temporary copy (as queued ones run) finds the raw data in
    # the DVC cache: no GENREG_DATA_DIR, no network, no absolute path needed
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "pipeline")  # experiments start from a commit
    monkeypatch.delenv("GENREG_DATA_DIR")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    assert "Running stage 'train'" in run(
        "dvc", "exp", "run", "--temp", "-S", "train.num_generations=2"
    )
    run(
        "dvc", "plots", "show", "--html-template", "dvc_plots/template.html", "-o", "pl"
    )
    page = (repo / "pl" / "index.html").read_text()
    assert "vegaEmbed(" in page and "cdn.jsdelivr" not in page  # renders offline

    meta = repo / "data" / "prepared" / "meta.json"
    meta_mtime = meta.stat().st_mtime_ns
    set_params(repo, {("strategy", "mutation_scale"): 0.05})
    status = run("dvc", "status")
    assert "prepare:" not in status and "train:" in status
    assert ran(run("dvc", "repro")) == {"train", "evaluate"}
    assert meta.stat().st_mtime_ns == meta_mtime
    assert "up to date" in run("dvc", "status")

    before = sha256(best)
    assert "pushed" in run("dvc", "push")
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data" / "prepared")
    shutil.rmtree(repo / "runs" / "train" / "checkpoints")
    assert "deleted" in run("dvc", "status")
    run("dvc", "pull")
    assert sha256(best) == before and meta.exists()
    assert "up to date" in run("dvc", "status")

    # a preset wins over the keys params.yaml leaves at their defaults; the tiny
    # sizes above differ from the defaults, so they still win over the preset's
    from genreg.checkpoint import load_genome

    set_params(repo, {("strategy", "mutation_scale"): 0.1})  # back to its default
    assert ran(run("dvc", "exp", "run", "-S", "preset=fast")) == {"train", "evaluate"}
    config = load_genome(best).meta["config"]
    assert config["preset"] == "fast" and config["strategy"]["name"] == "lowrank_es"
    assert config["strategy"]["population_size"] == 8
    assert config["train"]["num_generations"] == 3


def test_params_yaml_lists_every_config_key_with_its_default() -> None:
    from genreg.config import Config, load_params

    def flatten(node: dict, prefix: str = "") -> dict:
        flat = {}
        for key, value in node.items():
            if isinstance(value, dict):
                flat.update(flatten(value, f"{prefix}{key}."))
            else:
                flat[prefix + key] = value
        return flat

    written = flatten(yaml.safe_load((ROOT / "params.yaml").read_text()))
    defaults = Config().flat()
    assert sorted(set(defaults) - set(written)) == []
    # the trust GA's knobs, no other strategy's
    knobs = {k for k in written if k.startswith("strategy.")}
    assert knobs == {k for k in defaults if k.startswith("strategy.")}
    loaded = load_params(ROOT / "params.yaml").flat()
    changed = {k for k in defaults if loaded[k] != defaults[k]}
    assert changed == set()  # params.yaml holds the genreg-paper values, no paths
