"""Issue 15's ES levers: `fast` variants at equal search time, and long runs.

    python benchmarks/es_push.py levers --data data/prepared --budget 60 --threads 2
    python benchmarks/es_push.py long --data data/prepared --budget 400 --device cuda \\
        --name big -S strategy.population_size=20000 -S train.images_per_class=50

`levers` runs each named variant of LEVERS (the baseline is `fast` itself) for --budget
search seconds (the clock stops while validating), one after another; compare variants
only with a baseline measured under the same machine load (the same process, or
processes side by side on separate cores). A cosine / linear schedule spans the number
of generations the baseline manages in the budget (`schedule_generations`), measured
from its first 30 generations unless --schedule gives it. Rows:
time to 90% and 95% validation accuracy, validation at the budget, and the test accuracy
of the best-by-validation center; validation and time at generation 0 (where a data
init starts, and what it cost: `init_s` counts inside the budget). CSV and PNG go to
--docs (es_levers.csv / .png, every validation point in es_levers_curves.csv). With
--generations N each lever runs N generations instead: accuracies that do not depend
on the machine's load (the columns say @Ng).

`plot` draws curve CSVs of `long` (validation solid, test dotted, training images
dashed) against seconds and generations: <docs>/es_long_curves_seconds.png and
es_long_curves_generation.png.

`long` runs one configuration (the `fast` preset, a params file's keys and -S overrides)
for --budget search seconds. With --calibrate the schedules' length is set from the
speed of the first 30 generations, so the learning rate reaches its floor at the end of
the budget; the generations that gives are printed, so the same run can be repeated by
generation count elsewhere. The curve (seconds, generation, validation, test of the
center) goes to --out as <name>_curve.csv; test accuracy is reported for the
best-by-validation center.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import load_task  # noqa: E402

from genreg.allocator import keep_freed_memory  # noqa: E402
from genreg.config import (  # noqa: E402
    Config,
    build_config,
    parse_override,
    read_params,
    unflatten,
)
from genreg.init import initial_genomes  # noqa: E402
from genreg.runner import RunState, make_rngs, step  # noqa: E402
from genreg.strategies import make_strategy  # noqa: E402
from genreg.task import ClassificationTask, accuracy, make_fitness_fn  # noqa: E402

# a cosine learning rate to 5% over the schedule ("SCHEDULE": see LEVERS)
COSINE = {
    "strategy.learning_rate_schedule": "cosine",
    "strategy.learning_rate_decay": 1.0,
    "strategy.learning_rate_floor": 0.05,
    "strategy.schedule_generations": "SCHEDULE",
}
# variant name -> overrides of the `fast` preset; "SCHEDULE" is replaced by the number
# of generations the first baseline ran in the budget. "images_late" doubles the images
# per class for the second half of the budget (a loop-level lever: the task's batch).
UNIT = {"strategy.name": "unit_es"}
LEVERS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "cosine_lr": COSINE,
    "cosine_lr_0.02": {**COSINE, "strategy.center_learning_rate": 0.02},
    "cosine_lr_sigma": {
        **COSINE,
        "strategy.stdev_schedule": "cosine",
        "strategy.stdev_floor": 0.5,
    },
    "w2_lowrank": {"strategy.w2_noise": "lowrank"},
    "rank_1_to_4": {
        "strategy.noise_rank_final": 4,
        "strategy.schedule_generations": "SCHEDULE",
    },
    "pop_500_to_2000": {
        "strategy.population_size": 500,
        "strategy.population_final": 2000,
        "strategy.schedule_generations": "SCHEDULE",
    },
    "images_late": {"images_late": 2},
    "threads_1": {"threads": 1},
    "combo_lr_sigma_images": {
        **COSINE,
        "strategy.center_learning_rate": 0.02,
        "strategy.stdev_schedule": "cosine",
        "strategy.stdev_floor": 0.5,
        "images_late": 2,
    },
    "combo_lr_pop": {
        **COSINE,
        "strategy.population_size": 500,
        "strategy.population_final": 2000,
    },
    "combo_lr02_rank": {
        **COSINE,
        "strategy.center_learning_rate": 0.02,
        "strategy.noise_rank_final": 4,
    },
    # after the CPU speed-up (1.5-1.7x the generations in 60 s): what to spend them on
    "cosine_pop_2000": {**COSINE, "strategy.population_size": 2000},
    "cosine_images_20": {**COSINE, "train.images_per_class": 20},
    "cosine_pop_500_to_3000": {
        **COSINE,
        "strategy.population_size": 500,
        "strategy.population_final": 3000,
    },
    "cosine_lr_0.015": {**COSINE, "strategy.center_learning_rate": 0.015},
    "cosine_w2_lowrank_rank_2": {
        **COSINE,
        "strategy.w2_noise": "lowrank",
        "strategy.noise_rank": 2,
    },
    # unit_es: a generation ~1/3 of lowrank_es's, so larger batches fit in the budget
    "unit": UNIT,
    "unit_cosine_images_30": {**UNIT, **COSINE, "train.images_per_class": 30},
    "unit_cosine_images_40": {**UNIT, **COSINE, "train.images_per_class": 40},
}
# a data init (genreg.init) starts the center unshrunk: the random part keeps fast's
# scale through init_weight / init_bias (0.5 x 0.1 and 0.1 x 0.1)
DATA_INIT = {
    "strategy.center_init_scale": 1.0,
    "model.init_weight": 0.05,
    "model.init_bias": 0.01,
}
PCA_RIDGE = {**DATA_INIT, "model.init": "pca", "model.readout": "ridge"}
LEVERS.update(
    {
        "uniform_unshrunk": DATA_INIT,  # fast's init written the data-init way
        "pca": {**DATA_INIT, "model.init": "pca"},
        "ridge": {**DATA_INIT, "model.readout": "ridge"},
        "pca_ridge": PCA_RIDGE,
        # starting near a good point wants smaller steps
        "pca_ridge_lr": {**PCA_RIDGE, "strategy.center_learning_rate": 0.002},
        "pca_ridge_small": {
            **PCA_RIDGE,
            "strategy.center_learning_rate": 0.002,
            "strategy.stdev_init": 0.01,
        },
    }
)
THRESHOLDS = (0.90, 0.95)
TRAIN_PROBE = 10_000  # training images a long run's curve also scores the center on


@dataclass
class Curve:
    """Validation (and test) of the center against search seconds."""

    name: str
    points: list[dict[str, float]] = field(default_factory=list)
    best_val: float = -1.0
    best_center: Tensor | None = None
    first_center: Tensor | None = None  # the center at the first point (the init)
    seconds: float = 0.0  # search seconds spent
    generations: int = 0

    def record(self, point: dict[str, float], center: Tensor) -> None:
        if self.first_center is None:
            self.first_center = center.detach().clone()
        if point["val_accuracy"] > self.best_val:
            self.best_val = point["val_accuracy"]
            self.best_center = center.detach().clone()
        self.points.append(point)

    def time_to(self, threshold: float) -> float | None:
        return next(
            (p["seconds"] for p in self.points if p["val_accuracy"] >= threshold), None
        )


def evolve(
    name: str,
    task: ClassificationTask,
    cfg: Config,
    budget: float,
    *,
    test: tuple[Tensor, Tensor] | None = None,
    images_late: int = 1,
    on_point: Callable[[dict[str, float]], None] | None = None,
    max_generations: int = 0,
) -> Curve:
    """The strategy of `cfg` for `budget` search seconds; validate every eval_every.

    With `images_late` > 1 the images per class are multiplied by it once half the
    budget is spent; `max_generations` > 0 stops earlier. With `test`, each point
    also has the center's test accuracy and its accuracy on the first TRAIN_PROBE
    training images (for the curve only: the reported test accuracy is the
    best-by-validation center's).
    """
    device = task.train_x.device
    rngs = make_rngs(cfg.seed, device)
    model = task.model
    strategy = make_strategy(
        cfg.strategy,
        model.num_params,
        cfg.train.images_per_class * model.num_outputs,
        model,
    )
    started = time.perf_counter()  # a data init's seconds count as search seconds
    genomes = initial_genomes(
        model, cfg.model, 1, rngs["init"], task.train_x, task.train_y
    )
    state = RunState(strategy.init(genomes, rngs["strategy"]), rngs)
    fitness_fn = make_fitness_fn(cfg.strategy)
    task.images_per_class = cfg.train.images_per_class
    curve, spent, generation = Curve(name), time.perf_counter() - started, 0
    probe = (task.train_x[:TRAIN_PROBE], task.train_y[:TRAIN_PROBE])

    def validate() -> None:
        center = strategy.best(state.strategy_state)
        point = {
            "seconds": spent,
            "generation": generation,
            "val_accuracy": task.validate(center),
        }
        if test is not None:
            point["test_accuracy"] = accuracy(model, center, *test).item()
            point["train_accuracy"] = accuracy(model, center, *probe).item()
        curve.record(point, center)
        if on_point is not None:
            on_point(point)

    validate()  # where the init starts: generation 0
    while spent < budget and generation != (max_generations or -1):
        if images_late > 1 and spent >= budget / 2:
            task.images_per_class = cfg.train.images_per_class * images_late
        started = time.perf_counter()
        step(strategy, task, fitness_fn, state)
        if device.type == "cuda":
            torch.cuda.synchronize()
        spent += time.perf_counter() - started
        generation += 1
        if generation % cfg.train.eval_every == 0 or spent >= budget:
            validate()
    curve.seconds, curve.generations = spent, generation
    return curve


def summary(
    curve: Curve, at: str, task: ClassificationTask, test: tuple[Tensor, Tensor]
) -> dict[str, Any]:
    """Times to the thresholds, best validation, test of the best center by val.

    `at` names the end of the run in the column names: "60s", or "1000g".
    """
    assert curve.best_center is not None
    row: dict[str, Any] = {"variant": curve.name}
    for threshold in THRESHOLDS:
        row[f"t{round(threshold * 100)}_s"] = curve.time_to(threshold)
    row[f"val@{at}"] = curve.best_val
    row[f"test@{at}"] = accuracy(task.model, curve.best_center, *test).item()
    row["generations"] = curve.points[-1]["generation"]
    row["val@0"] = curve.points[0]["val_accuracy"]
    assert curve.first_center is not None
    row["test@0"] = accuracy(task.model, curve.first_center, *test).item()
    row["init_s"] = curve.points[0]["seconds"]
    return row


def variant_config(
    base: Mapping[str, Any], overrides: Mapping[str, Any], schedule: int
) -> tuple[Config, dict[str, Any]]:
    """The config of one variant and its loop-level levers (threads, images_late)."""
    keys = {k: (schedule if v == "SCHEDULE" else v) for k, v in overrides.items()}
    loop = {k: keys.pop(k) for k in ("threads", "images_late") if k in keys}
    return build_config(base, keys), loop


def levers(
    data_dir: Path,
    budget: float,
    threads: int,
    names: Sequence[str],
    base: Mapping[str, Any],
    schedule: int = 0,
    generations: int = 0,
) -> tuple[list[dict[str, Any]], list[Curve]]:
    """Each named lever in turn for `budget` seconds: one summary row each.

    `schedule` (0: measured) is the generations a cosine / linear schedule spans: the
    baseline's generations in the budget, from the speed of its first 30 generations.
    With `generations` > 0 each lever runs that many generations instead (the
    accuracies then do not depend on the machine's load), and a schedule spans them.
    """
    torch.set_num_threads(threads)
    cfg = build_config(base)
    task, test_x, test_y = load_task(data_dir, cfg)
    test = (test_x, test_y)
    at = f"{generations}g" if generations else f"{budget:g}s"
    if generations:
        budget, schedule = float("inf"), schedule or generations
    if not schedule:
        probe = evolve("probe", task, cfg, float("inf"), max_generations=30)
        schedule = int(budget * probe.generations / probe.seconds)
        print(f"baseline speed: ~{schedule} generations in {budget:g} s", flush=True)
    rows, curves = [], []
    for name in names:
        vcfg, loop = variant_config(base, LEVERS[name], schedule)
        torch.set_num_threads(loop.get("threads", threads))
        curve = evolve(
            name,
            task,
            vcfg,
            budget,
            images_late=loop.get("images_late", 1),
            max_generations=generations,
        )
        torch.set_num_threads(threads)
        curves.append(curve)
        rows.append({**summary(curve, at, task, test), "schedule": schedule})
        print(rows[-1], flush=True)
    return rows, curves


def write_curves(path: Path, curves: Sequence[Curve]) -> None:
    """Every lever's validation points: variant, generation, seconds, val_accuracy."""
    keys = ("generation", "seconds", "val_accuracy")
    rows = [
        {"variant": c.name, **{k: p[k] for k in keys}} for c in curves for p in c.points
    ]
    write_rows(path, rows)


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(curves: Sequence[Curve], path: Path, x: str, title: str) -> None:
    """Validation accuracy against `x` (seconds or generation), one line per curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for curve in curves:
        xs = [p[x] for p in curve.points]
        vals = [p["val_accuracy"] for p in curve.points]
        (line,) = ax.plot(xs, vals, label=curve.name)
        if curve.points and "test_accuracy" in curve.points[0]:
            ts = [p["test_accuracy"] for p in curve.points]
            ax.plot(xs, ts, linestyle=":", color=line.get_color(), label="(test)")
        if curve.points and "train_accuracy" in curve.points[0]:
            trs = [p["train_accuracy"] for p in curve.points]
            ax.plot(xs, trs, linestyle="--", color=line.get_color(), label="(train)")
    ax.set_ylim(0.85, 1.0)
    ax.set_xlabel("search seconds" if x == "seconds" else x)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def long_run(
    data_dir: Path,
    budget: float,
    base: Mapping[str, Any],
    device: str,
    calibrate: bool,
    name: str,
    out_dir: Path,
) -> dict[str, Any]:
    """One configuration for `budget` search seconds; curve CSV and a summary JSON."""
    if calibrate:  # a placeholder length until the speed is known
        base = _with_schedule(base, 1)
    cfg = build_config(base)
    task, test_x, test_y = load_task(data_dir, cfg)
    task = on_device(task, device)
    test = (test_x.to(device), test_y.to(device))
    if calibrate:
        probe = evolve("probe", task, cfg, float("inf"), max_generations=30)
        seconds = probe.seconds / probe.generations
        gens = int(budget / seconds)
        cfg = build_config(_with_schedule(base, gens))
        print(f"calibrated: {seconds * 1e3:.1f} ms/generation -> {gens} generations")
    out_dir.mkdir(parents=True, exist_ok=True)
    log = (out_dir / f"{name}_curve.csv").open("w", newline="")
    writer = csv.DictWriter(
        log,
        fieldnames=[
            "seconds",
            "generation",
            "val_accuracy",
            "test_accuracy",
            "train_accuracy",
        ],
    )
    writer.writeheader()

    def on_point(point: dict[str, float]) -> None:
        writer.writerow(point)
        log.flush()
        print(json.dumps(point), flush=True)

    curve = evolve(name, task, cfg, budget, test=test, on_point=on_point)
    log.close()
    row = summary(curve, f"{budget:g}s", task, test)
    best = max(curve.points, key=lambda p: p["val_accuracy"])
    row.update(best_generation=best["generation"], device=device, config=cfg.flat())
    (out_dir / f"{name}_summary.json").write_text(json.dumps(row, indent=1))
    plot([curve], out_dir / f"{name}_curve.png", "seconds", f"{name} on {device}")
    return row


def _with_schedule(base: Mapping[str, Any], generations: int) -> dict[str, Any]:
    strategy = {**base.get("strategy", {}), "schedule_generations": generations}
    return {**base, "strategy": strategy}


def read_curve(path: Path) -> Curve:
    """A curve written by `long` (<name>_curve.csv), named after its file."""
    with path.open() as handle:
        points = [
            {k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)
        ]
    return Curve(path.stem.removesuffix("_curve"), points)


def on_device(task: ClassificationTask, device: str) -> ClassificationTask:
    """The task with its images and labels on `device`."""
    return ClassificationTask(
        model=task.model,
        train_x=task.train_x.to(device),
        train_y=task.train_y.to(device),
        val_x=task.val_x.to(device),
        val_y=task.val_y.to(device),
        images_per_class=task.images_per_class,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: levers | long, --data, --budget, -S overrides, --params FILE."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["levers", "long", "plot"])
    parser.add_argument("curves", nargs="*", type=Path, help="plot: curve CSVs")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--budget", type=float, default=60.0, help="search seconds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--params", type=Path, help="params file over the preset")
    parser.add_argument("-S", "--set", action="append", default=[], help="key=value")
    parser.add_argument("--lever", action="append", choices=sorted(LEVERS))
    parser.add_argument("--schedule", type=int, default=0, help="0: measured")
    parser.add_argument(
        "--generations", type=int, default=0, help="levers: run by count, not time"
    )
    parser.add_argument("--tag", default="", help="suffix of the CSV / PNG names")
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--name", default="long")
    parser.add_argument("--out", type=Path, default=Path("runs/es_push"))
    args = parser.parse_args(argv)
    keep_freed_memory()
    base: dict[str, Any] = {"preset": "fast"}
    if args.params is not None:
        base.update(read_params(args.params))
    overrides = unflatten(dict(parse_override(o) for o in args.set))
    for key, value in overrides.items():  # a section's keys, or a top-level `seed`
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    if args.mode == "plot":
        curves = [read_curve(path) for path in args.curves]
        for x in ("seconds", "generation"):
            path = args.docs / f"es_long_curves_{x}.png"
            plot(curves, path, x, "long low-rank ES runs: validation and test")
        return
    if args.mode == "levers":
        names = args.lever or list(LEVERS)
        rows, curves = levers(
            args.data,
            args.budget,
            args.threads,
            names,
            base,
            args.schedule,
            args.generations,
        )
        stem = f"es_levers{'_' + args.tag if args.tag else ''}"
        write_rows(args.docs / f"{stem}.csv", rows)
        write_curves(args.docs / f"{stem}_curves.csv", curves)
        each = (
            f"{args.generations} generations"
            if args.generations
            else (f"{args.budget:g} s")
        )
        title = f"ES levers, {each} each, {args.threads} threads"
        x = "generation" if args.generations else "seconds"
        plot(curves, args.docs / f"{stem}.png", x, title)
        for row in rows:
            print(row)
        return
    torch.set_num_threads(args.threads)
    row = long_run(
        args.data, args.budget, base, args.device, args.calibrate, args.name, args.out
    )
    print(json.dumps({k: v for k, v in row.items() if k != "config"}))


if __name__ == "__main__":
    main()
