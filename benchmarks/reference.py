"""Backprop with Adam: the reference beside every gradient-free result.

    python benchmarks/reference.py --data data/prepared --threads 2
    python benchmarks/reference.py --data data/prepared --task autoencoder --threads 1

The same model code (genreg's BatchedMLP, or the autoencoder of genreg/autoencoder.py,
run on one genome), the same initial genome as genreg's (the `fast` preset's center for
the classifier, the autoencoder's own init), the same prepared split (train on train,
select on validation, report test) and the same torch threads as the gradient-free
benchmarks. Minibatch Adam over shuffled epochs; the clock stops during validation.
Prints the test score of the best-by-validation genome after 1, 10 and 60 s of
training, and at the plateau: training goes on past the last budget until validation
has not improved for --patience epochs (or --max-epochs are done).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoencoder import load_task as load_reconstruction  # noqa: E402
from peers import DEFAULT_THREADS, Curve, format_table, initial_center  # noqa: E402
from peers import load_task as load_classification  # noqa: E402

from genreg.autoencoder import ReconstructionTask, mse  # noqa: E402
from genreg.config import build_config  # noqa: E402
from genreg.runner import make_rngs  # noqa: E402
from genreg.task import ClassificationTask, accuracy  # noqa: E402

BUDGETS = (1.0, 10.0, 60.0)

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # (genome, x, target) -> scalar


@dataclass(frozen=True)
class AdamSettings:
    """Minibatch Adam and when to stop.

    Training stops at `max_seconds` (0: no limit), or once at least `min_seconds` are
    spent and either `max_epochs` are done or validation has not improved for
    `patience` epochs (None: never stop for that).
    """

    learning_rate: float = 1e-3
    batch_size: int = 100
    eval_every: int = 50  # steps between validations (and at every epoch's end)
    patience: int | None = 3
    max_epochs: int | None = 30
    min_seconds: float = 0.0
    max_seconds: float = 0.0
    seed: int = 0


@dataclass
class Reference:
    """A backprop run: its validation curve (x: seconds, generation: Adam steps)."""

    curve: Curve
    steps_per_epoch: int
    epochs: int  # epochs completed (a run stopped by max_seconds may end mid-epoch)

    @property
    def plateau(self) -> tuple[float, int, float]:
        """(seconds, step, validation score) of the best validation point."""
        best = self.curve.best_val()
        return next(p for p in self.curve.points if p[2] == best)


def train_adam(
    label: str,
    genome: Tensor,
    loss_fn: LossFn,
    train_x: Tensor,
    train_target: Tensor,
    validate: Callable[[Tensor], float],
    settings: AdamSettings,
    higher_is_better: bool = True,
) -> Reference:
    """Adam on the flat genome [D], from `genome`; validation recorded against seconds.

    `train_target` [N, ...] is indexed like `train_x` [N, I] (labels, or the inputs
    themselves for a reconstruction). The curve starts with the initial genome at 0 s.
    """
    params = genome.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([params], lr=settings.learning_rate)
    rng = torch.Generator().manual_seed(settings.seed)
    curve = Curve(label, higher_is_better=higher_is_better)
    n, size = len(train_x), settings.batch_size
    spent, steps, epochs, best_epoch = 0.0, 0, 0, 0
    curve.record(spent, steps, validate(params.detach()), params.detach())

    def out_of_time() -> bool:
        return 0 < settings.max_seconds <= spent

    def plateaued() -> bool:
        if spent < settings.min_seconds:
            return False
        done = settings.max_epochs is not None and epochs >= settings.max_epochs
        stale = settings.patience is not None and epochs - best_epoch >= (
            settings.patience
        )
        return done or stale

    while not (out_of_time() or plateaued()):
        started = time.perf_counter()
        order = torch.randperm(n, generator=rng)
        for begin in range(0, n, size):
            chosen = order[begin : begin + size]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(params, train_x[chosen], train_target[chosen]).backward()
            optimizer.step()
            steps += 1
            elapsed = time.perf_counter() - started
            budget_hit = 0 < settings.max_seconds <= spent + elapsed
            if steps % settings.eval_every == 0 or begin + size >= n or budget_hit:
                spent += elapsed
                before = curve.best_val()
                curve.record(spent, steps, validate(params.detach()), params.detach())
                if curve.best_val() != before:
                    best_epoch = epochs + 1  # counts as of the end of this epoch
                if out_of_time():
                    break
                started = time.perf_counter()
        else:
            epochs += 1
    return Reference(curve, math.ceil(n / size), epochs)


def classifier_loss(task: ClassificationTask) -> LossFn:
    """Cross-entropy of genreg's MLP forward on one genome."""

    def loss(genome: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return functional.cross_entropy(task.model.forward(genome, x)[0], y)

    return loss


def reconstruction_loss(task: ReconstructionTask) -> LossFn:
    """Reconstruction MSE (genreg/autoencoder.py's `mse`) on one genome."""

    def loss(genome: Tensor, x: Tensor, target: Tensor) -> Tensor:
        return mse(task.model.forward(genome, x), target)[0]

    return loss


def classifier_reference(
    task: ClassificationTask, genome: Tensor, settings: AdamSettings
) -> Reference:
    """Backprop on the classification task; validation accuracy."""
    return train_adam(
        "backprop (Adam)",
        genome,
        classifier_loss(task),
        task.train_x,
        task.train_y,
        task.validate,
        settings,
    )


def autoencoder_reference(
    task: ReconstructionTask, genome: Tensor, settings: AdamSettings
) -> Reference:
    """Backprop on the reconstruction task; validation MSE (lower is better)."""
    return train_adam(
        "backprop (Adam)",
        genome,
        reconstruction_loss(task),
        task.train_x,
        task.train_x,
        task.validate,
        settings,
        higher_is_better=False,
    )


def summary(
    reference: Reference,
    budgets: Sequence[float],
    test_score: Callable[[Tensor], float],
) -> list[dict[str, object]]:
    """Rows: the best-by-validation genome at each budget, then at the plateau."""
    curve, per_epoch = reference.curve, reference.steps_per_epoch
    rows = []
    for budget in budgets:
        genome = curve.best_at(budget)
        steps = max((g for t, g, _ in curve.points if t <= budget), default=0)
        rows.append(
            {
                "at": f"{budget:g} s",
                "steps": steps,
                "epochs": round(steps / per_epoch, 2),
                "train_s": min(budget, curve.points[-1][0]),
                "val": curve.best_val(budget),
                "test": None if genome is None else test_score(genome),
            }
        )
    seconds, steps, val = reference.plateau
    rows.append(
        {
            "at": f"plateau (of {reference.epochs} epochs)",
            "steps": steps,
            "epochs": round(steps / per_epoch, 2),
            "train_s": seconds,
            "val": val,
            "test": test_score(curve.improvements[-1][1]),
        }
    )
    return rows


def run_task(
    task_name: str,
    data_dir: Path,
    budgets: Sequence[float],
    settings: AdamSettings,
    hidden: int = 64,
) -> list[dict[str, object]]:
    """Load the task, train until the plateau (at least max(budgets)), summarise.

    `hidden` is the classifier's hidden width (the autoencoder's shape is fixed).
    """
    settings = AdamSettings(
        **{**settings.__dict__, "min_seconds": max(budgets, default=0.0)}
    )
    if task_name == "classifier":
        cfg = build_config(
            {"preset": "fast", "seed": settings.seed, "model": {"hidden": hidden}}
        )
        task, test_x, test_y = load_classification(data_dir, cfg)
        reference = classifier_reference(task, initial_center(task, cfg), settings)
        return summary(
            reference,
            budgets,
            lambda g: accuracy(task.model, g, test_x, test_y).item(),
        )
    recon, raw_test, _ = load_reconstruction(data_dir, settings.batch_size, 1000)
    genome = recon.model.init(1, make_rngs(settings.seed)["init"])[0]
    reference = autoencoder_reference(recon, genome, settings)
    test_centred = raw_test - recon.mean_image
    return summary(reference, budgets, lambda g: recon.val_mse(g, test_centred))


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: --task, --data, --budget (repeatable), --threads, Adam knobs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--task",
        choices=["classifier", "autoencoder"],
        default="classifier",
        help="the 784-H-10 tanh MLP on accuracy, or the 784-128-64-12-3 autoencoder "
        "on reconstruction MSE (default: classifier)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("data/prepared"),
        help="prepared folder (train/val/test .npz) (default: data/prepared)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        action="append",
        help="report the best-by-validation genome after this many seconds of "
        f"training; repeat for several (default: {' '.join(map(str, BUDGETS))})",
    )
    parser.add_argument(
        "--hidden", type=int, default=64, help="classifier hidden width (default: 64)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"torch CPU threads, as the gradient-free run compared (default: "
        f"{DEFAULT_THREADS})",
    )
    parser.add_argument(
        "--lr", type=float, default=AdamSettings.learning_rate, help="Adam step size"
    )
    parser.add_argument(
        "--batch", type=int, default=AdamSettings.batch_size, help="images per step"
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=AdamSettings.patience,
        help="after the largest budget, stop once validation has not improved for "
        "this many epochs (the plateau)",
    )
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=AdamSettings.max_epochs,
        help="stop after this many epochs whatever validation does",
    )
    parser.add_argument("--seed", type=int, default=0, help="init and batch order")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=0.0,
        help="stop training after this many seconds (0: no limit)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = AdamSettings(
        learning_rate=args.lr,
        batch_size=args.batch,
        patience=args.patience,
        max_epochs=args.max_epochs,
        max_seconds=args.max_seconds,
        seed=args.seed,
    )
    rows = run_task(args.task, args.data, args.budget or BUDGETS, settings, args.hidden)
    print(f"backprop (Adam), {args.task}, {torch.get_num_threads()} threads")
    print(format_table(rows))


if __name__ == "__main__":
    main()
