"""The evolved MNIST autoencoder: trust GA, simple GA and OpenES on reconstruction MSE.

    python benchmarks/autoencoder.py --data data/prepared --generations 300 --out docs

Each strategy evolves the mirrored 784-128-64-12-3 autoencoder (genreg/autoencoder.py)
from the same seed, on mean-subtracted images, with fitness -MSE on a batch shared by
the population. Prints a table (validation MSE of the best genome, its test MSE, the
MSE of always answering the mean image, seconds) and writes to --out:
autoencoder_curves.csv, autoencoder_curves.png (validation MSE against generation and
against seconds) and autoencoder_reconstructions.png (test digits, then each
strategy's reconstructions of them).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from genreg.autoencoder import (  # noqa: E402
    BatchedAutoencoder,
    ReconstructionTask,
    mirrored_sizes,
    neg_mse,
)
from genreg.config import build_config  # noqa: E402
from genreg.datasets import load_prepared  # noqa: E402
from genreg.runner import RunState, make_rngs, run  # noqa: E402
from genreg.strategies import make_strategy  # noqa: E402
from genreg.task import to_inputs  # noqa: E402

# Knobs per strategy; the rest are its config's defaults. Weights start near
# 1/sqrt(fan_in) (0.036 in the first layer), so mutations are 0.02, not the
# classifier's 0.1.
STRATEGIES: dict[str, dict[str, Any]] = {
    "trust_ga": {
        "name": "trust_ga",
        "population_size": 200,
        "mutation_prob": 0.07,
        "mutation_scale": 0.02,
        "crossover": "uniform",
    },
    "simple_ga": {
        "name": "simple_ga",
        "population_size": 200,
        "elitism": 1,
        "mutation_prob": 0.07,
        "mutation_scale": 0.02,
        "center_init_scale": 1.0,
    },
    "open_es": {
        "name": "open_es",
        "population_size": 200,
        "stdev_init": 0.01,
        "center_learning_rate": 0.003,
        "center_init_scale": 1.0,
        "shaping": "centered_ranks",
    },
}
GRID_DIGITS = 10


@dataclass
class Record:
    """Callback: (generation, search seconds, validation MSE) of one run."""

    seconds: float = 0.0
    points: list[tuple[int, float, float]] = field(default_factory=list)

    def on_generation(self, generation: int, metrics: Mapping[str, float]) -> None:
        self.seconds += metrics["seconds_per_generation"]
        if "val_mse" in metrics:
            self.points.append((generation + 1, self.seconds, metrics["val_mse"]))


def load_task(
    data_dir: Path, batch_size: int, val_images: int
) -> tuple[ReconstructionTask, Tensor, Tensor]:
    """The reconstruction task on the prepared splits; raw test images and labels."""
    splits = load_prepared(data_dir)
    model = BatchedAutoencoder(mirrored_sizes())
    task = ReconstructionTask.from_images(
        model,
        to_inputs(splits["train"].images),
        to_inputs(splits["val"].images[:val_images]),
        batch_size,
    )
    test = splits["test"]
    return task, to_inputs(test.images), torch.as_tensor(test.labels)


def evolve(
    task: ReconstructionTask,
    knobs: Mapping[str, Any],
    generations: int,
    eval_every: int,
    seed: int,
) -> tuple[RunState, Record]:
    """One strategy's run; the state holds the best genome by validation MSE."""
    cfg = build_config({"seed": seed, "strategy": dict(knobs)})
    model = task.model
    strategy = make_strategy(cfg.strategy, model.num_params, task.batch_size, None)
    rngs = make_rngs(seed)
    genomes = model.init(cfg.strategy.population_size, rngs["init"])
    state = RunState(strategy.init(genomes, rngs["strategy"]), rngs)
    record = Record()
    run(
        strategy,
        task,
        neg_mse,
        state,
        num_generations=generations,
        eval_every=eval_every,
        callbacks=[record],
    )
    return state, record


def plot_curves(path: Path, records: Mapping[str, Record], floor: float) -> None:
    """Validation MSE against generation and against seconds, one line a strategy."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    for name, record in records.items():
        gens, secs, vals = zip(*record.points, strict=True)
        axes[0].plot(gens, vals, label=name)
        axes[1].plot(secs, vals, label=name)
    for ax, xlabel in zip(axes, ("generation", "search seconds"), strict=True):
        ax.axhline(floor, color="grey", linestyle=":", label="mean image")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation MSE (mean-subtracted)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Evolved 784-128-64-12-3 autoencoder on MNIST")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_grid(
    path: Path, task: ReconstructionTask, genomes: Mapping[str, Tensor], images: Tensor
) -> None:
    """Row 0 the test digits; then one row of reconstructions per strategy."""
    rows = {"test image": images}
    rows.update({name: task.reconstruct(g, images) for name, g in genomes.items()})
    fig, axes = plt.subplots(
        len(rows), len(images), figsize=(len(images), 1.1 * len(rows)), dpi=110
    )
    for r, (name, batch) in enumerate(rows.items()):
        for c, image in enumerate(batch):
            ax = axes[r, c]
            ax.imshow(image.view(28, 28).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: --data, --generations, --batch, --strategy (repeatable), --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--generations", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100, help="images per generation")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--strategy", action="append", choices=sorted(STRATEGIES), default=[]
    )
    parser.add_argument("--out", type=Path, default=Path("runs/autoencoder"))
    args = parser.parse_args(argv)
    task, test_x, test_y = load_task(args.data, args.batch, args.val_images)
    test_centred = test_x - task.mean_image
    floor = task.val_x.square().mean().item()
    records, best = {}, {}
    print(f"mean-image MSE (validation): {floor:.5f}", file=sys.stderr)
    rows = []
    for name in args.strategy or list(STRATEGIES):
        state, record = evolve(
            task, STRATEGIES[name], args.generations, args.eval_every, args.seed
        )
        assert state.best_genome is not None
        records[name], best[name] = record, state.best_genome
        rows.append(
            (
                name,
                -state.best_val_score,
                task.val_mse(state.best_genome, test_centred),
                record.seconds,
            )
        )
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "autoencoder_curves.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["strategy", "generation", "seconds", "val_mse"])
        for name, record in records.items():
            for gen, secs, val in record.points:
                writer.writerow([name, gen, f"{secs:.2f}", f"{val:.6f}"])
    plot_curves(args.out / "autoencoder_curves.png", records, floor)
    plot_grid(
        args.out / "autoencoder_reconstructions.png",
        task,
        best,
        test_x[[int(torch.nonzero(test_y == d)[0]) for d in range(GRID_DIGITS)]],
    )
    print("| strategy | best val MSE | test MSE | search s | s/gen |")
    print("| --- | --- | --- | --- | --- |")
    for name, val, test, secs in rows:
        print(
            f"| {name} | {val:.5f} | {test:.5f} | {secs:.0f} | "
            f"{secs / args.generations:.3f} |"
        )
    print(f"| mean image | {floor:.5f} | | | |")


if __name__ == "__main__":
    main()
