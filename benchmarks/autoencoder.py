"""The evolved MNIST autoencoder: trust GA, GA, OpenAI-ES, low-rank ES against backprop.

    python benchmarks/autoencoder.py --data data/prepared --seconds 480 --threads 1 \
        --jobs 3 --out docs

--strategy picks methods (default: all four), --variant NAME=STRATEGY,KNOB=VALUE adds
one with other knobs, --jobs runs that many at once (one process each), and
--reference-epochs 0 leaves backprop out.

Each strategy evolves the mirrored 784-128-64-12-3 autoencoder (genreg/autoencoder.py)
from the same seed, on mean-subtracted images, with fitness -MSE on a batch shared by
the population; the best genome is chosen on validation MSE. The reference is backprop
(benchmarks/reference.py): Adam on the same model, initial genome and split, trained to
its plateau. Prints a table (generations, search seconds, best validation MSE, its test
MSE, the ratio to backprop's plateau test MSE, the share of the mean image's MSE
removed) and writes to --out: autoencoder_curves.csv, autoencoder_per_generation.png and
autoencoder_per_second.png (test MSE of the best-by-validation genome against
generations, or Adam steps, and against seconds) and autoencoder_reconstructions.png.
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

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
from genreg.config import LowRankESConfig, StrategyConfig, build_config  # noqa: E402
from genreg.datasets import load_prepared  # noqa: E402
from genreg.runner import RunState, make_rngs, run  # noqa: E402
from genreg.strategies import make_strategy  # noqa: E402
from genreg.strategies.base import Strategy  # noqa: E402
from genreg.strategies.open_es import OpenES, OpenESState  # noqa: E402
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
    "lowrank_es": {
        "name": "lowrank_es",
        "population_size": 200,
        "noise_rank": 1,
        "stdev_init": 0.01,
        "center_learning_rate": 0.003,
        "center_init_scale": 1.0,
        "shaping": "centered_ranks",
    },
}
GRID_DIGITS = 10
REFERENCE = "backprop (Adam)"


@dataclass(frozen=True)
class LowRankAutoencoderPopulation:
    """P mirrored members around `center`; every weight matrix's noise has rank r.

    Member j < P/2 adds sigma / sqrt(r) A_j B_j^T to each layer's W [in, out] and
    sigma * e_j to its bias; member j + P/2 subtracts them. `factors` holds per layer
    a [in, P/2 * r] and b [P/2 * r, out]; `biases` [P/2, total bias width].
    """

    model: BatchedAutoencoder
    center: Tensor
    sigma: float
    rank: int
    factors: list[tuple[Tensor, Tensor]]
    biases: Tensor

    def __len__(self) -> int:
        return 2 * len(self.biases)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstructions [P, B, I] of the shared inputs x [B, I].

        The first layer's x @ W is computed once for all members; later layers do
        one [P * B, in] @ [in, out] GEMM on the shared W. Each member's rank-r
        correction and bias noise are one batched product added in the same pass:
        [h A_j, 1] @ [B_j^T; e_j], added for the + half and subtracted for the -.
        """
        half, r, batch = len(self.biases), self.rank, len(x)
        last = len(self.model.sizes) - 1
        h, start = x, 0
        layers = zip(self.model.layers(self.center), self.factors, strict=True)
        for k, ((w, b), (a, bf)) in enumerate(layers, start=1):
            w, b, width = w[0], b[0], w.shape[-1]
            noise_b = self.biases[:, start : start + width].unsqueeze(1)  # [P/2,1,out]
            start += width
            a_j = a.view(len(a), half, r).transpose(0, 1)  # [P/2, in, r]
            b_aug = torch.cat([bf.view(half, r, width), noise_b], dim=1)
            if h.dim() == 2:  # the shared input: one product for everyone
                base = torch.addmm(b, h, w).expand(2, half, batch, width)
                ha = torch.matmul(h, a_j).expand(2, half, batch, r)
            else:
                base = torch.addmm(b, h.reshape(-1, h.shape[-1]), w)
                base = base.view(2, half, batch, width)
                ha = torch.matmul(h.view(2, half, batch, -1), a_j)  # [2, P/2, B, r]
            ones = torch.ones(half, batch, 1, device=x.device)
            out = torch.empty(2, half, batch, width, device=x.device)
            for side, sign in enumerate((1.0, -1.0)):
                ha_aug = torch.cat([ha[side] * (1 / math.sqrt(r)), ones], dim=2)
                torch.baddbmm(
                    base[side], ha_aug, b_aug, alpha=sign * self.sigma, out=out[side]
                )
            h = out.view(2 * half, batch, width)
            if k not in (self.model.code, last):
                h = torch.tanh_(h)
        return h

    def dense(self) -> Tensor:
        """The members as flat genomes [P, D] (for tests; large)."""
        half, r = len(self.biases), self.rank
        parts, start = [], 0
        for a, bf in self.factors:
            width = bf.shape[1]
            a_j = a.view(len(a), half, r).transpose(0, 1)
            w = torch.bmm(a_j, bf.view(half, r, width)) / math.sqrt(r)
            parts += [w.flatten(1), self.biases[:, start : start + width]]
            start += width
        eps = torch.cat(parts, dim=1)
        return torch.cat(
            [self.center + self.sigma * eps, self.center - self.sigma * eps]
        )


