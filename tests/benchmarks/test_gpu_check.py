"""benchmarks/gpu_check.sh in its CPU smoke: every step runs and prints its figures,
and a failing step makes the check exit non-zero while the later steps still run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
SMOKE = {
    "GPU_CHECK_SMOKE": "1",
    "GPU_CHECK_DEVICE": "cpu",
    "GPU_CHECK_FAST_SECONDS": "2",
    "GPU_CHECK_PAPER_GENERATIONS": "3",
}


def gpu_check(data: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--data", str(data)],
        env={
            **os.environ,
            "PYTHON": sys.executable,
            "GPU_CHECK_OUT": str(out),
            **SMOKE,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


def result_line(stdout: str, label: str) -> dict[str, str]:
    """The key=value fields of timed_run.py's `RESULT <label>:` line."""
    match = re.search(rf"^RESULT {re.escape(label)}: (.*)$", stdout, re.MULTILINE)
    assert match, f"no RESULT line for {label}"
    return dict(field.split("=", 1) for field in match.group(1).split())


def test_smoke_runs_every_step_and_prints_its_figures(
    small_mnist: Path, tmp_path: Path
) -> None:
    done = gpu_check(small_mnist, tmp_path / "out")
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    if not torch.cuda.is_available():
        assert out.startswith("no CUDA device: running the CPU smoke")
    assert "gpu_check: mode smoke, device cpu" in out
    assert re.search(r"^python 3\.\S+, torch \S+", out, re.MULTILINE)
    assert re.search(r"^\d+ (skipped|passed)", out, re.MULTILINE)  # the gpu tests
    # throughput: the engine comparison, the trust GA and lowrank_es tables
    assert re.search(r"^full generation : +\d+\.\d+ s", out, re.MULTILINE)
    assert re.search(r"^ +60 \|( +\d+\.\d+ \|){4} +\d+\.\dx$", out, re.MULTILINE)
    for population in (100, 200):  # generation, then the forward: plain, today's, ratio
        row = rf"^ +{population} \|( +[\d,.]+ \|){{4}} +\d+\.\dx$"
        assert re.search(row, out, re.MULTILINE)
    fast = result_line(out, "fast-2s")
    assert fast["device"] == "cpu" and fast["stop"] == "max_seconds"
    assert {"t90_s", "t95_s"} <= fast.keys()
    assert 0.0 <= float(fast["test"]) <= 1.0 and fast["test_images"] == "100"
    paper = result_line(out, "genreg-paper-3g")
    assert paper["generations"] == "3" and paper["stop"] == "num_generations"
    assert 0.0 <= float(paper["test"]) <= 1.0
    summary = out[out.index("gpu_check summary") :]
    for step in ("device", "gpu_tests", "throughput", "fast", "genreg_paper"):
        assert re.search(rf"^{step} +\d+ s  OK$", summary, re.MULTILINE), step
    assert out.rstrip().endswith("gpu_check: all steps passed")
    assert (tmp_path / "out" / "fast" / "checkpoints" / "best.npz").is_file()


def test_a_failing_step_fails_the_check_and_the_rest_still_run(
    small_mnist: Path, tmp_path: Path
) -> None:
    # an odd ES population is refused (members come in +/- pairs)
    done = gpu_check(
        small_mnist,
        tmp_path / "out",
        GPU_CHECK_FORWARD="20 20 21",
        GPU_CHECK_FAST_SECONDS="0.5",
        GPU_CHECK_PAPER_GENERATIONS="1",
    )
    assert done.returncode == 1, done.stdout[-3000:]
    summary = done.stdout[done.stdout.index("gpu_check summary") :]
    assert re.search(r"^throughput +\d+ s  FAILED \(exit 1\)$", summary, re.MULTILINE)
    assert re.search(r"^genreg_paper +\d+ s  OK$", summary, re.MULTILINE)
    assert summary.rstrip().endswith("gpu_check: FAILED")
