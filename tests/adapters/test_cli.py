"""The command line: help that teaches; bad input fails early and names the cause."""

from __future__ import annotations

from pathlib import Path

import pytest

from genreg.adapters.cli import COMMANDS, main

TINY = [
    "-S",
    "strategy.population_size=8",
    "-S",
    "model.hidden=8",
    "-S",
    "train.num_generations=2",
    "-S",
    "train.images_per_class=2",
    "-S",
    "train.val_images=200",
    "--no-progress",
]


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from an empty folder, so the project's params.yaml is not read."""
    monkeypatch.chdir(tmp_path)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_help_explains_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "trust-based evolution" in text
    for name in COMMANDS:
        assert name in text
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "--params" in capsys.readouterr().out


def test_unknown_key_fails_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("strategy:\n  mutation_scal: 0.1\n")
    code, text = run_cli(
        capsys,
        "train",
        "-p",
        str(params),
        "--data",
        str(tmp_path / "nodata"),
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert code == 2
    assert "strategy.mutation_scal: unknown key" in text and "mutation_scale" in text
    assert not (tmp_path / "run").exists()


def test_bad_value_and_bad_override(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, text = run_cli(
        capsys,
        "train",
        "-S",
        "strategy.predictions=maybe",
        "--out",
        str(tmp_path / "run"),
    )
    assert code == 2 and "['sample', 'argmax']" in text
    code, text = run_cli(
        capsys, "train", "-S", "model.hidden", "--out", str(tmp_path / "run")
    )
    assert code == 2 and "key=value" in text


def test_missing_data_is_reported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, text = run_cli(
        capsys,
        "train",
        "--data",
        str(tmp_path / "nodata"),
        "--out",
        str(tmp_path / "run"),
        *TINY,
    )
    assert code == 2 and "meta.json" in text and "genreg prepare" in text


def test_corrupt_checkpoint_is_reported_and_kept(
    capsys: pytest.CaptureFixture[str], small_mnist: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    code, _ = run_cli(
        capsys, "train", "--data", str(small_mnist), "--out", str(run), *TINY
    )
    assert code == 0
    best = run / "checkpoints" / "best.npz"
    last = run / "checkpoints" / "last.npz"
    for path in (best, last):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncate
    before = last.read_bytes()
    code, text = run_cli(
        capsys,
        "evaluate",
        "--data",
        str(small_mnist),
        "--checkpoint",
        str(best),
        "--out",
        str(tmp_path / "eval"),
    )
    assert code == 2 and str(best) in text and "corrupt or truncated" in text
    code, text = run_cli(
        capsys,
        "train",
        "--data",
        str(small_mnist),
        "--out",
        str(run),
        "--resume",
        *TINY,
    )
    assert code == 2 and str(last) in text
    assert last.read_bytes() == before
    code, text = run_cli(
        capsys,
        "evaluate",
        "--data",
        str(small_mnist),
        "--checkpoint",
        str(tmp_path / "none.npz"),
        "--out",
        str(tmp_path / "e"),
    )
    assert code == 2 and "not found" in text


def test_train_then_evaluate(
    capsys: pytest.CaptureFixture[str], small_mnist: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    assert (
        run_cli(capsys, "train", "--data", str(small_mnist), "--out", str(run), *TINY)[
            0
        ]
        == 0
    )
    code, text = run_cli(
        capsys,
        "evaluate",
        "--data",
        str(small_mnist),
        "--checkpoint",
        str(run / "checkpoints" / "best.npz"),
        "--out",
        str(tmp_path / "eval"),
    )
    assert code == 0 and "test_accuracy" in text
    assert (tmp_path / "eval" / "metrics.json").exists()


def test_train_max_seconds_flag(
    capsys: pytest.CaptureFixture[str], small_mnist: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data", str(small_mnist), "--out", str(run), *TINY]
    code, text = run_cli(
        capsys, *argv, "--max-seconds", "0.5", "-S", "train.num_generations=100000"
    )
    assert code == 0 and '"stop_reason": "max_seconds"' in text
    code, text = run_cli(capsys, *argv, "--max-seconds", "-1", "--overwrite")
    assert code == 2 and "train.max_seconds: -1.0 is out of range" in text
