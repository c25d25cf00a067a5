"""Search hyper-parameters with an Optuna study; the space is params.yaml's `tune:`.

Each trial trains with the suggested overrides for tune.num_generations generations
and scores best validation accuracy (never the test set); a pruner (tune.pruner) stops
weak trials early. The study stops at tune.target, after tune.n_trials finished
trials or after tune.timeout_s seconds. Several workers share a study through one
storage: a journal file (default optuna_journal.log) or a database URL
(sqlite:///tune.db, postgresql://...); running the command again resumes the study.
On a database each running trial beats a heartbeat (tune.heartbeat_s); a trial whose
worker died is failed after tune.grace_period_s and run again, with the same params,
by another worker (tune.max_retry times).

Writes OUT/trials/NNNN/ (each trial's train outputs), OUT/trials.csv,
best_params.json, importances.json/.png, history.png, best_eval/ (the winner's test
metrics, measured once) and tune_summary.json; each trial is an MLflow run nested
under the study's run.

examples:
  genreg tune                                   # defaults: about an hour on 2 CPU cores
  genreg tune --n-trials 60 --storage sqlite:///tune.db --study-name wide
  genreg tune --apply                           # then write the winner into params.yaml
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from genreg.config import Config

HELP = "search hyper-parameters with Optuna (pruning, resumable, parallel workers)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, default=Path("data/prepared"), help="prepared data"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/tune"), help="output folder"
    )
    parser.add_argument(
        "--storage", help="journal file path or database URL (tune.storage)"
    )
    parser.add_argument(
        "--study-name", help="study to create or join (tune.study_name)"
    )
    parser.add_argument(
        "--n-trials", type=int, help="finished trials in the whole study"
    )
    parser.add_argument(
        "--timeout-s", type=float, help="this worker's time budget in seconds"
    )
    parser.add_argument(
        "--apply",
        action="store_true",
        help="write the best params into the params file",
    )
    parser.add_argument(
        "--no-evaluate",
        action="store_true",
        help="skip the winner's test-set evaluation",
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    from pipelines.tune import parse_settings, read_tune_section, run_study
    from pipelines.tune_report import apply_best_params

    settings = parse_settings(read_tune_section(args.params), cfg)
    changes = {
        "storage": args.storage,
        "study_name": args.study_name,
        "n_trials": args.n_trials,
        "timeout_s": args.timeout_s,
    }
    settings = replace(settings, **{k: v for k, v in changes.items() if v is not None})
    result = run_study(
        cfg, settings, args.data, args.out, evaluate_best=not args.no_evaluate
    )
    report = {
        **result.report,
        "trials_run_here": result.trials_run,
        "stopped_by": result.stopped_by,
        "wall_seconds": round(result.wall_seconds, 1),
    }
    if args.apply and report.get("best_params"):
        apply_best_params(args.params, report["best_params"])
        report["applied_to"] = str(args.params)
    print(json.dumps(report))
    return 0
