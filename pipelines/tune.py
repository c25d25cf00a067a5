"""Optuna study over genreg's knobs: each trial trains with overrides, scored on val.

The search space and study settings live in the `tune:` section of params.yaml (see
`pipelines.tune_space`). Trials report best validation accuracy every
`train.eval_every` generations so a pruner can stop them early; the study stops at
`tune.target`, after `tune.n_trials` finished trials (COMPLETE or PRUNED, across every
worker and every resumed session) or after `tune.timeout_s` seconds of this worker.
The test set is never looked at here.

A trial whose worker died (SIGKILL, lost machine) is failed and re-queued with the
same params, `tune.max_retry` times: on a database storage once its heartbeat has been
silent for `tune.grace_period_s`; on any storage when a worker on the same host starts
and finds the trial's process gone. On a database storage a worker whose quota hangs
on other workers' running trials waits for them instead of stopping, so a dead
worker's last trial is run again by a survivor.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import TrialState

from genreg.config import Config, ConfigError, with_overrides
from genreg.metric_names import BEST_VAL_ACCURACY
from genreg.tracking.runs import tracked_train
from pipelines import tune_report
from pipelines.tune_report import mark_trial_run, open_parent_run
from pipelines.tune_space import (
    DEFAULT_SPACE,
    ParamSpec,
    TuneSettings,
    load_tune,
    parse_settings,
    read_tune_section,
)

__all__ = [  # the settings loader is re-exported: it is part of this module's API
    "DEFAULT_SPACE",
    "ParamSpec",
    "PruningCallback",
    "StudyResult",
    "TuneSettings",
    "load_tune",
    "open_study",
    "parse_settings",
    "read_tune_section",
    "run_study",
    "suggest",
]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
WAIT = "wait"  # not a stop reason: other workers' trials may still fail and come back
SURPLUS_ATTR = "surplus"  # a FAIL trial that was never run: the quota was already full
log = logging.getLogger(__name__)


def suggest(trial: optuna.Trial, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Draw one value per searched key (dotted key names are Optuna's param names)."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        if spec.type == "categorical":
            values[key] = trial.suggest_categorical(key, list(spec.choices))
        elif spec.type == "int":
            step = int(spec.step or 1)
            values[key] = trial.suggest_int(
                key, int(spec.low), int(spec.high), step=step, log=spec.log
            )
        else:
            values[key] = trial.suggest_float(
                key, spec.low, spec.high, step=spec.step, log=spec.log
            )
    return values


def open_study(settings: TuneSettings, storage: str | None = None) -> optuna.Study:
    """Create or load the study; a plain path is a journal file, else a database URL.

    A database storage records each trial's heartbeat (`tune.heartbeat_s`) and re-queues
    trials whose heartbeat stopped (see the module docstring).
    """
    url = storage or settings.storage
    if "://" in url:
        with warnings.catch_warnings():  # heartbeats are marked experimental
            warnings.simplefilter("ignore", ExperimentalWarning)
            backend: Any = optuna.storages.RDBStorage(
                url,
                engine_kwargs={"pool_pre_ping": True},  # a restarted server is fine
                heartbeat_interval=settings.heartbeat_s,
                grace_period=settings.grace_period_s,
                heartbeat_stale_trial_callback=retry_callback(settings),
            )
    else:
        from optuna.storages.journal import JournalFileBackend

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.JournalStorage(JournalFileBackend(url))
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if settings.pruner == "median":
        pruner = optuna.pruners.MedianPruner(
            settings.pruner_startup_trials, settings.pruner_warmup_steps
        )
    elif settings.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(max_resource=settings.num_generations)
    sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(
        seed=settings.sampler_seed
    )
    if settings.sampler == "tpe":  # constant liar: parallel workers spread out
        sampler = optuna.samplers.TPESampler(
            seed=settings.sampler_seed, constant_liar=True
        )
    return optuna.create_study(
        storage=backend,
        study_name=settings.study_name,
        direction="maximize",
        pruner=pruner,
        sampler=sampler,
        load_if_exists=True,
    )


def retry_callback(settings: TuneSettings) -> RetryHeartbeatStaleTrialCallback:
    """Re-queues a dead worker's trial (same params) up to `tune.max_retry` times."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry)


class PruningCallback:
    """Reports best validation accuracy to the trial; raises TrialPruned if told."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_generation(self, generation: int, metrics: Mapping[str, float]) -> None:
        if BEST_VAL_ACCURACY not in metrics:
            return
        self.trial.report(metrics[BEST_VAL_ACCURACY], step=generation + 1)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at generation {generation + 1}")


@dataclass
class StudyResult:
    """What one worker's call to `run_study` saw at its end."""

    study: optuna.Study
    trials_run: int
    wall_seconds: float
    stopped_by: str
    report: dict[str, Any] = field(default_factory=dict)


