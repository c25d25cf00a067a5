"""PostgreSQL for real: two `genreg tune` workers on one study, one SIGKILLed mid-trial.

A session-scoped PostgreSQL server (tests/pg_server.py) holds the Optuna study and the
backend store of a real `mlflow server`. The test kills one worker while its trial is
running; the survivor must wait for that trial's heartbeat to go stale, run its retry,
and finish the study with every trial complete exactly once and tracked in full.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import optuna
import pytest
import requests
import yaml
from mlflow.tracking import MlflowClient
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from pg_server import PgServer, find_bin_dir, start_server

from genreg.adapters.commands.serve import free_port
from pipelines.tune import SURPLUS_ATTR, load_tune, open_study
from pipelines.tune_report import PARENT_ATTR

T = TypeVar("T")
BIN = Path(sys.executable).parent
N_TRIALS = 4
GENERATIONS = 150  # long enough to catch a trial mid-run, ~1-3 s a trial here
PARAMS = {
    "data": {"val_size": 100},
    "model": {"hidden": 8},
    "strategy": {"population_size": 8},
    "train": {
        "eval_every": 1,
        "images_per_class": 2,
        "val_images": 100,
        "checkpoint_every": 1000,
        "device": "cpu",
    },
}
# one knob that does not change a trial's cost: both workers keep the same pace
SPACE = {
    "strategy.mutation_scale": {"type": "float", "low": 0.01, "high": 0.5, "log": True}
}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """A PostgreSQL server of the system's binaries, for the whole session."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL is not installed: no pg_ctl on PATH or under "
            "/usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)"
        )
    server = start_server(bin_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mlflow_on_postgres(
    postgres: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real `mlflow server` whose backend store is a PostgreSQL database."""
    root = tmp_path_factory.mktemp("mlflow-pg")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        postgres.create_database("mlflow"),
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log_path = root / "server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=log, env=env, start_new_session=True
        )
    try:
        _wait_for(lambda: _healthy(uri), proc, log_path, "mlflow server to answer")
        yield uri
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: server + workers
            proc.wait(timeout=30)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_killed_worker_trial_is_retried_once_and_fully_tracked(
    postgres: PgServer,
    mlflow_on_postgres: str,
    small_mnist: Path,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    params = _write_params(tmp_path, postgres.create_database("optuna"))
    study = open_study(load_tune(params)[1])  # the workers join it
    command = [str(BIN / "genreg"), "tune", "-p", str(params)]
    command += ["--data", str(small_mnist), "--out", str(tmp_path / "out")]
    command += ["--no-evaluate"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_on_postgres}
    env["OMP_NUM_THREADS"] = "1"
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers: list[subprocess.Popen] = []
    try:
        workers.append(_start(command, env, logs[0]))
        _wait_for(  # two workers creating the study's parent run at once race
            lambda: study.user_attrs.get(PARENT_ATTR),
            workers[0],
            logs[0],
            "the first worker to open the study's MLflow run",
        )
        workers.append(_start(command, env, logs[1]))
        victim, survivor = workers
        killed = _wait_for(
            lambda: _second_trial_mid_run(study, _worker_id(victim)),
            victim,
            logs[0],
            "the first worker to be mid-way through its second trial",
        )
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        survivor.wait(timeout=600)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    output = logs[1].read_text()
    assert survivor.returncode == 0, output[-3000:]
    report = json.loads(output.strip().splitlines()[-1])
    trials = study.get_trials()
    figures = _tally(trials)
    record_property("postgres_kill_test", figures)
    print(f"\npostgres kill test: {figures}")

    assert figures["complete"] == N_TRIALS and figures["duplicated"] == 0, trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed if not _surplus(t)] == [killed.number]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    retries = [t for t in complete if _origin(t) == killed.number]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert retries[0].user_attrs["worker"] == _worker_id(survivor)
    assert report["complete"] == N_TRIALS and report["stopped_by"] == "n_trials"
    assert {t.user_attrs["worker"] for t in complete} == {
        _worker_id(victim),
        _worker_id(survivor),
    }
    _assert_fully_tracked(
        MlflowClient(mlflow_on_postgres), study.user_attrs[PARENT_ATTR], complete
    )


def _write_params(tmp_path: Path, storage: str) -> Path:
    tune = {
        "storage": storage,
        "n_trials": N_TRIALS,
        "num_generations": GENERATIONS,
        "pruner": "none",
        "target": 1.0,
        "sampler": "random",
        "heartbeat_s": 1,
        "grace_period_s": 6,  # room for a busy 2-core machine to miss a few beats
        "max_retry": 1,
        "space": SPACE,
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**PARAMS, "tune": tune}, sort_keys=False))
    return path


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def _tally(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials expected / complete / failed (not surplus) / duplicated / surplus.

    Duplicated: COMPLETE trials beyond one per original trial, where a retry counts
    as its original (a killed trial completed twice, by itself and by its retry).
    """
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    origins = [_origin(t) for t in complete]
    failed = [t for t in trials if t.state == TrialState.FAIL and not _surplus(t)]
    return {
        "expected": N_TRIALS,
        "complete": len(complete),
        "failed": len(failed),
        "duplicated": len(origins) - len(set(origins)),
        "surplus": sum(_surplus(t) for t in trials),
    }


def _assert_fully_tracked(
    client: MlflowClient, parent: str, complete: list[FrozenTrial]
) -> None:
    """One finished, nested run per trial, holding every per-generation point."""
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent}' and attributes.status = 'FINISHED'",
    )
    numbers = sorted(int(r.data.tags["optuna.trial_number"]) for r in children)
    assert numbers == sorted(t.number for t in complete)
    for trial in complete:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        metrics_csv = Path(trial.user_attrs["out_dir"]) / "metrics.csv"
        with metrics_csv.open() as handle:
            per_generation = next(csv.reader(handle))[1:]
        assert "seconds_per_generation" in per_generation
        for key in per_generation:
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(GENERATIONS)), key


def _surplus(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(SURPLUS_ATTR))


def _worker_id(proc: subprocess.Popen) -> str:
    return f"{socket.gethostname()}:{proc.pid}"  # how pipelines.tune names a worker


def _origin(trial: FrozenTrial) -> int:
    """The trial a retry re-runs (itself if it is no retry)."""
    original = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return trial.number if original is None else original


def _second_trial_mid_run(study: optuna.Study, worker: str) -> FrozenTrial | None:
    """The worker's RUNNING trial once it has reported, after one COMPLETE trial."""
    mine = [t for t in study.get_trials() if t.user_attrs.get("worker") == worker]
    if not any(t.state == TrialState.COMPLETE for t in mine):
        return None
    running = [
        t for t in mine if t.state == TrialState.RUNNING and t.intermediate_values
    ]
    return running[0] if running else None


def _healthy(uri: str) -> bool:
    try:
        return requests.get(f"{uri}/health", timeout=2).ok
    except requests.RequestException:
        return False


def _wait_for(
    probe: Callable[[], T | None], proc: subprocess.Popen, log: Path, what: str
) -> T:
    """Poll `probe` until it gives a value; fail with the log if `proc` ends first."""
    deadline = time.monotonic() + 300  # a hang guard, not a timing check
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(
        f"gave up waiting for {what} (process exit code {proc.poll()}):\n"
        f"{log.read_text()[-3000:]}",
        pytrace=False,
    )
