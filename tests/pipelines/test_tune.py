"""Optuna study on real MNIST, tiny sizes: pruning, target stop, resume, workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from genreg.config import ConfigError, build_config
from pipelines.tune import load_tune, open_study, parse_settings, run_study, suggest
from pipelines.tune_report import apply_best_params

BASE = {
    "data": {"val_size": 500},
    "model": {"hidden": 8},
    "strategy": {"population_size": 16},
    "train": {
        "num_generations": 6,
        "eval_every": 1,
        "images_per_class": 2,
        "val_images": 500,
        "checkpoint_every": 100,
    },
}
SPACE = {
    "strategy.population_size": {"type": "int", "low": 2, "high": 16},
    "model.hidden": {"type": "int", "low": 1, "high": 16, "log": True},
    "strategy.mutation_scale": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
}
GOOD = {
    "strategy.population_size": 16,
    "model.hidden": 16,
    "strategy.mutation_scale": 0.1,
}
POOR = {
    "strategy.population_size": 2,
    "model.hidden": 1,
    "strategy.mutation_scale": 0.01,
}


@pytest.fixture(scope="module", autouse=True)
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real SQLite MLflow store for the module (creating one takes seconds)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    # mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI, so a URI set by an
    # earlier test module (log_genome_model restores one) must not win over ours.
    # Afterwards put back exactly the process-wide URI of before (None when only the
    # environment named a store), inside the context so the environment is restored
    # last: a URI left set here would win over later modules' MLFLOW_TRACKING_URI.
    previous = tracking_utils._tracking_uri
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        # create the tables now: two workers migrating a new SQLite store at once clash
        MlflowClient(uri).search_experiments(max_results=1)
        yield uri
        mlflow.set_tracking_uri(previous)


def write_params(tmp_path: Path, **tune: object) -> Path:
    settings = {
        "storage": str(tmp_path / "journal.log"),
        "num_generations": 4,
        "space": SPACE,
        "sampler": "random",
        **tune,
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**BASE, "tune": settings}, sort_keys=False))
    return path


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


def test_median_pruner_prunes_a_poor_trial_and_reports(
    tmp_path: Path, prepared_mnist: Path, mlflow_store: str
) -> None:
    params = write_params(
        tmp_path,
        n_trials=3,
        pruner="median",
        pruner_startup_trials=1,
        pruner_warmup_steps=0,
        target=1.0,
    )
    cfg, settings = load_tune(params)
    study = open_study(settings)
    study.enqueue_trial(GOOD)
    study.enqueue_trial(POOR)
    result = run_study(cfg, settings, prepared_mnist, tmp_path / "out")
    states = [t.state for t in result.study.trials]
    assert len(finished(result.study)) == 3 and result.trials_run == 3
    assert states[1] == TrialState.PRUNED, [
        t.intermediate_values for t in result.study.trials
    ]
    out = tmp_path / "out"
    best = json.loads((out / "best_params.json").read_text())
    assert best == result.study.best_params and set(best) == set(SPACE)
    for name in ("trials.csv", "history.png", "best_eval/metrics.json"):
        assert (out / name).stat().st_size > 0
    best_eval = json.loads((out / "best_eval" / "metrics.json").read_text())
    assert result.report["best_test_accuracy"] == best_eval["test_accuracy"]
    parent = result.study.user_attrs["mlflow_parent_run_id"]
    runs = MlflowClient(mlflow_store).search_runs(
        [MlflowClient(mlflow_store).get_run(parent).info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent}'",
    )
    assert len(runs) == 3
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in runs}
    for trial in result.study.trials:
        run = by_number[trial.number]
        assert run.data.tags["optuna.pruned"] == str(trial.state == TrialState.PRUNED)
        if trial.state == TrialState.COMPLETE:
            assert run.info.status == "FINISHED"
            assert run.data.metrics["best_val_accuracy"] == pytest.approx(trial.value)
        else:
            assert run.info.status == "KILLED"


def test_target_stops_the_study_after_the_first_complete_trial(
    tmp_path: Path, prepared_mnist: Path
) -> None:
    cfg, settings = load_tune(
        write_params(tmp_path, n_trials=5, target=0.0, pruner="none")
    )
    result = run_study(
        cfg, settings, prepared_mnist, tmp_path / "out", evaluate_best=False
    )
    assert result.stopped_by == "target"
    assert [t.state for t in result.study.trials] == [TrialState.COMPLETE]


def test_resumed_study_counts_trials_already_done(
    tmp_path: Path, prepared_mnist: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"  # an RDB URL, not the journal
    cfg, settings = load_tune(
        write_params(tmp_path, n_trials=2, pruner="none", storage=storage)
    )
    first = run_study(
        cfg, settings, prepared_mnist, tmp_path / "out", evaluate_best=False
    )
    assert len(finished(first.study)) == 2
    cfg, settings = load_tune(
        write_params(tmp_path, n_trials=3, pruner="none", storage=storage)
    )
    second = run_study(
        cfg, settings, prepared_mnist, tmp_path / "out", evaluate_best=False
    )
    assert second.trials_run == 1
    assert [t.number for t in finished(second.study)] == [0, 1, 2]


def test_two_workers_share_one_journal_without_lost_or_duplicate_trials(
    tmp_path: Path, prepared_mnist: Path
) -> None:
    params = write_params(tmp_path, n_trials=4, pruner="none", target=1.0)
    bin_dir = Path(sys.executable).parent
    command = [
        str(bin_dir / "genreg"),
        "tune",
        "-p",
        str(params),
        "--data",
        str(prepared_mnist),
        "--out",
        str(tmp_path / "out"),
        "--no-evaluate",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=180) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    _, settings = load_tune(params)
    trials = open_study(settings).get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 4
    assert sum(r["trials_run_here"] for r in reports) == 4
    assert all(t.state != TrialState.RUNNING for t in trials)
    # a third run finds the study done, runs nothing and applies the winner
    rerun = [*command[1:], "--apply"]
    from genreg.adapters.cli import main

    assert main(rerun) == 0
    best = optuna.load_study(
        study_name="genreg", storage=open_study(settings)._storage
    ).best_params
    applied = yaml.safe_load(params.read_text())
    assert applied["model"]["hidden"] == best["model.hidden"]
    assert applied["strategy"]["population_size"] == best["strategy.population_size"]
    assert "tune" in applied


def abandoned_trial(study: optuna.Study, space: dict, worker: str) -> FrozenTrial:
    """A RUNNING trial with params, as a worker leaves it when it dies mid-trial."""
    trial = study.ask()
    suggest(trial, space)
    trial.set_user_attr("worker", worker)
    return study._storage.get_trial(trial._trial_id)


def assert_retried_once(study: optuna.Study, dead: FrozenTrial) -> None:
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    retry = trials[1]
    assert retry.system_attrs["failed_trial"] == dead.number
    assert retry.params == dead.params


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_trial_of_a_dead_local_worker_is_rerun_with_its_params(
    tmp_path: Path, prepared_mnist: Path
) -> None:
    cfg, settings = load_tune(
        write_params(tmp_path, n_trials=1, pruner="none", target=1.0)
    )
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a real process id that no longer runs
    study = open_study(settings)  # the journal file: no heartbeats
    dead = abandoned_trial(study, settings.space, f"{socket.gethostname()}:{gone.pid}")
    result = run_study(
        cfg, settings, prepared_mnist, tmp_path / "out", evaluate_best=False
    )
    assert result.trials_run == 1 and result.stopped_by == "n_trials"
    assert_retried_once(result.study, dead)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_worker_waits_for_a_silent_heartbeat_then_reruns_the_trial(
    tmp_path: Path, prepared_mnist: Path
) -> None:
    """On a database a worker on another machine may die: its heartbeat stops."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    params = write_params(
        tmp_path,
        storage=storage,
        n_trials=1,
        pruner="none",
        target=1.0,
        heartbeat_s=1,
        grace_period_s=2,
    )
    cfg, settings = load_tune(params)
    study = open_study(settings)
    dead = abandoned_trial(study, settings.space, "another-host:1")
    study._storage.record_heartbeat(dead._trial_id)  # its last beat
    result = run_study(
        cfg, settings, prepared_mnist, tmp_path / "out", evaluate_best=False
    )
    assert result.trials_run == 1 and result.stopped_by == "n_trials"
    assert_retried_once(result.study, dead)


