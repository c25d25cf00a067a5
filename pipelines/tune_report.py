"""MLflow runs and result files of an Optuna study (see `pipelines.tune`).

The study's parent MLflow run id is kept in the study's user attributes, so every worker
and every resumed session nests its trials under the same parent run.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from genreg.config import Config, with_overrides
from genreg.metric_names import BEST_VAL_ACCURACY
from genreg.rundir import RunDir

if TYPE_CHECKING:
    from pipelines.tune_space import TuneSettings

PARENT_ATTR = "mlflow_parent_run_id"
STUDY_KEY_TAG = "genreg.study_key"  # one study of one storage: name#id


def mlflow_client(cfg: Config) -> MlflowClient:
    """A checked client for MLFLOW_TRACKING_URI if set, else `tracking.tracking_uri`."""
    from genreg.tracking.runs import connect, tracking_uri

    return connect(tracking_uri(cfg))


def _experiment_id(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def open_parent_run(study: optuna.Study, cfg: Config, settings: TuneSettings) -> str:
    """The study's parent MLflow run (created by the first worker that needs it).

    Workers starting together may each create one; all of them then keep the oldest
    (a later run can only be newer), delete their own if it lost, and record the winner.
    """
    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id:
        return str(run_id)
    client = mlflow_client(cfg)
    experiment_id = _experiment_id(client, cfg.tracking.experiment)
    study_key = f"{study.study_name}#{study._study_id}"
    run = client.create_run(
        experiment_id,
        run_name=f"tune-{study.study_name}",
        tags={
            "genreg.kind": "study",
            "optuna.study_name": study.study_name,
            STUDY_KEY_TAG: study_key,
        },
    )
    params = {
        "tune.n_trials": settings.n_trials,
        "tune.num_generations": settings.num_generations,
        "tune.pruner": settings.pruner,
        "tune.target": settings.target,
        "tune.space": ",".join(settings.space),
    }
    client.log_batch(
        run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()]
    )
    candidates = client.search_runs(
        [experiment_id], filter_string=f"tags.`{STUDY_KEY_TAG}` = '{study_key}'"
    )
    winner = min(candidates, key=lambda r: (r.info.start_time, r.info.run_id))
    winner_id = winner.info.run_id
    if winner_id != run.info.run_id:
        client.delete_run(run.info.run_id)
    study.set_user_attr(PARENT_ATTR, winner_id)
    return winner_id


def mark_trial_run(cfg: Config, trial_dir: Path, number: int, pruned: bool) -> str:
    """Tag a trial's MLflow run (id from tracked_train's file); close it if pruned."""
    id_file = RunDir(trial_dir).mlflow_run_id
    if not id_file.exists():
        return ""
    run_id = id_file.read_text().strip()
    client = mlflow_client(cfg)
    tags = {"optuna.trial_number": str(number), "optuna.pruned": str(pruned)}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    if pruned:  # tracked_train closed it FAILED when TrialPruned went through it
        client.set_terminated(run_id, "KILLED")
    return run_id


def write_report(
    study: optuna.Study,
    cfg: Config,
    data_dir: Path,
    out_dir: Path,
    parent_run_id: str,
    evaluate_best: bool = True,
) -> dict[str, Any]:
    """trials.csv, best_params.json, importances, plots, the winner's test score."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_dir / "trials.csv", study.trials_dataframe().to_csv(index=False))
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    report: dict[str, Any] = {
        "study_name": study.study_name,
        **{s.name.lower(): sum(t.state == s for t in trials) for s in TrialState},
    }
    if complete:
        best = study.best_trial
        report.update(
            {
                "best_trial": best.number,
                BEST_VAL_ACCURACY: best.value,
                "best_params": best.params,
            }
        )
        _write_json(out_dir / "best_params.json", best.params)
        report["importances"] = _importances(study, out_dir)
        if evaluate_best:
            report["best_test_accuracy"] = _evaluate_best(best, cfg, data_dir, out_dir)
    _history_png(trials, out_dir / "history.png")
    _write_json(out_dir / "tune_summary.json", report)
    _log_parent(mlflow_client(cfg), parent_run_id, report, out_dir)
    return report


def _importances(study: optuna.Study, out_dir: Path) -> dict[str, float] | None:
    try:
        values = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # too few complete trials, or no spread
        return None
    values = {k: float(v) for k, v in values.items()}
    _write_json(out_dir / "importances.json", values)
    fig, ax = _figure()
    names = list(values)[::-1]
    ax.barh(names, [values[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (Optuna default evaluator)")
    ax.set_title("parameter importances for best validation accuracy")
    _save(fig, out_dir / "importances.png")
    return values


def _history_png(trials: list[optuna.trial.FrozenTrial], path: Path) -> None:
    fig, ax = _figure()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [
        t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values
    ]
    if complete:
        ax.scatter(
            [t.number for t in complete], [t.value for t in complete], label="complete"
        )
        ordered = sorted(complete, key=lambda t: t.number)
        best, bests = float("-inf"), []
        for t in ordered:
            best = max(best, t.value)
            bests.append(best)
        ax.step(
            [t.number for t in ordered],
            bests,
            where="post",
            color="tab:red",
            label="best so far",
        )
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.scatter(
            [t.number for t in pruned], last, marker="x", color="grey", label="pruned"
        )
    ax.set_xlabel("trial")
    ax.set_ylabel("best validation accuracy")
    ax.set_title("optimisation history")
    if complete or pruned:
        ax.legend()
    _save(fig, path)


def _evaluate_best(
    best: optuna.trial.FrozenTrial, cfg: Config, data_dir: Path, out_dir: Path
) -> float | None:
    from genreg.stages.evaluate import evaluate

    genome = RunDir(Path(best.user_attrs.get("out_dir", ""))).best
    if not genome.exists():  # the winner ran on another machine
        return None
    metrics = evaluate(
        with_overrides(cfg, best.params), data_dir, genome, out_dir / "best_eval"
    )
    return float(metrics["test_accuracy"])


def _log_parent(
    client: MlflowClient, run_id: str, report: dict[str, Any], out: Path
) -> None:
    metrics = {
        k: report[k]
        for k in (BEST_VAL_ACCURACY, "best_test_accuracy", "complete", "pruned")
        if report.get(k) is not None
    }
    now = int(time.time() * 1000)
    client.log_batch(
        run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
    )
    for name in (
        "trials.csv",
        "best_params.json",
        "importances.json",
        "importances.png",
        "history.png",
        "tune_summary.json",
    ):
        if (out / name).exists():
            client.log_artifact(run_id, str(out / name))
    client.set_terminated(run_id, "FINISHED")


def apply_best_params(params_path: Path, best: Mapping[str, Any]) -> None:
    """Write dotted best params into their sections of params.yaml, keeping comments."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()
    data = yaml.load(params_path.read_text()) if params_path.exists() else None
    data = data if data is not None else CommentedMap()
    for key, value in best.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            if part not in node:
                node[part] = CommentedMap()
            node = node[part]
        node[leaf] = value
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    _write_atomic(params_path, buffer.getvalue())


def _write_json(path: Path, value: Any) -> None:
    _write_atomic(path, json.dumps(value, indent=2) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # workers may share OUT
    tmp.write_text(text)
    os.replace(tmp, path)


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4))


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