class LowRankAutoencoderES(OpenES):
    """OpenAI-ES with rank-r noise on every weight matrix of the autoencoder.

    genreg's `lowrank_es` is built for the one-hidden-layer classifier; this is the
    same idea (and the same config, centred ranks, Adam) for the deep autoencoder.
    """

    config: LowRankESConfig
    config_class: ClassVar[type] = LowRankESConfig

    def __init__(
        self, config: LowRankESConfig, model: BatchedAutoencoder, batch_size: int
    ) -> None:
        super().__init__(config, model.num_params, batch_size)
        self.autoencoder = model

    def ask_seeded(
        self, state: OpenESState, seed: int
    ) -> tuple[LowRankAutoencoderPopulation, OpenESState]:
        cfg, sizes = self.config, self.autoencoder.sizes
        half, r = cfg.population_size // 2, cfg.noise_rank
        device = state.center.device
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        factors = [
            (
                torch.randn(n_in, half * r, generator=gen, device=device),
                torch.randn(half * r, n_out, generator=gen, device=device),
            )
            for n_in, n_out in zip(sizes, sizes[1:])
        ]
        biases = torch.randn(half, sum(sizes[1:]), generator=gen, device=device)
        population = LowRankAutoencoderPopulation(
            self.autoencoder, state.center, self.stdev(state), r, factors, biases
        )
        return population, replace(state, noise_seed=seed)

    def gradient(
        self, genomes: LowRankAutoencoderPopulation, weights: Tensor, sigma: float
    ) -> Tensor:
        pop, r = len(genomes), genomes.rank
        per_rank = weights.repeat_interleave(r)
        g_bias = weights[None] @ genomes.biases
        parts, start = [], 0
        for a, bf in genomes.factors:
            width = bf.shape[1]
            parts.append(((a * per_rank) @ bf).flatten() / math.sqrt(r))
            parts.append(g_bias[0, start : start + width])
            start += width
        return torch.cat(parts) / (sigma * pop)


def make_autoencoder_strategy(
    cfg: StrategyConfig, model: BatchedAutoencoder, batch_size: int
) -> Strategy:
    """genreg's strategy named by `cfg`, or the autoencoder's low-rank ES."""
    if isinstance(cfg, LowRankESConfig):
        return LowRankAutoencoderES(cfg, model, batch_size)
    return make_strategy(cfg, model.num_params, batch_size, None)


@dataclass
class Record:
    """(generation, seconds, validation MSE, test MSE) points of one method's run.

    The test MSE is that of the run's best genome by validation so far.
    """

    points: list[tuple[int, float, float, float]] = field(default_factory=list)