def test_settings_errors_name_the_key(tmp_path: Path) -> None:
    cfg = build_config({})
    bad = [
        ({"pruner": "sometimes"}, "tune.pruner"),
        ({"n_trial": 3}, "tune.n_trial"),
        (
            {
                "space": {
                    "strategy.mutation_scal": {"type": "float", "low": 0, "high": 1}
                }
            },
            "tune.space.strategy.mutation_scal",
        ),
        (
            {"space": {"model.hidden": {"type": "int", "low": 0, "high": 8}}},
            "tune.space.model.hidden",
        ),
        (
            {
                "space": {
                    "strategy.mutation_scale": {
                        "type": "float",
                        "low": 0.0,
                        "high": 1,
                        "log": True,
                    }
                }
            },
            "tune.space.strategy.mutation_scale",
        ),
        ({"heartbeat_s": 0}, "tune.heartbeat_s"),
        ({"heartbeat_s": 5, "grace_period_s": 5}, "tune.grace_period_s"),
        ({"heartbeat_s": None, "grace_period_s": 5}, "tune.grace_period_s"),
        ({"max_retry": -1}, "tune.max_retry"),
    ]
    for section, key in bad:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_settings(section, cfg)


def test_space_keys_must_be_knobs_of_the_chosen_strategy() -> None:
    space = {"strategy.stdev_init": {"type": "float", "low": 0.01, "high": 0.1}}
    with pytest.raises(
        ConfigError,
        match=r"tune\.space\.strategy\.stdev_init: not a knob of trust_ga; "
        r"its knobs: \['name', 'population_size'",
    ):
        parse_settings({"space": space}, build_config({}))
    es = build_config({"preset": "fast"})
    assert set(parse_settings({"space": space}, es).space) == set(space)


def test_apply_writes_best_params_into_sections_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(
        "# top comment\nmodel:\n  hidden: 64  # width\ntune:\n  n_trials: 3\n"
    )
    apply_best_params(path, {"model.hidden": 32, "strategy.mutation_scale": 0.05})
    text = path.read_text()
    assert "# top comment" in text and "# width" in text
    data = yaml.safe_load(text)
    assert data["model"]["hidden"] == 32
    assert data["strategy"]["mutation_scale"] == 0.05
    assert data["tune"] == {"n_trials": 3}


@pytest.mark.slow  # starts the session's Prefect test server (~20-100 s here)
def test_prefect_flow_runs_the_study(
    tmp_path: Path, prepared_mnist: Path, prefect_harness: object
) -> None:
    from pipelines.tune_flow import genreg_tune

    params = write_params(tmp_path, n_trials=1, pruner="none", target=1.0)
    report = genreg_tune(
        str(params), str(prepared_mnist), str(tmp_path / "out"), evaluate_best=False
    )
    assert report["complete"] == 1 and report["stopped_by"] == "n_trials"
    assert (
        json.loads((tmp_path / "out" / "best_params.json").read_text())
        == (report["best_params"])
    )
