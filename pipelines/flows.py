"""Prefect flows: the genreg pipeline (prepare -> train -> evaluate -> analyze).

Each task calls the same stage function as the `genreg` CLI. A task is skipped when its
cache key is unchanged: the config sections the stage reads, the bytes of the files it
reads, its path arguments and its source code (`StageInputs`); a task whose output
files are missing runs again whatever its key. A failing stage fails the flow with
"stage <name> failed: <cause>". Called from Python without a Prefect server, the flows
wait up to pipelines.prefect_api.STARTUP_TIMEOUT_S for Prefect's temporary one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.utilities.hashing import hash_objects

from genreg.analysis import ensure_numba_cache
from genreg.config import Config, ConfigError, build_config, load_params, unflatten
from genreg.datasets import DataError
from genreg.fetch import resolve_source_dir
from genreg.metric_names import BEST_VAL_ACCURACY, VAL_ACCURACY
from genreg.rundir import RunDir
from pipelines.prefect_api import flow

NIGHTLY_CRON = "0 2 * * *"


class StageError(RuntimeError):
    """A pipeline stage failed; the message names the stage and the cause."""


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Re-raise any failure inside as StageError("stage <name> failed: ...")."""
    try:
        yield
    except Exception as exc:
        raise StageError(f"stage {name} failed: {type(exc).__name__}: {exc}") from exc


def digest_path(path: Path | None) -> str:
    """sha256 of a file, or of every non-hidden file in a folder; or 'missing'."""
    if path is None or not Path(path).exists():
        return "missing"
    path = Path(path)
    files = (
        [path]
        if path.is_file()
        else sorted(
            p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
    )
    digest = hashlib.sha256()
    for file in files:
        digest.update(
            str(file.relative_to(path) if file != path else file.name).encode()
        )
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass
class StageInputs(CachePolicy):
    """Cache key from the config sections a stage reads and its input files' bytes."""

    sections: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kw: Any,
    ) -> str | None:
        """Hash of the chosen config sections and of the files the inputs name."""
        config = inputs["cfg"].to_dict()
        return hash_objects(
            {s: config[s] for s in self.sections},
            {name: digest_path(inputs.get(name)) for name in self.files},
        )


def _policy(sections: tuple[str, ...], files: tuple[str, ...]) -> CachePolicy:
    return StageInputs(sections=sections, files=files) + (INPUTS - "cfg") + TASK_SOURCE


