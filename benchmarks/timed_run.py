"""One real train-stage run on a device, then the evaluate stage: seconds to validation
thresholds, and the test accuracy of the best-by-validation genome.

    python benchmarks/timed_run.py --preset fast --device cuda --max-seconds 60
    python benchmarks/timed_run.py --preset genreg-paper --device cuda --generations 600

`genreg.stages.train` runs the preset with train.device, train.max_seconds and
train.num_generations (with --max-seconds alone, a million generations: the clock
decides), checkpointing only at the end. The time to a threshold is the sum of
metrics.csv's seconds_per_generation (each generation's search and, every eval_every
generations, validation) up to the first validation that reaches it. The best genome
(selected on validation) is then scored on the test split by `genreg.stages.evaluate`
(numpy, on the CPU). The last line, `RESULT <label>: key=value ...`, is for scripts
such as benchmarks/gpu_check.sh.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curves import read_curve  # noqa: E402

from genreg.config import (  # noqa: E402
    Config,
    build_config,
    parse_override,
    with_overrides,
)
from genreg.rundir import RunDir  # noqa: E402
from genreg.stages.evaluate import evaluate  # noqa: E402
from genreg.stages.train import TrainSummary, resolve_device, train  # noqa: E402

UNBOUNDED_GENERATIONS = 1_000_000


def run_config(
    preset: str,
    device: str,
    max_seconds: float,
    generations: int | None,
    overrides: Sequence[str] = (),
) -> Config:
    """The preset with the device, the budget and `overrides` (key=value) applied."""
    if generations is None and max_seconds > 0:
        generations = UNBOUNDED_GENERATIONS
    chosen: dict[str, Any] = {"train.device": device, "train.max_seconds": max_seconds}
    if generations is not None:
        chosen["train.num_generations"] = generations
    chosen.update(parse_override(text) for text in overrides)
    cfg = build_config({"preset": preset}, chosen)
    if "train.checkpoint_every" in chosen:
        return cfg
    # one checkpoint, at the end: rewriting the growing metrics.csv every 50
    # generations would eat into a time budget
    return with_overrides(cfg, {"train.checkpoint_every": cfg.train.num_generations})


def time_to(
    seconds: Sequence[float], values: Sequence[float], threshold: float
) -> float | None:
    """Seconds at the first validation reaching `threshold`, or None."""
    return next((t for t, v in zip(seconds, values) if v >= threshold), None)


def timed_run(
    cfg: Config, data_dir: Path, out_dir: Path, thresholds: Sequence[float]
) -> dict[str, Any]:
    """Train and evaluate in `out_dir`; the figures as a flat dict."""
    started = time.perf_counter()
    summary: TrainSummary = train(cfg, data_dir, out_dir, overwrite=True)
    run = RunDir(out_dir)
    _, seconds, values = read_curve(out_dir)
    metrics = evaluate(cfg, data_dir, run.best, out_dir / "eval")
    result: dict[str, Any] = {
        "device": summary.device,
        "generations": summary.num_generations,
        "search_s": round(summary.wall_seconds, 2),
        "ms_per_generation": round(summary.seconds_per_generation * 1000, 3),
        "stop": summary.stop_reason,
    }
    for threshold in thresholds:
        reached = time_to(seconds, values, threshold)
        result[threshold_key(threshold)] = (
            None if reached is None else round(reached, 2)
        )
    result["best_val"] = round(summary.best_val_accuracy, 4)
    result["best_generation"] = summary.best_generation
    result["test"] = round(metrics["test_accuracy"], 4)
    result["test_images"] = metrics["num_images"]
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def threshold_key(threshold: float) -> str:
    """'t90_s' for 0.90: the result's key of the seconds to reach it."""
    return f"t{round(threshold * 100)}_s"


def report(
    label: str, cfg: Config, result: dict[str, Any], thresholds: Sequence[float]
) -> str:
    """Readable lines and the closing RESULT line."""
    device = result["device"]
    if device.startswith("cuda"):
        device += f" ({torch.cuda.get_device_name()})"
    lines = [
        f"{label}: {cfg.strategy.name}, population {cfg.strategy.population_size}, "
        f"on {device}: {result['generations']:,} generations in "
        f"{result['search_s']} s of search ({result['ms_per_generation']} ms each), "
        f"stopped by {result['stop']}; {result['wall_s']} s wall with data loading, "
        "checkpoint and evaluation"
    ]
    for threshold in thresholds:
        value = result[threshold_key(threshold)]
        reached = "not reached" if value is None else f"{value} s"
        lines.append(f"  time to {threshold:.0%} validation accuracy: {reached}")
    lines.append(
        f"  best validation {result['best_val']:.4f} at generation "
        f"{result['best_generation']}; its test accuracy {result['test']:.4f} "
        f"({result['test_images']:,} images, numpy evaluate stage)"
    )
    fields = " ".join(f"{k}={'-' if v is None else v}" for k, v in result.items())
    lines.append(f"RESULT {label}: {fields}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: --preset, --device, --max-seconds / --generations, -S overrides."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--label", help="name in the output (default: the preset)")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--out", type=Path, help="run folder (default: a temporary)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--max-seconds", type=float, default=0.0)
    parser.add_argument("--generations", type=int)
    parser.add_argument(
        "--threshold", type=float, action="append", help="default 0.90 and 0.95"
    )
    parser.add_argument("-S", "--set", action="append", default=[], help="key=value")
    args = parser.parse_args(argv)
    device = str(resolve_device(args.device))
    cfg = run_config(args.preset, device, args.max_seconds, args.generations, args.set)
    thresholds = args.threshold or [0.90, 0.95]
    with tempfile.TemporaryDirectory(prefix="timed_run-") as scratch:
        out = args.out or Path(scratch)
        result = timed_run(cfg, args.data, out, thresholds)
    print(report(args.label or args.preset, cfg, result, thresholds), flush=True)


if __name__ == "__main__":
    main()
