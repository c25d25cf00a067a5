"""genreg's `fast` preset against EvoTorch's PGPE on the same MLP, data, CPU and budget.

Both train the 784-64-10 tanh MLP (genreg's BatchedMLP forward, vectorised over the
population) on one common class-balanced minibatch per generation, with the same
fitness (negative cross-entropy), initial center and validation set. The clock stops
during validation, so both get the same search time. The last row is the backprop
reference (benchmarks/reference.py): Adam on the same MLP, initial center, split and
threads, for the same budget. Usage:

    python benchmarks/peers.py --data data/prepared --budget 10 --budget 60 --threads 2
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from genreg.allocator import keep_freed_memory
from genreg.config import PRESETS, Config, build_config, parse_override, unflatten
from genreg.datasets import load_prepared
from genreg.model import BatchedMLP
from genreg.runner import make_rngs, step
from genreg.strategies import make_strategy
from genreg.task import ClassificationTask, accuracy, make_fitness_fn, to_inputs

THRESHOLDS = (0.85, 0.90)
DEFAULT_THREADS = 2  # the README's results table: 2 threads of the 2-core CPU


@dataclass
class Curve:
    """Validation score against search seconds; the best genome as it improved.

    The score is accuracy (higher is better) unless `higher_is_better` is False (MSE).
    """

    peer: str
    points: list[tuple[float, int, float]] = field(default_factory=list)
    improvements: list[tuple[float, Tensor]] = field(default_factory=list)
    higher_is_better: bool = True

    def record(
        self, seconds: float, generation: int, val: float, genome: Tensor
    ) -> None:
        """Add a validation point; keep the genome when it is the best so far."""
        if self.best_val() is None or self._better(val, self.best_val()):
            self.improvements.append((seconds, genome.detach().clone()))
        self.points.append((seconds, generation, val))

    def best_val(self, seconds: float = float("inf")) -> float | None:
        """The best validation score recorded within `seconds`."""
        vals = [v for t, _, v in self.points if t <= seconds]
        if not vals:
            return None
        return max(vals) if self.higher_is_better else min(vals)

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b

    def time_to(self, threshold: float) -> float | None:
        """Search seconds until validation accuracy first reached `threshold`."""
        return next((t for t, _, v in self.points if v >= threshold), None)

    def best_at(self, seconds: float) -> Tensor | None:
        """The best-by-validation genome found within `seconds`."""
        found = [g for t, g in self.improvements if t <= seconds]
        return found[-1] if found else None


def load_task(data_dir: Path, cfg: Config) -> tuple[ClassificationTask, Tensor, Tensor]:
    """The genreg task (train pool, validation set) and the test set."""
    splits = load_prepared(data_dir)
    train, val, test = splits["train"], splits["val"], splits["test"]
    num_inputs = int(train.images.shape[1] * train.images.shape[2])
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    val_n = min(cfg.train.val_images, len(val.labels))
    task = ClassificationTask(
        model=BatchedMLP(num_inputs, cfg.model.hidden, num_classes),
        train_x=to_inputs(train.images),
        train_y=torch.as_tensor(train.labels),
        val_x=to_inputs(val.images[:val_n]),
        val_y=torch.as_tensor(val.labels[:val_n]),
        images_per_class=cfg.train.images_per_class,
    )
    return task, to_inputs(test.images), torch.as_tensor(test.labels)


def initial_center(task: ClassificationTask, cfg: Config) -> Tensor:
    """The center both peers start from: first init genome times center_init_scale."""
    rngs = make_rngs(cfg.seed)
    genomes = task.model.init(
        1, rngs["init"], cfg.model.init_weight, cfg.model.init_bias
    )
    return genomes[0] * cfg.strategy.center_init_scale


def timed_loop(
    peer: str,
    task: ClassificationTask,
    budget: float,
    eval_every: int,
    one_generation: Callable[[], None],
    center: Callable[[], Tensor],
) -> Curve:
    """Call `one_generation` for `budget` search seconds; validate every eval_every."""
    curve, spent, generation = Curve(peer), 0.0, 0
    while spent < budget:
        started = time.perf_counter()
        one_generation()
        spent += time.perf_counter() - started
        generation += 1
        if generation % eval_every == 0 or spent >= budget:
            genome = center()
            val = accuracy(task.model, genome, task.val_x, task.val_y).item()
            curve.record(spent, generation, val, genome)
    return curve


def peer_label(cfg: Config) -> str:
    """genreg's row: the preset's name, or the strategy's once -S names another one."""
    preset_strategy = PRESETS.get(cfg.preset or "", {}).get("strategy", {}).get("name")
    if cfg.preset and cfg.strategy.name == preset_strategy:
        return f"genreg {cfg.preset}"
    return f"genreg {cfg.strategy.name}"


def run_genreg(task: ClassificationTask, cfg: Config, budget: float) -> Curve:
    """genreg's strategy from `cfg` (e.g. the `fast` preset) for `budget` seconds."""
    from genreg.runner import RunState

    rngs = make_rngs(cfg.seed)
    model = task.model
    strategy = make_strategy(
        cfg.strategy,
        model.num_params,
        cfg.train.images_per_class * model.num_outputs,
        model,
    )
    genomes = model.init(
        cfg.strategy.population_size,
        rngs["init"],
        cfg.model.init_weight,
        cfg.model.init_bias,
    )
    state = RunState(strategy.init(genomes, rngs["strategy"]), rngs)
    fitness_fn = make_fitness_fn(cfg.strategy)

    def one_generation() -> None:
        step(strategy, task, fitness_fn, state)

    return timed_loop(
        peer_label(cfg),
        task,
        budget,
        cfg.train.eval_every,
        one_generation,
        lambda: strategy.best(state.strategy_state),
    )