@dataclass
class Recorder:
    """Callback: fills a Record as the runner validates; scores new bests on test."""

    state: RunState
    test_mse: Callable[[Tensor], float]
    record: Record = field(default_factory=Record)
    seconds: float = 0.0
    scored: tuple[Tensor | None, float] = (None, math.nan)

    def on_generation(self, generation: int, metrics: Mapping[str, float]) -> None:
        self.seconds += metrics["seconds_per_generation"]
        if "val_mse" in metrics:
            best = self.state.best_genome
            if best is not self.scored[0]:
                self.scored = (best, self.test_mse(best))
            self.record.points.append(
                (generation + 1, self.seconds, metrics["val_mse"], self.scored[1])
            )


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
    test_x: Tensor,
    max_seconds: float = 0.0,
) -> tuple[RunState, Record]:
    """One strategy's run; the state holds the best genome by validation MSE.

    `test_x` are mean-subtracted test images, scored for the curve only.
    """
    cfg = build_config({"seed": seed, "strategy": dict(knobs)})
    model = task.model
    strategy = make_autoencoder_strategy(cfg.strategy, model, task.batch_size)
    rngs = make_rngs(seed)
    genomes = model.init(cfg.strategy.population_size, rngs["init"])
    state = RunState(strategy.init(genomes, rngs["strategy"]), rngs)
    recorder = Recorder(state, lambda genome: task.val_mse(genome, test_x))
    run(
        strategy,
        task,
        neg_mse,
        state,
        num_generations=generations,
        eval_every=eval_every,
        callbacks=[recorder],
        max_seconds=max_seconds,
    )
    return state, recorder.record


def backprop(
    task: ReconstructionTask, seed: int, test_x: Tensor, max_epochs: int
) -> tuple[Tensor, Record]:
    """Adam to its plateau (benchmarks/reference.py); its curve as a Record.

    Its generations are Adam steps (one minibatch of the batch size each).
    """
    import reference  # imports this module, so not at the top

    genome = task.model.init(1, make_rngs(seed)["init"])[0]
    settings = reference.AdamSettings(
        batch_size=task.batch_size, max_epochs=max_epochs, seed=seed
    )
    curve = reference.autoencoder_reference(task, genome, settings).curve
    tests = [task.val_mse(g, test_x) for _, g in curve.improvements]
    record, best, k = Record(), math.inf, -1
    for seconds, steps, val in curve.points:
        if val < best:  # each new best is the next of curve.improvements
            best, k = val, k + 1
        record.points.append((steps, seconds, val, tests[k]))
    return curve.improvements[-1][1], record


def plot_curves(
    out: Path,
    records: Mapping[str, Record],
    floor: float,
    reference_mse: float | None,
) -> None:
    """Test MSE of the best-by-validation genome: one figure per x-axis."""
    for axis, name, xlabel in (
        (0, "autoencoder_per_generation.png", "generation (backprop: Adam step)"),
        (1, "autoencoder_per_second.png", "search seconds (backprop: training)"),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
        for label, record in records.items():
            xs = [p[axis] for p in record.points]
            ax.plot(xs, [p[3] for p in record.points], label=label)
        ax.axhline(floor, color="grey", linestyle=":", label="mean image")
        if reference_mse is not None:
            ax.axhline(
                2 * reference_mse, color="black", linestyle="--", label="2x backprop"
            )
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test MSE (mean-subtracted)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("784-128-64-12-3 autoencoder on MNIST")
        fig.tight_layout()
        fig.savefig(out / name)
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


def write_csv(path: Path, records: Mapping[str, Record]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "generation", "seconds", "val_mse", "test_mse"])
        for name, record in records.items():
            for gen, secs, val, test in record.points:
                writer.writerow([name, gen, f"{secs:.2f}", f"{val:.6f}", f"{test:.6f}"])


