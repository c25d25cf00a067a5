"""A process worker runs the deployments of prefect.yaml against a real Prefect server.

Set up as a user would (prefect.yaml's header): `prefect server start` with SQLite in a
temporary PREFECT_HOME, `prefect work-pool create ... --type process`, `prefect variable
set genreg_home`, `prefect deploy --all`, `prefect worker start`; flow runs of the
`train` deployment are started with run_deployment and followed through the API.
Training is tiny, on the `small_mnist` fixture's prepared folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from genreg.adapters.commands.serve import local_server, stop_process
from genreg.tracking.runs import connect

ROOT = Path(__file__).resolve().parents[2]
PREFECT = Path(sys.executable).with_name("prefect")
DEPLOYMENT = "genreg-train/train"
TINY = {
    "strategy.population_size": 8,
    "model.hidden": 8,
    "train.num_generations": 3,
    "train.eval_every": 1,
    "train.images_per_class": 2,
}
FINAL_WAIT_S = 300  # a hang guard for loaded machines, not a speed check


def _deployments() -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {d["name"]: d for d in spec["deployments"]}


def _train_deployment() -> dict[str, Any]:
    return _deployments()["train"]


@dataclass
class Cluster:
    """A server with the pool and prefect.yaml's deployments; `env` reaches them."""

    env: dict[str, str]
    pool: str
    worker_log: Path

    def prefect(self, *args: str) -> str:
        """Run the prefect CLI from the repository root; its output, or fail."""
        done = subprocess.run(
            [str(PREFECT), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{output}"
        return output


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Server, work pool, deployment and one process worker, stopped at the end."""
    home = tmp_path_factory.mktemp("prefect-server-home")
    mlflow_uri = f"sqlite:///{home / 'mlflow.db'}"
    connect(mlflow_uri)  # create the store once, not in two flow runs at a time
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # pick runs up soon after they are made
    }
    env.pop("PREFECT_API_URL", None)
    with local_server(0, home / "server.log", env=env) as url:
        cluster = Cluster(
            env={**env, "PREFECT_API_URL": url},
            pool=_train_deployment()["work_pool"]["name"],
            worker_log=home / "worker.log",
        )
        cluster.prefect("work-pool", "create", cluster.pool, "--type", "process")
        cluster.prefect("variable", "set", "genreg_home", str(ROOT))
        cluster.prefect("--no-prompt", "deploy", "--all")
        with cluster.worker_log.open("ab") as log:
            worker = subprocess.Popen(
                [str(PREFECT), "worker", "start", "--pool", cluster.pool]
                + ["--type", "process"],
                cwd=ROOT,
                env=cluster.env,
                stdout=log,
                stderr=log,
            )
        try:
            with temporary_settings({PREFECT_API_URL: url}):
                yield cluster
        finally:
            stop_process(worker)


def _start_train_run(data_dir: Path, run_dir: Path, **overrides: Any) -> UUID:
    run = run_deployment(
        DEPLOYMENT,
        parameters={
            "overrides": {**TINY, **overrides},
            "data_dir": str(data_dir),
            "run_dir": str(run_dir),
        },
        timeout=0,
    )
    return run.id


def _wait_final(cluster: Cluster, flow_run_ids: list[UUID]) -> list[FlowRun]:
    deadline = time.monotonic() + FINAL_WAIT_S
    with get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(i) for i in flow_run_ids]
            if all(r.state is not None and r.state.is_final() for r in runs):
                return runs
            if time.monotonic() > deadline:
                states = [(r.name, r.state_name) for r in runs]
                log = cluster.worker_log.read_text()[-3000:]
                pytest.fail(
                    f"flow runs not finished after {FINAL_WAIT_S} s: {states}\n"
                    f"worker log ({cluster.worker_log}), last lines:\n{log}"
                )
            time.sleep(2)


def _task_runs(flow_run_id: UUID) -> dict[str, TaskRun]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]})
        )
    return {run.name.split("-")[0]: run for run in runs}


def _state_time(task_run: TaskRun, state_type: str) -> datetime:
    """When the task run first entered `state_type` (PENDING, RUNNING, COMPLETED)."""
    with get_client(sync_client=True) as client:
        states = client.read_task_run_states(task_run.id)
    return min(s.timestamp for s in states if s.type.value == state_type)


def test_worker_runs_a_deployment_to_completion(
    cluster: Cluster, small_mnist: Path, tmp_path: Path
) -> None:
    with get_client(sync_client=True) as client:
        deployed = {d.name: d for d in client.read_deployments()}
    assert set(deployed) == set(_deployments())  # `prefect deploy --all` took them all
    assert {d.work_pool_name for d in deployed.values()} == {cluster.pool}
    flow_run_id = _start_train_run(small_mnist, tmp_path / "run")
    (run,) = _wait_final(cluster, [flow_run_id])
    assert run.state is not None and run.state.is_completed(), run.state
    assert run.work_pool_name == cluster.pool
    assert set(_train_deployment()["tags"]) <= set(run.tags)
    assert run.infrastructure_pid  # set by the process worker that ran it
    assert str(flow_run_id) in cluster.worker_log.read_text()
    train = _task_runs(flow_run_id)["train"]
    assert train.state_name == "Completed" and "gpu" in train.tags
    for path in ("checkpoints/best.npz", "summary.json", "mlflow_run_id"):
        assert (tmp_path / "run" / path).is_file(), path
    print(
        f"flow run {run.id} ({run.name}): {run.state_name}, "
        f"pid {run.infrastructure_pid}, {run.total_run_time.total_seconds():.1f} s"
    )


def test_gpu_tag_limit_lets_one_train_task_run_at_a_time(
    cluster: Cluster, small_mnist: Path, tmp_path: Path
) -> None:
    cluster.prefect("concurrency-limit", "create", "gpu", "1")
    try:
        ids = [
            _start_train_run(
                small_mnist, tmp_path / name, **{"train.num_generations": 40}
            )
            for name in ("a", "b")
        ]
        runs = _wait_final(cluster, ids)
    finally:
        cluster.prefect("concurrency-limit", "delete", "gpu")
    assert all(r.state is not None and r.state.is_completed() for r in runs), runs
    trains = sorted(
        (_task_runs(i)["train"] for i in ids), key=lambda t: _state_time(t, "RUNNING")
    )
    first, second = trains
    first_done = _state_time(first, "COMPLETED")
    # the second train task was waiting while the first ran ...
    assert _state_time(second, "PENDING") < first_done
    # ... and ran only after it finished
    assert _state_time(second, "RUNNING") >= first_done
    for r in runs:
        print(f"flow run {r.id}: {r.state_name}, {r.start_time} -> {r.end_time}")
    for t in trains:
        print(
            f"train task {t.id}: pending {_state_time(t, 'PENDING')}, "
            f"running {_state_time(t, 'RUNNING')}, "
            f"completed {_state_time(t, 'COMPLETED')}"
        )
