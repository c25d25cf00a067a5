"""MLflow tracking of genreg runs: params, tags, per-generation metrics, artifacts.

The tracking URI is MLFLOW_TRACKING_URI if set, else `tracking.tracking_uri`
(default sqlite:///mlflow.db in the working directory). Per-generation
metrics go through `MlflowCallback` (callback.py), which loses no point when the
store is briefly away.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from genreg.checkpoint import CheckpointError
from genreg.config import Config, flatten
from genreg.datasets import load_meta
from genreg.metric_names import SECONDS_PER_GENERATION
from genreg.rundir import RunDir
from genreg.runner import Callback
from genreg.stages.train import RESUMABLE_CHANGES, TrainSummary, resolve_device, train
from genreg.tracking.callback import MlflowCallback, TrackingError, upload_pending
from genreg.tracking.model import log_genome_model

MAX_PARAMS = 100  # MLflow's log_batch limit per call
log = logging.getLogger(__name__)


def tracking_uri(cfg: Config) -> str:
    """MLFLOW_TRACKING_URI if set, else cfg.tracking.tracking_uri."""
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.tracking_uri


def connect(uri: str) -> MlflowClient:
    """A client for `uri`, after checking the store answers; TrackingError if not."""
    hint = "start the server, or set MLFLOW_TRACKING_URI / tracking.tracking_uri"
    if uri.startswith(("http://", "https://")):
        try:  # one quick probe: the client itself retries for minutes
            requests.get(uri.rstrip("/") + "/health", timeout=10)
        except requests.RequestException as exc:
            raise TrackingError(
                f"MLflow tracking store {uri} is unreachable ({exc}); {hint}"
            ) from exc
    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:
        raise TrackingError(
            f"MLflow tracking store {uri} is not usable ({exc}); {hint}"
        ) from exc
    return client


def tracked_train(
    cfg: Config,
    data_dir: Path,
    out_dir: Path,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    extra_callbacks: Sequence[Callback] = (),
    resume: bool = False,
    overwrite: bool = False,
) -> tuple[TrainSummary, str]:
    """`train()` recorded as an MLflow run; returns the summary and the run id."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    run_dir = RunDir(out_dir)
    client = connect(tracking_uri(cfg))
    if run_dir.last.exists() and not (resume or overwrite):
        raise CheckpointError(
            f"{run_dir.last}: a run exists here; pass --resume to continue it "
            "or --overwrite to start again"
        )
    meta = load_meta(data_dir)
    if resume and run_dir.last.exists() and run_dir.mlflow_run_id.exists():
        run_id, skip = _resume_run(client, cfg, run_dir)
    else:
        run_id, skip = _new_run(
            client, cfg, meta, run_dir, experiment, run_name, parent_run_id
        )
    callback = MlflowCallback(
        client, run_id, pending_path=run_dir.mlflow_pending, skip_through=skip
    )
    try:
        summary = train(
            cfg,
            data_dir,
            out_dir,
            resume=resume,
            overwrite=overwrite,
            callbacks=[callback, *extra_callbacks],  # log a pruned generation too
        )
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        try:
            callback.close()
            client.set_terminated(run_id, status)
        except Exception as close_exc:  # keep the training error as the one raised
            log.warning("MLflow: could not finish run %s: %s", run_id, close_exc)
        raise
    callback.close()
    _log_results(client, run_id, run_dir, data_dir, summary)
    return summary, run_id


def _new_run(
    client: MlflowClient,
    cfg: Config,
    meta: Mapping[str, Any],
    run_dir: RunDir,
    experiment: str | None,
    run_name: str | None,
    parent_run_id: str | None,
) -> tuple[str, int]:
    name = experiment or cfg.tracking.experiment
    found = client.get_experiment_by_name(name)
    exp_id = found.experiment_id if found else client.create_experiment(name)
    tags = {
        "device": str(resolve_device(cfg.train.device)),
        "strategy": cfg.strategy.name,
        "dataset": cfg.data.dataset,
        "mlflow.source.name": "genreg train",
        **{f"data.sha256.{k}": v for k, v in meta.get("sha256", {}).items()},
        **_git_tags(),
    }
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    if os.environ.get("DVC_EXP_NAME"):  # set by `dvc exp run`: links the two views
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    run_id = client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
    params = [Param(k, str(v)) for k, v in cfg.flat().items()]
    for start in range(0, len(params), MAX_PARAMS):
        client.log_batch(run_id, params=params[start : start + MAX_PARAMS])
    run_dir.root.mkdir(parents=True, exist_ok=True)
    run_dir.mlflow_run_id.write_text(run_id + "\n")
    run_dir.mlflow_pending.unlink(missing_ok=True)
    return run_id, -1