def table(
    records: Mapping[str, Record], reference_mse: float | None, floor: float
) -> list[str]:
    """Markdown rows: the best-by-validation genome of every method."""
    lines = [
        "| method | generations | search s | best val MSE | test MSE "
        "| test MSE / backprop's | mean-image MSE removed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, record in records.items():
        gens, secs, _, test = record.points[-1]
        val = min(p[2] for p in record.points)
        ratio = "" if reference_mse is None else f"{test / reference_mse:.2f}"
        lines.append(
            f"| {name} | {gens} | {secs:.0f} | {val:.5f} | {test:.5f} | {ratio} "
            f"| {1 - test / floor:.0%} |"
        )
    lines.append(f"| mean image | | | | {floor:.5f} | | 0% |")
    return lines


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """'big=lowrank_es,population_size=1000' -> ('big', lowrank_es knobs, changed)."""
    name, _, spec = text.partition("=")
    base, *pairs = spec.split(",")
    if not name or base not in STRATEGIES or any("=" not in p for p in pairs):
        raise SystemExit(
            f"--variant {text!r}: expected NAME=STRATEGY[,KNOB=VALUE...] with "
            f"STRATEGY one of {sorted(STRATEGIES)}"
        )
    knobs = dict(STRATEGIES[base])
    for pair in pairs:
        knob, _, value = pair.partition("=")
        knobs[knob] = _number(value)
    return name, knobs


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


@dataclass(frozen=True)
class Job:
    """One method's run: evolution with `knobs`, or backprop when knobs is None."""

    name: str
    knobs: Mapping[str, Any] | None
    data: Path
    batch: int
    val_images: int
    generations: int
    eval_every: int
    seconds: float
    seed: int
    threads: int
    reference_epochs: int


def run_job(job: Job) -> tuple[str, Record, Tensor]:
    """Load the task, run the job: (name, record, best genome by validation)."""
    torch.set_num_threads(job.threads)
    task, test_x, _ = load_task(job.data, job.batch, job.val_images)
    test_centred = test_x - task.mean_image
    if job.knobs is None:
        genome, record = backprop(task, job.seed, test_centred, job.reference_epochs)
        return job.name, record, genome
    state, record = evolve(
        task,
        job.knobs,
        job.generations,
        job.eval_every,
        job.seed,
        test_centred,
        job.seconds,
    )
    assert state.best_genome is not None
    return job.name, record, state.best_genome


def run_jobs(jobs: Sequence[Job], processes: int) -> list[tuple[str, Record, Tensor]]:
    """The jobs one after another, or in `processes` worker processes at once."""
    if processes <= 1:
        return [run_job(job) for job in jobs]
    # fork before this process has run any torch op: workers start clean
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        return list(pool.map(run_job, jobs))


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: --data, --generations/--seconds, --strategy, --variant, --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--generations", type=int, default=100_000)
    parser.add_argument(
        "--seconds", type=float, default=0.0, help="search seconds per strategy"
    )
    parser.add_argument("--batch", type=int, default=100, help="images per generation")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads a run")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once, one process each"
    )
    parser.add_argument(
        "--strategy", action="append", choices=sorted(STRATEGIES), default=[]
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=STRATEGY[,KNOB=VALUE...]: a strategy with other knobs",
    )
    parser.add_argument(
        "--reference-epochs", type=int, default=30, help="0: no backprop reference"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/autoencoder"))
    args = parser.parse_args(argv)
    if args.seconds <= 0 and args.generations >= 100_000:
        parser.error("give --generations or --seconds")
    methods: dict[str, Mapping[str, Any] | None] = {}
    if args.reference_epochs:
        methods[REFERENCE] = None
    names = args.strategy or ([] if args.variant else list(STRATEGIES))
    methods.update({name: STRATEGIES[name] for name in names})
    methods.update(parse_variant(text) for text in args.variant)
    common = (args.data, args.batch, args.val_images, args.generations)
    common += (args.eval_every, args.seconds, args.seed, args.threads)
    jobs = [
        Job(name, knobs, *common, args.reference_epochs)
        for name, knobs in methods.items()
    ]
    results = run_jobs(jobs, args.jobs)
    records = {name: record for name, record, _ in results}
    best = {name: genome for name, _, genome in results}
    torch.set_num_threads(args.threads)
    task, test_x, test_y = load_task(args.data, args.batch, args.val_images)
    floor = (test_x - task.mean_image).square().mean().item()
    reference_mse = records[REFERENCE].points[-1][3] if args.reference_epochs else None
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "autoencoder_curves.csv", records)
    plot_curves(args.out, records, floor, reference_mse)
    plot_grid(
        args.out / "autoencoder_reconstructions.png",
        task,
        best,
        test_x[[int(torch.nonzero(test_y == d)[0]) for d in range(GRID_DIGITS)]],
    )
    print(
        f"{args.threads} torch thread(s) a run, {args.jobs} run(s) at once, "
        f"seed {args.seed}"
    )
    print("\n".join(table(records, reference_mse, floor)))


if __name__ == "__main__":
    main()
