"""The Prefect pipeline on a real test server, real MNIST and a real MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
)

from genreg.adapters.cli import main
from pipelines.flows import (
    NIGHTLY_CRON,
    genreg_evaluate,
    genreg_pipeline,
    genreg_train,
)
from pipelines.prefect_api import STARTUP_TIMEOUT_S, STARTUP_TIMEOUT_VAR

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "strategy.population_size": 8,
    "model.hidden": 8,
    "train.num_generations": 3,
    "train.eval_every": 1,
    "train.images_per_class": 2,
    "train.val_images": 500,
    "data.val_size": 500,
    "analyze.num_samples": 200,
}


@pytest.fixture()
def tiny_params(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A params.yaml with tiny settings and the MNIST folder as source."""
    monkeypatch.delenv("GENREG_DATA_DIR", raising=False)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": {"source_dir": str(mnist_dir)}}))
    return path


def _task_states(flow_run_id) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]})
        )
    return {run.name.split("-")[0]: run.state.name for run in runs}


def test_pipeline_runs_end_to_end_then_skips_unchanged_stages(
    prefect_harness: None, tiny_params: Path, tmp_path: Path
) -> None:
    kwargs = {
        "params_path": str(tiny_params),
        "overrides": TINY,
        "data_dir": str(tmp_path / "data" / "prepared"),
        "run_dir": str(tmp_path / "runs"),
    }
    state = genreg_pipeline(**kwargs, return_state=True)
    assert state.is_completed(), state.message
    headline = state.result()
    runs = tmp_path / "runs"
    for name in (
        "train/checkpoints/best.npz",
        "evaluate/metrics.json",
        "analyze/umap.png",
        "analyze/per_class.png",
        "analyze/curves.png",
        "analyze/separation.json",
    ):
        assert (runs / name).is_file(), name
    separation = json.loads((runs / "analyze" / "separation.json").read_text())
    assert separation["num_points"] == 200 and separation["hidden"] == 8
    for key in ("knn_accuracy_2d", "silhouette_2d"):  # the headline reads the file
        assert headline[key] == separation[key], key
    metrics = json.loads((runs / "evaluate" / "metrics.json").read_text())
    assert headline["test_accuracy"] == metrics["test_accuracy"]
    assert set(_task_states(state.state_details.flow_run_id).values()) == {"Completed"}

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["genreg-pipeline"])
            ),
            flow_run_filter=FlowRunFilter(
                id={"any_": [state.state_details.flow_run_id]}
            ),
        )
    assert len(artifacts) == 1
    assert headline["mlflow_run_id"] in artifacts[0].data
    assert "| test accuracy |" in artifacts[0].data

    # unchanged inputs: every stage is a cache hit, no file is rewritten
    best_mtime = (runs / "train/checkpoints/best.npz").stat().st_mtime_ns
    again = genreg_pipeline(**kwargs, return_state=True)
    assert set(_task_states(again.state_details.flow_run_id).values()) == {"Cached"}
    assert (runs / "train/checkpoints/best.npz").stat().st_mtime_ns == best_mtime
    assert again.result()["mlflow_run_id"] == headline["mlflow_run_id"]

    # a missing output reruns its stage only
    (runs / "evaluate" / "metrics.json").unlink()
    third = genreg_pipeline(**kwargs, return_state=True)
    states = _task_states(third.state_details.flow_run_id)
    assert states == {
        "prepare": "Cached",
        "train": "Cached",
        "evaluate": "Completed",
        "analyze": "Cached",
    }
    assert (runs / "evaluate" / "metrics.json").is_file()

    # the same genome twice side by side (UMAP is compiled by now, 200 points each)
    genome = str(runs / "train/checkpoints/best.npz")
    assert (
        main(
            [
                "analyze",
                "--data",
                kwargs["data_dir"],
                "--compare",
                genome,
                genome,
                "--out",
                str(tmp_path / "cmp"),
                "-p",
                str(tiny_params),
                "-S",
                "analyze.num_samples=200",
            ]
        )
        == 0
    )
    assert (tmp_path / "cmp" / "umap_compare.png").is_file()


