"""Train stage: prepared data + config in; checkpoints, curves and a summary out.

Layout of `out_dir`:
    checkpoints/last.npz   run checkpoint (resume state),
                           every `train.checkpoint_every`
    checkpoints/best.npz   best genome by validation accuracy (genome file)
    metrics.csv            one row per generation
                           (trust, fitness, training accuracy, time)
    val_curve.csv          one row per validation
                           (generation, val_accuracy, best so far)
    summary.json           headline numbers (DVC metrics), and why the run stopped

Checkpoints hold no timings, so they are byte-identical for the same params and seed;
wall-clock figures go to metrics.csv (seconds_per_generation) and summary.json.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genreg.allocator import keep_freed_memory
from genreg.atomic import atomic_file, write_text_atomic
from genreg.checkpoint import CheckpointError, Genome, load_run, save_genome, save_run
from genreg.config import Config, flatten
from genreg.datasets import Split, load_meta, load_prepared
from genreg.init import initial_genomes
from genreg.metric_names import BEST_VAL_ACCURACY, VAL_ACCURACY
from genreg.metric_names import SECONDS_PER_GENERATION as SECONDS
from genreg.model import BatchedMLP
from genreg.rundir import RunDir
from genreg.runner import Callback, RunState, make_rngs, run
from genreg.strategies import make_strategy
from genreg.task import ClassificationTask, make_fitness_fn, to_inputs

# params a resumed run may change: a longer run, another time budget, another device
RESUMABLE_CHANGES = ("train.num_generations", "train.max_seconds", "train.device")
VAL_COLUMNS = ("generation", VAL_ACCURACY, BEST_VAL_ACCURACY)


@dataclass(frozen=True)
class TrainSummary:
    best_val_accuracy: float
    best_generation: int
    num_generations: int
    wall_seconds: float
    seconds_per_generation: float
    genome_evaluations_per_second: float
    device: str
    num_params: int
    # "num_generations", or "max_seconds" when the time budget ran out first;
    # None in the summaries written at checkpoints while the run goes on
    stop_reason: str | None


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "train.device: 'cuda' asked for, but no CUDA device is available"
        )
    return torch.device(name)


def train(
    cfg: Config,
    data_dir: Path,
    out_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
) -> TrainSummary:
    """Evolve `cfg.strategy` on the prepared data in `data_dir`.

    Results are written to `out_dir`.
    """
    last_path = RunDir(out_dir).last
    if last_path.exists() and not (resume or overwrite):
        raise CheckpointError(
            f"{last_path}: a run exists here; pass --resume to continue it "
            "or --overwrite to start again"
        )
    device = resolve_device(cfg.train.device)
    keep_freed_memory()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    class_names = tuple(load_meta(data_dir)["class_names"])
    task = _make_task(cfg, load_prepared(data_dir), len(class_names), device)
    images_per_generation = cfg.train.images_per_class * task.model.num_outputs
    strategy = make_strategy(
        cfg.strategy, task.model.num_params, images_per_generation, task.model
    )
    rngs = make_rngs(cfg.seed, device)
    if resume and last_path.exists():
        state, saved = load_run(last_path, strategy.state_class, rngs, device)
        _check_resumable(last_path, saved, cfg)
        _restore_timings(RunDir(out_dir).metrics, state.history)
    else:
        genomes = initial_genomes(
            task.model,
            cfg.model,
            cfg.strategy.population_size,
            rngs["init"],
            task.train_x,
            task.train_y,
        )
        state = RunState(strategy.init(genomes, rngs["init"]), rngs)

    def checkpoint(run_state: RunState) -> None:
        save_run(last_path, run_state, cfg.to_dict())
        _write_outputs(out_dir, run_state, cfg, task.model, class_names, device)

    state = run(
        strategy,
        task,
        make_fitness_fn(cfg.strategy),
        state,
        num_generations=cfg.train.num_generations,
        eval_every=cfg.train.eval_every,
        callbacks=callbacks,
        checkpoint_fn=checkpoint,
        checkpoint_every=cfg.train.checkpoint_every,
        max_seconds=cfg.train.max_seconds,
    )
    finished = state.generation >= cfg.train.num_generations
    return _write_outputs(
        out_dir,
        state,
        cfg,
        task.model,
        class_names,
        device,
        stop_reason="num_generations" if finished else "max_seconds",
    )


def _make_task(
    cfg: Config, splits: dict[str, Split], num_classes: int, device: torch.device
) -> ClassificationTask:
    train_split, val_split = splits["train"], splits["val"]
    if len(val_split.labels) == 0:
        raise ValueError("data.val_size: the prepared data has no validation split")
    val_n = min(cfg.train.val_images, len(val_split.labels))
    image_shape = train_split.images.shape[1:]
    model = BatchedMLP(
        int(image_shape[0] * image_shape[1]), cfg.model.hidden, num_classes
    )
    return ClassificationTask(
        model=model,
        train_x=to_inputs(train_split.images, device),
        train_y=torch.as_tensor(train_split.labels, device=device),
        val_x=to_inputs(val_split.images[:val_n], device),
        val_y=torch.as_tensor(val_split.labels[:val_n], device=device),
        images_per_class=cfg.train.images_per_class,
    )


def _restore_timings(metrics_csv: Path, history: list[dict[str, float]]) -> None:
    """Put back the per-generation seconds a checkpoint leaves out, from metrics.csv.

    Checkpoints hold no timings (so they stay byte-identical); the metrics.csv written
    beside the checkpoint still has them for the generations done before the stop.
    """
    if not metrics_csv.exists():
        return
    with metrics_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            gen, seconds = int(row["generation"]), row.get(SECONDS)
            if seconds and gen < len(history):
                history[gen][SECONDS] = float(seconds)


def _check_resumable(path: Path, saved: dict, cfg: Config) -> None:
    old, new = flatten(saved), cfg.flat()
    changed = sorted(
        k
        for k in old.keys() | new.keys()
        if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)
    )
    if changed:
        raise CheckpointError(
            f"{path}: was saved with other params ({', '.join(changed)}); "
            "resume with the same params.yaml or pass --overwrite"
        )


def _write_outputs(
    out_dir: Path,
    state: RunState,
    cfg: Config,
    model: BatchedMLP,
    class_names: tuple[str, ...],
    device: torch.device,
    stop_reason: str | None = None,
) -> TrainSummary:
    out_dir.mkdir(parents=True, exist_ok=True)
    if state.best_genome is not None:
        meta = {
            "generation": state.best_generation,
            "val_accuracy": state.best_val_score,
            "config": cfg.to_dict(),
        }
        weights = state.best_genome.cpu().numpy()
        save_genome(
            RunDir(out_dir).best,
            Genome(weights, model, class_names, meta),
        )
    _write_curves(out_dir, state.history)
    # generations restored by --resume without their metrics.csv carry no timing
    timed = [row[SECONDS] for row in state.history if SECONDS in row]
    seconds, done = sum(timed), max(len(timed), 1)
    summary = TrainSummary(
        best_val_accuracy=state.best_val_score,
        best_generation=state.best_generation,
        num_generations=state.generation,
        wall_seconds=round(seconds, 3),
        seconds_per_generation=round(seconds / done, 5),
        genome_evaluations_per_second=round(
            cfg.strategy.population_size * done / max(seconds, 1e-9), 1
        ),
        device=str(device),
        num_params=model.num_params,
        stop_reason=stop_reason,
    )
    write_text_atomic(
        RunDir(out_dir).summary, json.dumps(asdict(summary), indent=2) + "\n"
    )
    return summary


def _write_curves(out_dir: Path, history: list[dict[str, float]]) -> None:
    keys = dict.fromkeys(k for row in history for k in row)  # in order of appearance
    per_gen = [k for k in keys if k not in VAL_COLUMNS]
    rows = [
        {"generation": g, **{k: r.get(k) for k in per_gen}}
        for g, r in enumerate(history)
    ]
    _write_csv(RunDir(out_dir).metrics, ["generation", *per_gen], rows)
    val_rows = [
        {"generation": g, **{k: r[k] for k in VAL_COLUMNS[1:]}}
        for g, r in enumerate(history)
        if VAL_ACCURACY in r
    ]
    _write_csv(RunDir(out_dir).val_curve, list(VAL_COLUMNS), val_rows)


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with atomic_file(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