def _permanent(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc
    return isinstance(cause, ConfigError | DataError | FileNotFoundError)


def _retry_unless_permanent(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient failures (a download); bad config or missing files fail now."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by result()
        return not _permanent(exc)
    return False


@task(
    name="prepare",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=_retry_unless_permanent,
    cache_policy=_policy(("data",), ("source_dir",)),
)
def prepare_task(
    cfg: Config, data_dir: Path, source_dir: Path | None
) -> dict[str, Any]:
    """Prepared train/val/test arrays in `data_dir` (downloads go beside it, raw/)."""
    from genreg.stages.prepare import prepare

    with stage("prepare"):
        meta = prepare(cfg.data, data_dir, raw_dir=data_dir.parent / "raw")
        get_run_logger().info("prepared %s: %s", data_dir, meta.get("counts"))
        return {"counts": meta.get("counts")}


@task(
    name="train",
    tags=["gpu"],
    cache_policy=_policy(
        ("seed", "preset", "data", "model", "strategy", "train", "tracking"),
        ("data_dir",),
    ),
)
def train_task(cfg: Config, data_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Evolve (CUDA when present: train.device auto), tracked in MLflow."""
    from genreg.tracking.runs import tracked_train

    with stage("train"):
        summary, run_id = tracked_train(cfg, data_dir, out_dir, overwrite=True)
        get_run_logger().info(
            "trained on %s: best val %.4f at generation %d (%.1f s), MLflow run %s",
            summary.device,
            summary.best_val_accuracy,
            summary.best_generation,
            summary.wall_seconds,
            run_id,
        )
        return {**asdict(summary), "mlflow_run_id": run_id}


@task(
    name="evaluate",
    tags=["cpu"],
    cache_policy=_policy(("evaluate",), ("data_dir", "genome")),
)
def evaluate_task(
    cfg: Config, data_dir: Path, genome: Path, out_dir: Path
) -> dict[str, Any]:
    """Test-set metrics of `genome` (numpy on the CPU)."""
    from genreg.stages.evaluate import evaluate

    with stage("evaluate"):
        metrics = evaluate(cfg, data_dir, genome, out_dir)
        get_run_logger().info("test accuracy %.4f", metrics["test_accuracy"])
        return metrics


@task(
    name="analyze",
    tags=["cpu"],
    cache_policy=_policy(("seed", "analyze"), ("data_dir", "genome", "train_dir")),
)
def analyze_task(
    cfg: Config, data_dir: Path, genome: Path, out_dir: Path, train_dir: Path | None
) -> dict[str, Any]:
    """UMAP of the hidden layer and class-separation scores (CPU)."""
    ensure_numba_cache()
    from genreg.stages.analyze import analyze

    with stage("analyze"):
        scores = analyze(cfg, data_dir, genome, out_dir, train_dir=train_dir)
        get_run_logger().info(
            "k-NN 2-D %.4f, silhouette %.3f",
            scores["knn_accuracy_2d"],
            scores["silhouette_2d"],
        )
        return scores


def _run(task_fn: Any, outputs: Sequence[Path], *args: Any) -> Any:
    """Call a task; force a fresh run (and cache entry) if an output file is missing."""
    missing = [p for p in outputs if not p.exists()]
    if missing:
        task_fn = task_fn.with_options(refresh_cache=True)
    return task_fn(*args)


def load_config(params_path: str | Path, overrides: Mapping[str, Any] | None) -> Config:
    """params.yaml plus dotted overrides; embedded defaults if params.yaml is absent."""
    path = Path(params_path)
    with stage("config"):
        if not path.exists() and path == Path("params.yaml"):
            return build_config(unflatten(dict(overrides or {})))
        return load_params(path, overrides)


@flow(name="genreg-pipeline")
def genreg_pipeline(
    params_path: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    data_dir: str = "data/prepared",
    run_dir: str = "runs",
) -> dict[str, Any]:
    """prepare -> train -> evaluate -> analyze; returns and publishes the headline."""
    started = time.perf_counter()
    cfg = load_config(params_path, overrides)
    data, runs = Path(data_dir), Path(run_dir)
    train_dir = RunDir(runs / "train")
    genome = train_dir.best
    data_outputs = [data / n for n in ("meta.json", "train.npz", "val.npz", "test.npz")]
    _run(prepare_task, data_outputs, cfg, data, resolve_source_dir(cfg.data))
    summary = _run(train_task, [genome, train_dir.summary], cfg, data, train_dir.root)
    result = _evaluate_and_analyze(cfg, data, genome, runs, train_dir.root)
    headline = {
        VAL_ACCURACY: summary[BEST_VAL_ACCURACY],
        "test_accuracy": result["metrics"]["test_accuracy"],
        "per_class_accuracy": result["metrics"]["per_class_accuracy"],
        "knn_accuracy_2d": result["separation"]["knn_accuracy_2d"],
        "silhouette_2d": result["separation"]["silhouette_2d"],
        "train_seconds": summary["wall_seconds"],
        "wall_seconds": round(time.perf_counter() - started, 2),
        "mlflow_run_id": summary["mlflow_run_id"],
        "device": summary["device"],
    }
    create_markdown_artifact(
        key="genreg-pipeline",
        markdown=headline_markdown(headline),
        description="genreg run",
    )
    return headline


def _evaluate_and_analyze(
    cfg: Config, data: Path, genome: Path, runs: Path, train_dir: Path | None
) -> dict[str, Any]:
    eval_dir, analyze_dir = runs / "evaluate", runs / "analyze"
    metrics = _run(
        evaluate_task, [eval_dir / "metrics.json"], cfg, data, genome, eval_dir
    )
    separation = _run(
        analyze_task,
        [analyze_dir / "separation.json", analyze_dir / "umap.png"],
        cfg,
        data,
        genome,
        analyze_dir,
        train_dir,
    )
    return {"metrics": metrics, "separation": separation}


@flow(name="genreg-evaluate")
def genreg_evaluate(
    checkpoint: str,
    params_path: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    data_dir: str = "data/prepared",
    run_dir: str = "runs",
) -> dict[str, Any]:
    """evaluate -> analyze of an existing genome file (a CPU-pool deployment)."""
    cfg = load_config(params_path, overrides)
    result = _evaluate_and_analyze(
        cfg, Path(data_dir), Path(checkpoint), Path(run_dir), None
    )
    return {"test_accuracy": result["metrics"]["test_accuracy"], **result["separation"]}


@flow(name="genreg-train")
def genreg_train(
    params_path: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    data_dir: str = "data/prepared",
    run_dir: str = "runs/train",
) -> dict[str, Any]:
    """train only, on prepared data: a sweep point scored on validation (GPU pool)."""
    cfg = load_config(params_path, overrides)
    out = RunDir(Path(run_dir))
    return _run(train_task, [out.best, out.summary], cfg, Path(data_dir), out.root)


def headline_markdown(headline: Mapping[str, Any]) -> str:
    """The run's headline numbers and per-class accuracy as a markdown report."""
    lines = [
        "# genreg pipeline",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| validation accuracy (best) | {headline['val_accuracy']:.2%} |",
        f"| test accuracy | {headline['test_accuracy']:.2%} |",
        f"| k-NN accuracy, 2-D UMAP | {headline['knn_accuracy_2d']:.2%} |",
        f"| silhouette, 2-D UMAP | {headline['silhouette_2d']:.3f} |",
        f"| training time | {headline['train_seconds']:.1f} s "
        f"on {headline['device']} |",
        f"| pipeline wall time | {headline['wall_seconds']:.1f} s |",
        f"| MLflow run id | `{headline['mlflow_run_id']}` |",
        "",
        "| class | test accuracy |",
        "| --- | --- |",
    ]
    lines += [f"| {c} | {a:.2%} |" for c, a in headline["per_class_accuracy"].items()]
    return "\n".join(lines) + "\n"
