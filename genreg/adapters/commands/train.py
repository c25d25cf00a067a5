"""Evolve a population on the prepared data, tracked in MLflow.

Shows a progress bar (generation, best/mean trust, best training accuracy, last
validation accuracy), checkpoints every train.checkpoint_every generations to
OUT/checkpoints/last.npz, keeps the best genome by validation accuracy in
OUT/checkpoints/best.npz, and writes OUT/metrics.csv, OUT/val_curve.csv and
OUT/summary.json. --resume continues an interrupted run exactly where it stopped.
--max-seconds (train.max_seconds) is a wall-clock budget: the run stops at the end of
the generation that reaches it, checkpointed, and summary.json's stop_reason says so;
--resume goes on from there.

The run is tracked in MLflow (MLFLOW_TRACKING_URI, else tracking.tracking_uri, by
default sqlite:///mlflow.db): params, tags, per-generation metrics, artifacts and the
best genome as a pyfunc model. Its run id is kept in OUT/mlflow_run_id, so --resume
continues the same MLflow run. --no-track trains without MLflow.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from genreg.config import Config, with_overrides

HELP = "evolve a population (progress bar, checkpoints, resume, MLflow tracking)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, default=Path("data/prepared"), help="prepared data"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/train"), help="output folder"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue OUT's last checkpoint"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start again even if OUT holds a run"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        metavar="S",
        help="wall-clock budget in seconds (train.max_seconds; 0: none)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    parser.add_argument(
        "--experiment", help="MLflow experiment name (default: tracking.experiment)"
    )
    parser.add_argument("--run-name", help="MLflow run name (default: generated)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    from genreg.progress import ProgressBar

    if args.max_seconds is not None:
        cfg = with_overrides(cfg, {"train.max_seconds": args.max_seconds})

    callbacks = []
    if not args.no_progress:
        callbacks.append(ProgressBar(cfg.train.num_generations))
    options = {"resume": args.resume, "overwrite": args.overwrite}
    if args.no_track:
        from genreg.rundir import RunDir
        from genreg.stages.train import train

        summary = train(cfg, args.data, args.out, callbacks=callbacks, **options)
        if not args.resume:  # a stale id would make evaluate log to the wrong run
            RunDir(args.out).mlflow_run_id.unlink(missing_ok=True)
        print(json.dumps(asdict(summary)))
        return 0
    from genreg.tracking.runs import TrackingError, tracked_train

    try:
        summary, run_id = tracked_train(
            cfg,
            args.data,
            args.out,
            experiment=args.experiment,
            run_name=args.run_name,
            extra_callbacks=callbacks,
            **options,
        )
    except TrackingError as exc:
        print(f"genreg train: error: {exc} (or pass --no-track)", file=sys.stderr)
        return 2
    print(json.dumps({**asdict(summary), "mlflow_run_id": run_id}))
    return 0
