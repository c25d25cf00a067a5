"""Throughput of the batched population engine against a per-genome loop.

Prints genome-evaluations per second of both on the same population and images,
their ratio, and the seconds per full generation (sample batch, forward, fitness, trust
update, reproduction with mutation) of the genreg-paper preset: population 200, 200
images, 64 hidden; then one ES generation with dense noise (open_es) against low-rank
noise (lowrank_es) at the `fast` preset's knobs; then the trust GA's seconds per
generation at populations 200 / 1,000 / 5,000: the engine as it was before the parent
pool (every genome kept, crossover masks from one float per weight), then on today's
engine `genreg-paper`, `genreg-code` and `genreg-plus` (unit crossover, low-rank
mutation: children never materialised); then lowrank_es (the `fast` preset) at
populations 1,000 / 10,000, with its population forward as first written (tanh,
hidden [B, H]) beside today's and their ratio. Everything runs on --device (cpu by
default); on CUDA each timed call is followed by torch.cuda.synchronize, after one
untimed warm-up call.
Run: python benchmarks/throughput.py [--population 200 --hidden 64 --repeats 5]
     [--ga-population 200 --ga-population 1000 --ga-population 5000]
     [--lowrank-population 1000 --lowrank-population 10000] [--device cuda]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from genreg.config import build_config, with_overrides
from genreg.model import BatchedMLP
from genreg.runner import RunState, make_rngs, step
from genreg.stages.train import resolve_device
from genreg.strategies import make_strategy
from genreg.strategies.lowrank_es import LowRankPopulation
from genreg.strategies.trust_ga import mutate_, select_parents, update_trust
from genreg.task import ClassificationTask, make_fitness_fn

CPU = torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer sees all of it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(
    fn: Callable[[], object], repeats: int, device: torch.device = CPU
) -> float:
    """Median wall seconds of `fn` over `repeats` calls, after one warm-up call."""
    fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        synchronize(device)
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


def random_task(
    hidden: int, images_per_class: int, device: torch.device = CPU
) -> ClassificationTask:
    """Random images of MNIST's shape: 6,000 to train on, 10 to validate."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat(600).to(device)
    return ClassificationTask(
        BatchedMLP(784, hidden, 10),
        torch.rand(6000, 784, generator=gen).to(device),
        labels,
        torch.rand(10, 784, generator=gen).to(device),
        labels[:10],
        images_per_class,
    )


def generation_seconds(
    population: int,
    hidden: int,
    images_per_class: int | None,
    repeats: int,
    preset: str = "genreg-paper",
    strategy_name: str | None = None,
    device: torch.device = CPU,
) -> float:
    """Seconds of one full generation of `preset` on random data of MNIST shapes.

    images_per_class None: the preset's own.
    """
    overrides: dict[str, object] = {
        "strategy.population_size": population,
        "model.hidden": hidden,
    }
    if images_per_class is not None:
        overrides["train.images_per_class"] = images_per_class
    if strategy_name is not None:
        overrides["strategy.name"] = strategy_name
    cfg = with_overrides(build_config({"preset": preset}), overrides)
    task = random_task(hidden, cfg.train.images_per_class, device)
    model = task.model
    strategy = make_strategy(
        cfg.strategy, model.num_params, cfg.train.images_per_class * 10, model
    )
    rngs = make_rngs(0, device)
    state = RunState(
        strategy.init(model.init(population, rngs["init"]), rngs["init"]), rngs
    )
    fitness_fn = make_fitness_fn(cfg.strategy)
    return seconds(lambda: step(strategy, task, fitness_fn, state), repeats, device)


def whole_population_seconds(
    population: int, repeats: int, device: torch.device = CPU
) -> float:
    """One `genreg-code` generation on the engine before the parent pool.

    Every genome is kept and reproduced: parents from the top fifth by trust, uniform
    crossover with one random float per weight, sparse mutation, then the forward
    pass over the whole population and the trust update.
    """
    cfg = with_overrides(
        build_config({"preset": "genreg-code"}),
        {"strategy.population_size": population},
    )
    s = cfg.strategy
    task = random_task(cfg.model.hidden, cfg.train.images_per_class, device)
    rngs = make_rngs(0, device)
    genomes = task.model.init(population, rngs["init"])
    trust = torch.zeros(population, device=device)
    num_parents = math.ceil(s.top_fraction * population)
    fitness_fn = make_fitness_fn(s)
    keep = (1.0 - s.trust_decay) ** (cfg.train.images_per_class * 10)

    def generation() -> None:
        nonlocal genomes, trust
        rng = rngs["strategy"]
        mothers = select_parents(trust, num_parents, population, "trust", rng)
        fathers = select_parents(trust, num_parents, population, "trust", rng)
        mask = torch.rand(genomes.shape, generator=rng, device=device) < 0.5
        children = torch.where(mask, genomes[fathers], genomes[mothers])
        mutate_(children, s.mutation_prob, s.mutation_scale, rng)
        x, y = task.sample_batch(rngs["batch"])
        fitness = fitness_fn(task.model.forward(children, x), y, rngs["predict"])
        child_trust = (trust[mothers] + trust[fathers]) / 2
        genomes, trust = children, update_trust(child_trust, fitness, keep, 1e5)

    return seconds(generation, repeats, device)


def trust_ga_table(
    populations: list[int], hidden: int, repeats: int, device: torch.device = CPU
) -> None:
    """Seconds per trust-GA generation: the whole-population engine against today's."""
    print(
        f"\ntrust GA, seconds per generation (hidden {hidden}, each preset's images "
        "per generation; ratio = before / genreg-plus)"
    )
    print(
        "population | before (genreg-code) | genreg-paper | genreg-code | genreg-plus "
        "| ratio"
    )
    for population in populations:
        before = whole_population_seconds(population, repeats, device)
        paper, code, plus = (
            generation_seconds(population, hidden, None, repeats, preset, None, device)
            for preset in ("genreg-paper", "genreg-code", "genreg-plus")
        )
        print(
            f"{population:10,d} | {before:20.4f} | {paper:12.4f} | {code:11.4f} "
            f"| {plus:11.4f} | {before / plus:5.1f}x"
        )