def run_study(
    cfg: Config,
    settings: TuneSettings,
    data_dir: Path,
    out_dir: Path,
    *,
    storage: str | None = None,
    evaluate_best: bool = True,
) -> StudyResult:
    """Run trials until the target, n_trials finished in the study, or the timeout."""
    study = open_study(settings, storage)
    _fail_dead_local_trials(study, retry_callback(settings))
    parent = open_parent_run(study, cfg, settings)
    started = time.monotonic()
    trials_run, stopped_by = 0, "n_trials"
    while True:
        _fail_stale_trials(study)
        stopped_by = _stop_reason(study, settings, started)
        if stopped_by == WAIT:
            time.sleep(settings.heartbeat_s or 1)
            continue
        if stopped_by:
            break
        trial = _ask(study)
        if _surplus(study, trial, settings.n_trials):
            trial.set_user_attr(SURPLUS_ATTR, True)
            study.tell(trial, state=TrialState.FAIL)  # another worker took the slot
            continue
        trials_run += 1
        try:
            with get_heartbeat_thread(trial._trial_id, study._storage):
                _run_trial(study, trial, cfg, settings, data_dir, out_dir, parent)
        except UpdateFinishedTrialError:  # our beats came too late: it is re-queued
            log.warning(
                "trial %d was failed by another worker (heartbeat older than "
                "tune.grace_period_s); its retry runs it again",
                trial.number,
            )
    report = tune_report.write_report(
        study, cfg, data_dir, out_dir, parent, evaluate_best
    )
    return StudyResult(
        study, trials_run, time.monotonic() - started, stopped_by, report
    )


def _stop_reason(study: optuna.Study, settings: TuneSettings, started: float) -> str:
    """Why to stop, WAIT while the quota hangs on trials a heartbeat watches, or ""."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state in FINISHED]
    running = [t for t in trials if t.state == TrialState.RUNNING]
    values = [
        t.value for t in done if t.state == TrialState.COMPLETE and t.value is not None
    ]
    if values and max(values) >= settings.target:
        return "target"
    if len(done) >= settings.n_trials:
        return "n_trials"
    if (
        settings.timeout_s is not None
        and time.monotonic() - started >= settings.timeout_s
    ):
        return "timeout"
    if len(done) + len(running) >= settings.n_trials:
        return WAIT if is_heartbeat_enabled(study._storage) else "n_trials"
    return ""


def _fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and re-queue) trials whose heartbeat stopped; no-op without heartbeats."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _ask(study: optuna.Study) -> optuna.Trial:
    """study.ask, which pops re-queued trials first; `run_study` beats the heartbeat."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
        return study.ask()


def _surplus(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """Trial numbers are handed out in order: earlier live trials fill the quota."""
    states = (*FINISHED, TrialState.RUNNING)
    before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
    return sum(t.state in states for t in before) >= n_trials


def _run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    cfg: Config,
    settings: TuneSettings,
    data_dir: Path,
    out_dir: Path,
    parent_run_id: str,
) -> None:
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial_dir = out_dir / "trials" / f"{trial.number:04d}"
    trial.set_user_attr("out_dir", str(trial_dir.resolve()))
    try:
        values = suggest(trial, settings.space)
        overrides = {**values, "train.num_generations": settings.num_generations}
        trial_cfg = with_overrides(cfg, overrides)
    except ConfigError as exc:  # a valid range can still give an invalid combination
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=TrialState.FAIL)
        return
    try:
        summary, run_id = tracked_train(
            trial_cfg,
            data_dir,
            trial_dir,
            run_name=f"trial-{trial.number:04d}",
            parent_run_id=parent_run_id,
            extra_callbacks=[PruningCallback(trial)],
            overwrite=True,
        )
    except optuna.TrialPruned:
        mark_trial_run(cfg, trial_dir, trial.number, pruned=True)
        study.tell(trial, state=TrialState.PRUNED)
        return
    except BaseException:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        raise
    trial.set_user_attr("mlflow_run_id", run_id)
    mark_trial_run(cfg, trial_dir, trial.number, pruned=False)
    study.tell(trial, summary.best_val_accuracy)


def _fail_dead_local_trials(
    study: optuna.Study, retry: RetryHeartbeatStaleTrialCallback
) -> None:
    """Fail and re-queue RUNNING trials of dead processes on this host."""
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(t.user_attrs.get("worker", "")).partition(":")
        if worker_host == host and pid.isdigit() and not _alive(int(pid)):
            try:
                failed = study._storage.set_trial_state_values(
                    t._trial_id, TrialState.FAIL
                )
            except UpdateFinishedTrialError:  # another worker failed it first
                continue
            if failed:
                retry(study, study._storage.get_trial(t._trial_id))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
