"""MLflow tracking against real stores: a SQLite file and a real `mlflow server`."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

mlflow = pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402

from genreg.adapters.commands.serve import free_port  # noqa: E402
from genreg.checkpoint import load_genome  # noqa: E402
from genreg.config import Config, with_overrides  # noqa: E402
from genreg.datasets import load_split  # noqa: E402
from genreg.evaluation import images_to_inputs, logits_numpy  # noqa: E402
from genreg.rundir import RunDir  # noqa: E402
from genreg.tracking.callback import (  # noqa: E402
    MlflowCallback,
    TrackingError,
    upload_pending,
)
from genreg.tracking.model import pixels_frame  # noqa: E402
from genreg.tracking.runs import tracked_train  # noqa: E402

MLFLOW_BIN = Path(sys.executable).with_name("mlflow")
TINY = {
    "strategy.population_size": 8,
    "model.hidden": 8,
    "train.num_generations": 6,
    "train.images_per_class": 2,
    "train.eval_every": 2,
    "train.val_images": 300,
    "train.checkpoint_every": 4,
    "train.device": "cpu",
}


def tiny_config(**overrides: object) -> Config:
    return with_overrides(Config(), {**TINY, **overrides})


@pytest.fixture
def sqlite_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite store in tmp_path; artifacts land in tmp_path/mlruns (the cwd)."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_one_point_per_generation_and_model_predicts_like_numpy(
    prepared_mnist: Path, sqlite_uri: str, tmp_path: Path
) -> None:
    out = tmp_path / "train"
    summary, run_id = tracked_train(
        tiny_config(), prepared_mnist, out, experiment="t", run_name="tiny"
    )
    client = MlflowClient(sqlite_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert RunDir(out).mlflow_run_id.read_text().strip() == run_id
    assert run.data.params["strategy.mutation_scale"] == "0.1"
    assert run.data.tags["strategy"] == "trust_ga"
    assert len(run.data.tags["data.sha256.train.npz"]) == 64
    with (out / "metrics.csv").open() as handle:
        per_generation = next(csv.reader(handle))[1:]
    assert "trust_max" in per_generation and "seconds_per_generation" in per_generation
    for key in per_generation:
        assert steps(client, run_id, key) == list(range(6)), key
    assert steps(client, run_id, "val_accuracy") == [1, 3, 5]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"summary.json", "metrics.csv", "val_curve.csv", "checkpoints"} <= artifacts

    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    images = load_split(prepared_mnist / "test.npz").images[:64]
    genome = load_genome(out / "checkpoints" / "best.npz")
    expected = logits_numpy(
        genome.model, genome.weights, images_to_inputs(images)
    ).argmax(1)
    predicted = np.asarray(model.predict(pixels_frame(images)))
    np.testing.assert_array_equal(predicted, expected)
    assert summary.num_generations == 6


def test_resume_continues_the_run_without_duplicate_points(
    prepared_mnist: Path, sqlite_uri: str, tmp_path: Path
) -> None:
    class Crash:
        def on_generation(self, generation: int, metrics: object) -> None:
            if generation == 5:
                raise KeyboardInterrupt

    out = tmp_path / "train"
    with pytest.raises(KeyboardInterrupt):
        tracked_train(tiny_config(), prepared_mnist, out, extra_callbacks=[Crash()])
    client = MlflowClient(sqlite_uri)
    first = RunDir(out).mlflow_run_id.read_text().strip()
    assert client.get_run(first).info.status == "KILLED"
    # gens 0-5 were sent (MLflow's callback runs before the crashing one); the
    # checkpoint holds 0-3, so generations 4 and 5 are replayed but not logged twice
    assert steps(client, first, "trust_max") == list(range(6))
    _, run_id = tracked_train(tiny_config(), prepared_mnist, out, resume=True)
    assert run_id == first
    assert steps(client, run_id, "trust_max") == list(range(6))
    assert steps(client, run_id, "val_accuracy") == [1, 3, 5]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_unreachable_store_fails_before_training(
    prepared_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    started = time.perf_counter()
    with pytest.raises(TrackingError, match=r"http://127\.0\.0\.1:9"):
        tracked_train(tiny_config(), prepared_mnist, tmp_path / "train")
    assert time.perf_counter() - started < 30
    assert not (tmp_path / "train" / "checkpoints").exists()


class Server:
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend; stop() and start()."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.root = root
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        args = [str(MLFLOW_BIN), "server", "--host", "127.0.0.1", "--port"]
        args += [str(self.port), "--workers", "1"]
        args += ["--backend-store-uri", f"sqlite:///{self.root / 'server.db'}"]
        args += ["--artifacts-destination", str(self.root / "artifacts")]
        log = (self.root / "server.log").open("a")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=log, env=env, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.uri}/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        pytest.fail(
            f"mlflow server did not start: {(self.root / 'server.log').read_text()}"
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(
                self.proc.pid, signal.SIGTERM
            )  # our own session: server + workers
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def fast_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """No minutes-long client retries against a stopped server."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def test_server_receives_a_run(
    server: Server,
    prepared_mnist: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    cfg = tiny_config(**{"train.num_generations": 3})
    _, run_id = tracked_train(cfg, prepared_mnist, tmp_path / "train", experiment="srv")
    client = MlflowClient(server.uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert steps(client, run_id, "trust_mean") == [0, 1, 2]
    assert "summary.json" in {a.path for a in client.list_artifacts(run_id)}


def test_metrics_survive_a_store_outage(
    server: Server, tmp_path: Path, fast_http: None
) -> None:
    client = MlflowClient(server.uri)
    exp = client.create_experiment("outage")
    run_id = client.create_run(exp).info.run_id
    pending = RunDir(tmp_path).mlflow_pending
    callback = MlflowCallback(client, run_id, flush_every=2, pending_path=pending)

    def feed(generations: range) -> None:
        for g in generations:
            callback.on_generation(g, {"trust_max": float(g), "val_accuracy": g / 10})

    feed(range(0, 2))
    assert not callback.pending
    server.stop()
    feed(range(2, 6))  # flushes fail; training goes on
    assert len(callback.pending) == 8 and callback.last_error is not None
    server.start()
    feed(range(6, 8))  # the next flush sends the backlog too
    callback.close()
    assert steps(client, run_id, "trust_max") == list(range(8))
    assert steps(client, run_id, "val_accuracy") == list(range(8))

    # a store still down at close(): points go to JSONL, then arrive after a restart
    feed(range(8, 9))
    server.stop()
    with pytest.raises(TrackingError, match=pending.name):
        callback.close()
    assert len(pending.read_text().splitlines()) == 2
    server.start()
    assert upload_pending(client, run_id, pending) == 2
    assert steps(client, run_id, "trust_max") == list(range(9))
    assert not pending.exists()