def plain_lowrank_forward(population: LowRankPopulation, x: Tensor) -> Tensor:
    """The low-rank forward as first written (tanh, hidden [B, H]): the baseline."""
    model, s, r = population.model, population.sigma, population.rank
    i, h = model.num_inputs, model.hidden
    half = len(population.rest)
    w1 = population.center[: i * h].view(i, h)
    b1, w2, b2 = model.rest_layers(population.center[i * h :])
    nb1, nw2, nb2 = model.rest_layers(population.rest)
    base = torch.addmm(b1, x, w1)
    xa = (x @ population.a).view(len(x), half, r).transpose(0, 1)
    delta = torch.bmm(xa, population.b.view(half, r, h)).mul_(s / math.sqrt(r))
    delta.add_(nb1.unsqueeze(1), alpha=s)
    hidden = torch.cat([base + delta, delta.neg_().add_(base)]).tanh_()
    w2s = torch.cat([w2 + s * nw2, w2 - s * nw2])
    b2s = torch.cat([b2 + s * nb2, b2 - s * nb2])
    return torch.baddbmm(b2s.unsqueeze(1), hidden, w2s)


def lowrank_forward_seconds(
    population: int, hidden: int, repeats: int, device: torch.device
) -> tuple[float, float]:
    """Seconds of one `fast` population forward on 100 images: (plain, today's)."""
    model = BatchedMLP(784, hidden, 10)
    cfg = with_overrides(
        build_config({"preset": "fast"}), {"strategy.population_size": population}
    )
    strategy = make_strategy(cfg.strategy, model.num_params, 100, model)
    gen = torch.Generator(device=device).manual_seed(0)
    center = model.init(1, torch.Generator().manual_seed(0)).to(device)
    members, _ = strategy.ask(strategy.init(center, gen), gen)
    x = torch.rand(100, 784, generator=gen, device=device)
    torch.testing.assert_close(  # the same network, not a precision test
        members.forward(x), plain_lowrank_forward(members, x), rtol=1e-4, atol=1e-4
    )
    plain = seconds(lambda: plain_lowrank_forward(members, x), repeats, device)
    today = seconds(lambda: members.forward(x), repeats, device)
    return plain, today


def lowrank_table(
    populations: list[int], hidden: int, repeats: int, device: torch.device = CPU
) -> None:
    """Seconds per lowrank_es generation (the `fast` preset) by population.

    Beside it, the population's forward on 100 images as first written (tanh, hidden
    [B, H]) and today's (sigmoid units, hidden [H, B], cache-sized chunks).
    """
    print(f"\nlowrank_es (`fast` preset, hidden {hidden}), seconds per generation")
    print(
        "population | seconds | genome-evaluations/s | forward: plain | today | ratio"
    )
    for population in populations:
        per_gen = generation_seconds(
            population, hidden, None, repeats, "fast", None, device
        )
        plain, today = lowrank_forward_seconds(population, hidden, repeats, device)
        print(
            f"{population:10,d} | {per_gen:7.4f} | {population / per_gen:20,.0f} "
            f"| {plain:14.4f} | {today:.4f} | {plain / today:4.1f}x"
        )


def device_name(device: torch.device) -> str:
    """'cpu', or 'cuda (<the GPU's name>)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--population", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--es-population", type=int, default=400)
    parser.add_argument("--es-images", type=int, default=100)
    parser.add_argument(
        "--ga-population",
        type=int,
        action="append",
        help="trust-GA populations to time (repeatable; default 200, 1000, 5000)",
    )
    parser.add_argument(
        "--lowrank-population",
        type=int,
        action="append",
        help="lowrank_es populations to time (repeatable; default 1000, 10000)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    torch.set_grad_enabled(False)
    model = BatchedMLP(784, args.hidden, 10)
    gen = torch.Generator().manual_seed(0)
    genomes = model.init(args.population, gen).to(device)
    x = torch.rand(args.images, 784, generator=gen).to(device)
    # a check that both engines compute the same network, not a precision test
    torch.testing.assert_close(
        model.forward(genomes, x),
        per_genome_loop(model, genomes, x),
        rtol=1e-4,
        atol=1e-4,
    )
    batched = seconds(lambda: model.forward(genomes, x), args.repeats, device)
    loop = seconds(lambda: per_genome_loop(model, genomes, x), args.repeats, device)
    per_gen = generation_seconds(
        args.population,
        args.hidden,
        args.images // 10,
        args.repeats,
        device=device,
    )
    print(
        f"population {args.population}, {args.images} images, hidden {args.hidden}, "
        f"{torch.get_num_threads()} threads, device {device_name(device)}"
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
            device,
        )
        for name in ("open_es", "lowrank_es")
    }
    print(
        f"ES generation, `fast` knobs, population {args.es_population}, "
        f"{args.es_images} images: open_es (dense noise) {es['open_es']:.4f} s, "
        f"lowrank_es (rank 1) {es['lowrank_es']:.4f} s, "
        f"ratio {es['open_es'] / es['lowrank_es']:.1f}x"
    )
    table_repeats = max(1, min(args.repeats, 3))
    trust_ga_table(
        args.ga_population or [200, 1000, 5000], args.hidden, table_repeats, device
    )
    lowrank_table(
        args.lowrank_population or [1000, 10000], args.hidden, table_repeats, device
    )


if __name__ == "__main__":
    main()
