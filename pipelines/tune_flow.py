"""Prefect flow around the Optuna study: one task per worker, a markdown summary.

The study itself (`pipelines.tune.run_study`) knows nothing of Prefect; this flow runs
it as a task so a Prefect deployment can schedule a search, with the result as an
artifact. Several flow runs (or `genreg tune` processes) may share one study storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from pipelines.prefect_api import flow
from pipelines.tune import load_tune, run_study


@task(name="optuna-study")
def study_task(
    params_path: Path,
    data_dir: Path,
    out_dir: Path,
    overrides: Mapping[str, Any],
    tune_overrides: Mapping[str, Any],
    evaluate_best: bool,
) -> dict[str, Any]:
    """Run (or join, or resume) the study; returns its summary."""
    cfg, settings = load_tune(params_path, overrides)
    settings = replace(settings, **dict(tune_overrides))
    result = run_study(cfg, settings, data_dir, out_dir, evaluate_best=evaluate_best)
    return {
        **result.report,
        "trials_run_here": result.trials_run,
        "stopped_by": result.stopped_by,
        "wall_seconds": round(result.wall_seconds, 1),
    }


@flow(name="genreg-tune")
def genreg_tune(
    params_path: str = "params.yaml",
    data_dir: str = "data/prepared",
    out_dir: str = "runs/tune",
    overrides: dict[str, Any] | None = None,
    tune_overrides: dict[str, Any] | None = None,
    evaluate_best: bool = True,
) -> dict[str, Any]:
    """Hyper-parameter search as a flow; `tune_overrides` replace `tune:` settings."""
    report = study_task(
        Path(params_path),
        Path(data_dir),
        Path(out_dir),
        overrides or {},
        tune_overrides or {},
        evaluate_best,
    )
    get_run_logger().info("study %s: %s", report["study_name"], report)
    create_markdown_artifact(summary_markdown(report), key="genreg-tune-summary")
    return report


def summary_markdown(report: Mapping[str, Any]) -> str:
    """A short markdown table of the study's outcome."""
    rows = [
        (
            "trials complete / pruned / failed",
            f"{report.get('complete')} / {report.get('pruned')} / {report.get('fail')}",
        ),
        ("stopped by", report.get("stopped_by")),
        ("best trial", report.get("best_trial")),
        ("best validation accuracy", report.get("best_val_accuracy")),
        ("its test accuracy", report.get("best_test_accuracy")),
    ]
    params = report.get("best_params") or {}
    rows += [(f"`{k}`", v) for k, v in params.items()]
    lines = ["| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
    return f"## Optuna study {report.get('study_name')}\n\n" + "\n".join(lines) + "\n"
