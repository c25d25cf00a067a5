"""Evaluate the best genome on the test set with a pure-numpy forward pass on the CPU.

Writes OUT/metrics.json (test accuracy, per-class accuracy, ms per image),
OUT/predictions.csv (for DVC's confusion plot), OUT/confusion.png and OUT/per_class.png.

If the checkpoint comes from a tracked `genreg train` (its run folder holds
mlflow_run_id) and that MLflow run trained this genome, the test metrics and plots are
also logged to that run; --no-track skips this. Tracking problems only warn.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genreg.config import Config
from genreg.rundir import RunDir

HELP = "score the best genome on the test set (numpy, CPU)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, default=Path("data/prepared"), help="prepared data"
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("runs/train/checkpoints/best.npz"),
        help="genome file to evaluate",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/evaluate"), help="output folder"
    )
    parser.add_argument("--no-track", action="store_true", help="do not log to MLflow")


def run(args: argparse.Namespace, cfg: Config) -> int:
    from genreg.stages.evaluate import evaluate

    metrics = evaluate(cfg, args.data, args.checkpoint, args.out)
    print(
        json.dumps(
            {k: metrics[k] for k in ("test_accuracy", "val_accuracy", "ms_per_image")}
        )
    )
    id_file = RunDir.of_genome(args.checkpoint).mlflow_run_id
    if not args.no_track and id_file.exists():
        _log_to_run(cfg, id_file, args.checkpoint, args.out)
    return 0


def _log_to_run(cfg: Config, id_file: Path, checkpoint: Path, out: Path) -> None:
    from genreg.tracking.runs import (
        genome_matches_run,
        log_evaluation,
        tracking_uri,
    )

    run_id = id_file.read_text().strip()
    try:
        if not genome_matches_run(run_id, checkpoint, tracking_uri(cfg)):
            print(
                f"genreg evaluate: {checkpoint} is not from MLflow run {run_id}; "
                "not logged",
                file=sys.stderr,
            )
            return
        log_evaluation(run_id, out, tracking_uri(cfg))
    except (
        Exception
    ) as exc:  # the evaluation itself succeeded; tracking is a bonus here
        print(
            f"genreg evaluate: warning: not logged to MLflow run {run_id}: {exc}",
            file=sys.stderr,
        )