def _resume_run(client: MlflowClient, cfg: Config, run_dir: RunDir) -> tuple[str, int]:
    id_file = run_dir.mlflow_run_id
    run_id = id_file.read_text().strip()
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        raise TrackingError(
            f"{id_file}: run {run_id} is not in {client.tracking_uri} ({exc}); "
            "point MLFLOW_TRACKING_URI at the store it was logged to"
        ) from exc
    if run_dir.mlflow_pending.exists():
        upload_pending(client, run_id, run_dir.mlflow_pending)
    client.update_run(run_id, status="RUNNING")
    logged = run.data.params
    new = [Param(k, str(v)) for k, v in cfg.flat().items() if k not in logged]
    changed = {
        k: str(v) for k, v in cfg.flat().items() if k in logged and logged[k] != str(v)
    }
    if new:
        client.log_batch(run_id, params=new)
    for key, value in changed.items():  # params are immutable in MLflow
        client.set_tag(run_id, f"resumed.{key}", value)
    history = client.get_metric_history(run_id, SECONDS_PER_GENERATION)
    return run_id, max((m.step for m in history), default=-1)


def _git_tags() -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}  # not a git checkout, or no commit yet
    return {
        "mlflow.source.git.commit": commit,
        "git_commit": commit,
        "git_dirty": str(dirty),
    }


def _log_results(
    client: MlflowClient,
    run_id: str,
    run_dir: RunDir,
    data_dir: Path,
    summary: TrainSummary,
) -> None:
    best = run_dir.best
    if best.exists():
        client.log_artifact(run_id, str(best), best.parent.name)
    for path in run_dir.artifacts:
        if path.exists():
            client.log_artifact(run_id, str(path))
    logged = client.get_run(run_id).data.metrics
    extra = {
        "best_generation": summary.best_generation,
        "wall_seconds": summary.wall_seconds,
        "genome_evaluations_per_second": summary.genome_evaluations_per_second,
        "num_params": summary.num_params,
    }
    stamp = int(time.time() * 1000)
    metrics = [
        Metric(k, float(v), stamp, 0) for k, v in extra.items() if k not in logged
    ]
    client.log_batch(run_id, metrics=metrics)
    if best.exists():
        log_genome_model(client.tracking_uri, run_id, best, data_dir / "test.npz")
    client.set_terminated(run_id, "FINISHED")


def log_evaluation(run_id: str, eval_dir: Path, uri: str | None = None) -> None:
    """Log an evaluate stage's metrics.json numbers and PNGs to an existing run."""
    eval_dir = Path(eval_dir)
    client = connect(
        uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    )
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    values = {
        "test_accuracy": metrics["test_accuracy"],
        "ms_per_image": metrics["ms_per_image"],
    }
    for name, acc in metrics.get("per_class_accuracy", {}).items():
        values[f"test_accuracy.{name}"] = acc
    stamp = int(time.time() * 1000)
    client.log_batch(
        run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in values.items()]
    )
    for png in sorted(eval_dir.glob("*.png")):
        client.log_artifact(run_id, str(png), "evaluate")
    client.log_artifact(run_id, str(eval_dir / "metrics.json"), "evaluate")


def genome_matches_run(run_id: str, genome_path: Path, uri: str) -> bool:
    """Whether the genome file was trained with the params logged to `run_id`."""
    from genreg.checkpoint import load_genome

    config = load_genome(genome_path).meta.get("config")
    if not isinstance(config, dict):
        return False
    logged = connect(uri).get_run(run_id).data.params
    flat = flatten(config)
    shared = [k for k in flat if k in logged and k not in RESUMABLE_CHANGES]
    return "seed" in shared and all(logged[k] == str(flat[k]) for k in shared)
