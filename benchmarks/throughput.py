"""Throughput of the batched population engine against a per-genome loop.

Prints genome-evaluations per second of both on the same population and images,
their ratio, and the seconds per full generation (sample batch, forward, fitness, trust
update, reproduction with mutation) of the genreg-paper preset: population 200, 200
images, 64 hidden; then one ES generation with dense noise (open_es) against low-rank
noise (lowrank_es) at the `fast` preset's knobs.
Run: python benchmarks/throughput.py [--population 200 --hidden 64 --repeats 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from genreg.config import build_config, with_overrides
from genreg.model import BatchedMLP
from genreg.runner import RunState, make_rngs, step
from genreg.strategies import make_strategy
from genreg.task import ClassificationTask, make_fitness_fn


def seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of `fn` over `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def per_genome_loop(
    model: BatchedMLP, genomes: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """The straightforward engine: one small MLP forward per genome."""
    outputs = []
    for genome in genomes:
        w1, b1, w2, b2 = (t[0] for t in model.layers(genome))
        outputs.append(torch.tanh(x @ w1 + b1) @ w2 + b2)
    return torch.stack(outputs)


def generation_seconds(
    population: int,
    hidden: int,
    images_per_class: int,
    repeats: int,
    preset: str = "genreg-paper",
    strategy_name: str | None = None,
) -> float:
    """Seconds of one full generation of `preset` on random data of MNIST shapes."""
    overrides = {
        "strategy.population_size": population,
        "model.hidden": hidden,
        "train.images_per_class": images_per_class,
    }
    if strategy_name is not None:
        overrides["strategy.name"] = strategy_name
    cfg = with_overrides(build_config({"preset": preset}), overrides)
    gen = torch.Generator().manual_seed(0)
    model = BatchedMLP(784, hidden, 10)
    labels = torch.arange(10).repeat(600)
    task = ClassificationTask(
        model,
        torch.rand(6000, 784, generator=gen),
        labels,
        torch.rand(10, 784, generator=gen),
        labels[:10],
        images_per_class,
    )
    strategy = make_strategy(
        cfg.strategy, model.num_params, images_per_class * 10, model
    )
    rngs = make_rngs(0)
    state = RunState(
        strategy.init(model.init(population, rngs["init"]), rngs["init"]), rngs
    )
    fitness_fn = make_fitness_fn(cfg.strategy)
    return seconds(lambda: step(strategy, task, fitness_fn, state), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--population", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--es-population", type=int, default=400)
    parser.add_argument("--es-images", type=int, default=100)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = BatchedMLP(784, args.hidden, 10)
    gen = torch.Generator().manual_seed(0)
    genomes = model.init(args.population, gen)
    x = torch.rand(args.images, 784, generator=gen)
    torch.testing.assert_close(
        model.forward(genomes, x), per_genome_loop(model, genomes, x)
    )
    batched = seconds(lambda: model.forward(genomes, x), args.repeats)
    loop = seconds(lambda: per_genome_loop(model, genomes, x), args.repeats)
    per_gen = generation_seconds(
        args.population, args.hidden, args.images // 10, args.repeats
    )
    print(
        f"population {args.population}, {args.images} images, hidden {args.hidden}, "
        f"{torch.get_num_threads()} threads, device cpu"
    )
    print(f"per-genome loop : {args.population / loop:12,.0f} genome-evaluations/s")
    print(f"batched engine  : {args.population / batched:12,.0f} genome-evaluations/s")
    print(f"ratio           : {loop / batched:12.2f}x")
    print(
        f"full generation : {per_gen:12.4f} s  "
        f"({600 * per_gen:.1f} s for 600 generations; "
        "published: ~4 s per generation on a GPU)"
    )
    es = {
        name: generation_seconds(
            args.es_population,
            args.hidden,
            args.es_images // 10,
            args.repeats,
            "fast",
            name,
        )
        for name in ("open_es", "lowrank_es")
    }
    print(
        f"ES generation, `fast` knobs, population {args.es_population}, "
        f"{args.es_images} images: open_es (dense noise) {es['open_es']:.4f} s, "
        f"lowrank_es (rank 1) {es['lowrank_es']:.4f} s, "
        f"ratio {es['open_es'] / es['lowrank_es']:.1f}x"
    )


if __name__ == "__main__":
    main()