def run_evotorch(
    task: ClassificationTask,
    cfg: Config,
    budget: float,
    optimizer: str = "clipup",
    popsize: int = 200,
    center_learning_rate: float | None = None,
) -> Curve | None:
    """EvoTorch PGPE (centred ranks, ClipUp or Adam) on the same vectorised problem."""
    if importlib.util.find_spec("evotorch") is None:
        print("skipping EvoTorch: package not installed (pip install 'genreg[peers]')")
        return None
    from evotorch import Problem
    from evotorch.algorithms import PGPE

    logging.getLogger("evotorch").setLevel(logging.WARNING)

    rng = torch.Generator().manual_seed(cfg.seed)
    fitness_fn = make_fitness_fn(cfg.strategy)

    def objective(solutions: Tensor) -> Tensor:
        x, y = task.sample_batch(rng)  # one common minibatch per generation
        return fitness_fn(task.model.forward(solutions, x), y, rng)

    torch.manual_seed(cfg.seed)
    problem = Problem(
        "max",
        objective,
        solution_length=task.model.num_params,
        initial_bounds=(-1e-5, 1e-5),
        vectorized=True,
        device="cpu",
    )
    # ClipUp's paper setting: max_speed = 2 * lr, lr ~ 0.15 * radius / sqrt... tuned
    if center_learning_rate is None:
        center_learning_rate = 0.5 if optimizer == "clipup" else 0.01
    searcher = PGPE(
        problem,
        popsize=popsize,
        center_learning_rate=center_learning_rate,
        stdev_learning_rate=0.1,
        stdev_init=cfg.strategy.stdev_init,
        optimizer=optimizer,
        ranking_method="centered",
        center_init=initial_center(task, cfg),
        stdev_max_change=0.2,
    )
    return timed_loop(
        f"evotorch pgpe+{optimizer}",
        task,
        budget,
        cfg.train.eval_every,
        searcher.step,
        lambda: searcher.status["center"].detach().clone(),
    )


def table(
    curves: Sequence[Curve],
    budgets: Sequence[float],
    model: BatchedMLP,
    test_x: Tensor,
    test_y: Tensor,
) -> list[dict[str, object]]:
    """One row per peer: time to each threshold, best validation and test per budget."""
    rows = []
    for curve in curves:
        row: dict[str, object] = {"peer": curve.peer}
        for threshold in THRESHOLDS:
            row[f"t{round(threshold * 100)}_s"] = curve.time_to(threshold)
        for budget in budgets:
            genome = curve.best_at(budget)
            row[f"val@{budget:g}s"] = curve.best_val(budget)
            row[f"test@{budget:g}s"] = (
                None
                if genome is None
                else accuracy(model, genome, test_x, test_y).item()
            )
        row["generations"] = curve.points[-1][1] if curve.points else 0
        rows.append(row)
    return rows


def compare(
    data_dir: Path,
    budgets: Sequence[float],
    overrides: Sequence[str] = (),
    optimizers: Sequence[str] = ("clipup",),
    peer_popsize: int = 400,
    backprop: bool = False,
) -> list[dict[str, object]]:
    """Run the `fast` preset and EvoTorch for max(budgets) seconds each: the table.

    With `backprop`, the last row is Adam (benchmarks/reference.py) for as long.
    """
    params = {"preset": "fast", **unflatten(dict(parse_override(o) for o in overrides))}
    cfg = build_config(params)
    task, test_x, test_y = load_task(data_dir, cfg)
    budget = max(budgets)
    curves = [run_genreg(task, cfg, budget)]
    for optimizer in optimizers:
        curve = run_evotorch(task, cfg, budget, optimizer, peer_popsize)
        if curve is not None:
            curves.append(curve)
    if backprop:
        curves.append(run_backprop(task, cfg, budget))
    return table(curves, budgets, task.model, test_x, test_y)


def run_backprop(task: ClassificationTask, cfg: Config, budget: float) -> Curve:
    """Adam on the same MLP from the same initial center for `budget` seconds."""
    import reference  # imports this module, so not at the top

    settings = reference.AdamSettings(
        patience=None, max_epochs=None, max_seconds=budget, seed=cfg.seed
    )
    return reference.classifier_reference(
        task, initial_center(task, cfg), settings
    ).curve


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """Rows as a plain-text table."""
    columns = list(rows[0])
    cells = [[_fmt(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells
    ]
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if value <= 1 else f"{value:.1f}"
    return f"{value}"


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: --data, --budget (repeatable), -S overrides of the fast preset."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument(
        "--budget", type=float, action="append", help="seconds (repeat)"
    )
    parser.add_argument("-S", "--set", action="append", default=[], help="key=value")
    parser.add_argument("--optimizer", action="append", choices=["clipup", "adam"])
    parser.add_argument(
        "--peer-popsize", type=int, default=400, help="EvoTorch's population"
    )
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument(
        "--no-backprop", action="store_true", help="leave out the Adam reference row"
    )
    args = parser.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    rows = compare(
        args.data,
        args.budget or [60.0, 180.0],
        args.set,
        args.optimizer or ["clipup"],
        args.peer_popsize,
        backprop=not args.no_backprop,
    )
    print(f"{torch.get_num_threads()} torch threads")
    print(format_table(rows))


if __name__ == "__main__":
    main()