def test_missing_data_fails_the_flow_naming_the_stage(
    prefect_harness: None, tiny_params: Path, tmp_path: Path
) -> None:
    overrides = {**TINY, "data.source_dir": str(tmp_path / "no-such-folder")}
    state = genreg_pipeline(
        params_path=str(tiny_params),
        overrides=overrides,
        data_dir=str(tmp_path / "prepared"),
        run_dir=str(tmp_path / "runs"),
        return_state=True,
    )
    assert state.is_failed()
    assert "stage prepare failed" in state.message
    assert "no-such-folder" in state.message
    with get_client(sync_client=True) as client:
        (run,) = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id={"any_": [state.state_details.flow_run_id]}
            )
        )
    assert run.run_count == 1  # missing files are permanent: not retried


def test_corrupt_checkpoint_fails_the_evaluate_stage(
    prefect_harness: None, tiny_params: Path, prepared_mnist: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "best.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip file")
    state = genreg_evaluate(
        checkpoint=str(bad),
        params_path=str(tiny_params),
        data_dir=str(prepared_mnist),
        run_dir=str(tmp_path / "runs"),
        return_state=True,
    )
    assert state.is_failed()
    assert "stage evaluate failed" in state.message and str(bad) in state.message


def test_deployments_carry_their_schedules() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert [s["cron"] for s in deployments["nightly"]["schedules"]] == [NIGHTLY_CRON]
    assert deployments["sweep"]["schedules"] == []
    assert "overrides" in deployments["sweep"]["parameters"]
    flows = {
        "genreg_pipeline": genreg_pipeline,
        "genreg_evaluate": genreg_evaluate,
        "genreg_train": genreg_train,
    }
    for deployment in deployments.values():
        path, name = deployment["entrypoint"].split(":")
        assert (ROOT / path).is_file()
        trains = name != "genreg_evaluate"  # the flows that run the train task
        assert ("gpu" in deployment["tags"]) == trains, deployment["name"]
        flows[name].validate_parameters(
            deployment["parameters"]
        )  # raises if they do not fit

    nightly = genreg_pipeline.to_deployment(name="nightly", cron=NIGHTLY_CRON)
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]


FIRST_START = """
import json
from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as TIMEOUT
from pipelines.flows import genreg_train
from pipelines.prefect_api import PrefectStartError, patient_api_start

with patient_api_start() as waited:
    pass
try:
    state = genreg_train(
        overrides={overrides!r}, data_dir={data!r}, run_dir={runs!r}, return_state=True
    )
    outcome = state.type.value
except PrefectStartError as exc:
    outcome = str(exc)
print(json.dumps({{"prefect": TIMEOUT.value(), "waited": waited, "outcome": outcome}}))
"""


def _first_call(tmp_path: Path, data: Path, **env: str) -> dict[str, object]:
    """genreg_train called from Python in a new process: new PREFECT_HOME, no server."""
    script = FIRST_START.format(
        overrides={**TINY, "train.val_images": 100},
        data=str(data),
        runs=str(tmp_path / "runs"),
    )
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PREFECT_API_URL", STARTUP_TIMEOUT_VAR)
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**base, "PREFECT_HOME": str(tmp_path / "prefect-home"), **env},
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S + 300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_first_call_without_a_server_waits_for_prefects_first_start(
    small_mnist: Path, tmp_path: Path
) -> None:
    result = _first_call(tmp_path, small_mnist)
    assert result == {
        "prefect": 20,
        "waited": STARTUP_TIMEOUT_S,
        "outcome": "COMPLETED",
    }
    assert (tmp_path / "runs" / "checkpoints" / "best.npz").is_file()


def test_a_start_that_still_times_out_says_what_to_set(
    small_mnist: Path, tmp_path: Path
) -> None:
    result = _first_call(tmp_path, small_mnist, **{STARTUP_TIMEOUT_VAR: "1"})
    assert result["waited"] == 1  # the user's value wins over genreg's default
    message = str(result["outcome"])
    assert "did not start within 1 s" in message
    assert f"export {STARTUP_TIMEOUT_VAR}=" in message
    assert "prefect server start" in message and "PREFECT_API_URL" in message
