"""Contracts of every registered strategy, then the ES-specific pieces.

Each strategy in the registry improves a toy fitness, reproduces, checkpoints exactly
and is built from its own config class.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

from genreg.config import (
    PRESETS,
    STRATEGY_CONFIGS,
    Config,
    ConfigError,
    LowRankESConfig,
    StrategyConfig,
    UnitESConfig,
    build_config,
    with_overrides,
)
from genreg.datasets import load_prepared
from genreg.init import initial_genomes
from genreg.model import BatchedMLP
from genreg.noise import mirrored_population, noise_table
from genreg.optim import adam_step, clipup_step
from genreg.runner import make_rngs
from genreg.shaping import centered_ranks
from genreg.stages.train import train
from genreg.strategies import STRATEGIES, lowrank_es, make_strategy
from genreg.strategies.base import Population, state_arrays, state_from_arrays
from genreg.strategies.distribution import annealed
from genreg.strategies.lowrank_es import LowRankPopulation
from genreg.strategies.open_es import OpenES, replay
from genreg.strategies.unit_es import UnitPopulation
from genreg.task import accuracy, make_fitness_fn, member_accuracy, to_inputs

DIM, POP = 40, 20
TOY_MODEL = BatchedMLP(11, 3, 1)  # 40 weights: lowrank_es needs the layer shapes
TARGET = torch.linspace(-1.0, 1.0, DIM)


def members(population: Population) -> torch.Tensor:
    """Dense genomes [P, D] of a population, structured or not."""
    if isinstance(population, torch.Tensor):
        return population
    return population.dense()


def toy_config(name: str) -> StrategyConfig:
    """Small knobs that suit a 40-d quadratic for every strategy (those it has)."""
    knobs = {
        "population_size": POP,
        "stdev_init": 0.1,
        "center_learning_rate": 0.05,
        "stdev_learning_rate": 0.05,
        "mutation_prob": 1.0,
        "mutation_scale": 0.05,
        "elitism": 2,
        "center_init_scale": 1.0,
    }
    cls = STRATEGY_CONFIGS[name]
    return cls(**{k: v for k, v in knobs.items() if k in cls.knobs()})


def quadratic(genomes: torch.Tensor) -> torch.Tensor:
    """Higher is better, best at TARGET: -||g - TARGET||^2 per genome [P]."""
    return -((members(genomes) - TARGET) ** 2).sum(-1)


def start(name: str, seed: int = 0):
    strategy = make_strategy(toy_config(name), DIM, 1, TOY_MODEL)
    rng = torch.Generator().manual_seed(seed)
    initial = torch.rand(POP, DIM, generator=rng) - 0.5
    return strategy, strategy.init(initial, rng), rng


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_improves_a_quadratic(name: str) -> None:
    strategy, state, rng = start(name)
    before = quadratic(strategy.best(state)[None]).item()
    for _ in range(150):
        genomes, state = strategy.ask(state, rng)
        state, metrics = strategy.tell(state, genomes, quadratic(genomes))
    after = quadratic(strategy.best(state)[None]).item()
    assert {"fitness_max", "fitness_mean"} <= set(metrics)
    assert after > 0.3 * before  # fitness is negative: at least 70% closer


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_same_seed_same_genomes(name: str) -> None:
    runs = []
    for _ in range(2):
        strategy, state, rng = start(name, seed=7)
        for _ in range(3):
            genomes, state = strategy.ask(state, rng)
            state, _ = strategy.tell(state, genomes, quadratic(genomes))
        runs.append(members(strategy.ask(state, rng)[0]))
    assert torch.equal(runs[0], runs[1])
    other = start(name, seed=8)
    other_genomes = members(other[0].ask(other[1], other[2])[0])
    assert not torch.equal(runs[0][-1], other_genomes[-1])


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_state_round_trips_through_arrays(name: str) -> None:
    strategy, state, rng = start(name)
    for _ in range(2):
        genomes, state = strategy.ask(state, rng)
        state, _ = strategy.tell(state, genomes, quadratic(genomes))
    arrays = state_arrays(state)
    assert all(isinstance(a, torch.Tensor) for a in arrays.values())
    restored = state_from_arrays(strategy.state_class, arrays, torch.device("cpu"))
    for field in dataclasses.fields(state):
        a, b = getattr(state, field.name), getattr(restored, field.name)
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    rng_copy = torch.Generator().manual_seed(0)
    rng_copy.set_state(rng.get_state())
    assert torch.equal(
        members(strategy.ask(state, rng)[0]),
        members(strategy.ask(restored, rng_copy)[0]),
    )


@pytest.mark.parametrize("name", ["open_es", "lowrank_es", "unit_es", "pgpe"])
def test_mirrored_pairs_straddle_the_center(name: str) -> None:
    strategy, state, rng = start(name)
    genomes = members(strategy.ask(state, rng)[0])
    half = POP // 2
    torch.testing.assert_close(
        (genomes[:half] + genomes[half:]) / 2, state.center.expand(half, -1)
    )


def test_noise_table_population_is_seeded_and_mirrored() -> None:
    center = torch.linspace(-1, 1, DIM)
    first = mirrored_population(center, 0.5, seed=3, pop=6, table_size=1000)
    again = mirrored_population(center, 0.5, seed=3, pop=6, table_size=1000)
    other = mirrored_population(center, 0.5, seed=4, pop=6, table_size=1000)
    assert torch.equal(first, again) and not torch.equal(first, other)
    torch.testing.assert_close((first[:3] + first[3:]) / 2, center.expand(3, -1))
    offsets = noise_table(1000)[None, :] - ((first[:1] - center) / 0.5).T  # [DIM, 1000]
    assert (offsets.abs() < 1e-5).any(-1).all()  # every eps value comes from the table
    with pytest.raises(ValueError, match="noise_table_size"):
        mirrored_population(center, 0.5, seed=3, pop=6, table_size=DIM - 1)


@pytest.mark.parametrize("name", ["open_es", "lowrank_es", "unit_es"])
def test_es_replays_from_seeds_and_fitness(name: str) -> None:
    strategy, state, rng = start(name)
    initial, seeds, fitness = state, [], []
    for _ in range(5):
        genomes, state = strategy.ask(state, rng)
        fit = quadratic(genomes)
        state, _ = strategy.tell(state, genomes, fit)
        seeds.append(state.noise_seed)
        fitness.append(fit)
    replayed = replay(strategy, initial, seeds, fitness)
    assert torch.equal(replayed.center, state.center)


@pytest.mark.parametrize(
    ("rank", "w2_noise", "chunk"), [(1, "dense", 0), (3, "lowrank", 0), (1, "dense", 2)]
)
def test_lowrank_population_matches_its_dense_genomes(
    rank: int, w2_noise: str, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chunk > 0: the CPU goes through the 3 mirrored pairs 2 at a time (2, then 1)."""
    if chunk:
        monkeypatch.setattr(lowrank_es, "CACHE_ELEMENTS", chunk * 16 * 9)
    model = BatchedMLP(784, 16, 10)
    cfg = LowRankESConfig(
        population_size=6, noise_rank=rank, stdev_init=0.05, w2_noise=w2_noise
    )
    strategy = make_strategy(cfg, model.num_params, 1, model)
    rng = torch.Generator().manual_seed(0)
    state = strategy.init(model.init(2, rng), rng)
    population, _ = strategy.ask(state, rng)
    assert isinstance(population, LowRankPopulation) and len(population) == 6
    dense = population.dense()
    x = torch.rand(9, 784, generator=rng)
    torch.testing.assert_close(population.forward(x), model.forward(dense, x))
    weights = torch.randn(3, generator=rng)
    torch.testing.assert_close(
        strategy.gradient(population, weights, 0.05),
        OpenES.gradient(strategy, dense, weights, 0.05),
        rtol=1e-4,
        atol=1e-5,
    )


def test_member_accuracy_is_argmax_accuracy_on_any_layout() -> None:
    """The accuracy fitness and batch metric; unit_es gives class-strided logits."""
    rng = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (50,), generator=rng)
    contiguous = torch.randn(6, 50, 10, generator=rng)
    strided = contiguous.transpose(1, 2).contiguous().transpose(1, 2)
    expected = (contiguous.argmax(-1) == y).float().mean(-1)
    fitness = make_fitness_fn(STRATEGY_CONFIGS["open_es"](fitness="accuracy"))
    for logits in (contiguous, strided):
        assert torch.equal(member_accuracy(logits, y), expected)
        assert torch.equal(fitness(logits, y, rng), expected)


def test_unit_population_matches_its_dense_genomes() -> None:
    """20 pairs on 16 units: each pair perturbs one unit's weights, bias and readout."""
    model = BatchedMLP(784, 16, 10)
    cfg = UnitESConfig(population_size=40, stdev_init=0.05)
    strategy = make_strategy(cfg, model.num_params, 1, model)
    rng = torch.Generator().manual_seed(0)
    state = strategy.init(model.init(2, rng), rng)
    population, _ = strategy.ask(state, rng)
    assert isinstance(population, UnitPopulation) and len(population) == 40
    assert sorted(population.units[:16].tolist()) == list(range(16))  # dealt in turn
    assert population.a.stride()[0] >= 784  # disjoint windows of the noise table
    dense = population.dense()
    eps = (dense[:20] - state.center) / 0.05
    w1 = eps[:, : 784 * 16].view(20, 784, 16)
    assert ((w1 != 0).any(1).sum(1) == 1).all()  # one unit's input weights per pair
    x = torch.rand(9, 784, generator=rng)
    torch.testing.assert_close(population.forward(x), model.forward(dense, x))
    weights = torch.randn(20, generator=rng)
    expected = OpenES.gradient(strategy, dense, weights, 0.05)
    expected[:-10] *= 16  # a unit's block is perturbed by 1/16 of the pairs
    torch.testing.assert_close(
        strategy.gradient(population, weights, 0.05), expected, rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize(("w2_noise", "expected_rank"), [("dense", 10), ("lowrank", 2)])
def test_w2_noise_rank_follows_w2_noise(w2_noise: str, expected_rank: int) -> None:
    model = BatchedMLP(784, 16, 10)
    cfg = LowRankESConfig(population_size=4, noise_rank=2, w2_noise=w2_noise)
    strategy = make_strategy(cfg, model.num_params, 1, model)
    rng = torch.Generator().manual_seed(0)
    state = strategy.init(model.init(2, rng), rng)
    population, _ = strategy.ask(state, rng)
    _, w2_noise_of_each, _ = model.rest_layers(population.rest)
    ranks = torch.linalg.matrix_rank(w2_noise_of_each)
    assert ranks.tolist() == [expected_rank, expected_rank]


def test_lowrank_population_and_rank_follow_their_schedules() -> None:
    model = BatchedMLP(784, 16, 10)
    cfg = LowRankESConfig(
        population_size=4,
        population_final=12,
        noise_rank=1,
        noise_rank_final=5,
        schedule_generations=8,
    )
    strategy = make_strategy(cfg, model.num_params, 1, model)
    rng = torch.Generator().manual_seed(0)
    state = strategy.init(model.init(2, rng), rng)
    seen = []
    for generation in (0, 4, 8, 20):
        population, _ = strategy.ask(
            dataclasses.replace(state, generation=generation), rng
        )
        seen.append((len(population), population.rank))
    assert seen == [(4, 1), (8, 3), (12, 5), (12, 5)]
    population, asked = strategy.ask(dataclasses.replace(state, generation=4), rng)
    told, _ = strategy.tell(asked, population, torch.randn(8, generator=rng))
    assert told.generation == 5


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("constant", [1.0, 1.0, 1.0, 1.0]),
        ("linear", [1.0, 0.55, 0.1, 0.1]),
        ("cosine", [1.0, 0.55, 0.1, 0.1]),
    ],
)
def test_annealed_falls_to_its_floor(kind: str, expected: list[float]) -> None:
    got = [annealed(kind, 0.1, t, 10) for t in (0, 5, 10, 30)]
    assert got == pytest.approx(expected)
    if kind == "cosine":  # slower than linear early, faster late
        assert annealed(kind, 0.1, 2, 10) > annealed("linear", 0.1, 2, 10)
        assert annealed(kind, 0.1, 8, 10) < annealed("linear", 0.1, 8, 10)


def test_es_learning_rate_and_stdev_follow_their_schedules() -> None:
    cfg = LowRankESConfig(
        population_size=4,
        center_learning_rate=0.02,
        learning_rate_schedule="linear",
        learning_rate_floor=0.25,
        stdev_init=0.04,
        stdev_schedule="linear",
        stdev_floor=0.5,
        schedule_generations=4,
    )
    model = BatchedMLP(784, 16, 10)
    strategy = make_strategy(cfg, model.num_params, 1, model)
    rng = torch.Generator().manual_seed(0)
    state = strategy.init(model.init(2, rng), rng)
    late = dataclasses.replace(state, generation=2)
    assert strategy.learning_rate(late) == pytest.approx(0.02 * 0.625)
    population, asked = strategy.ask(late, rng)
    assert population.sigma == pytest.approx(0.04 * 0.75)
    _, metrics = strategy.tell(asked, population, torch.randn(4, generator=rng))
    assert metrics["stdev_mean"] == pytest.approx(0.04 * 0.75)
    exponential = make_strategy(
        LowRankESConfig(center_learning_rate=0.02, learning_rate_decay=0.5),
        model.num_params,
        1,
        model,
    )
    assert exponential.learning_rate(late) == pytest.approx(0.02 * 0.25)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_config_holds_only_its_strategys_knobs(name: str) -> None:
    cfg = build_config({"strategy": {"name": name}})
    assert isinstance(cfg.strategy, STRATEGY_CONFIGS[name])
    assert build_config(cfg.to_dict()) == cfg
    knobs = STRATEGY_CONFIGS[name].knobs()
    assert [k for k in cfg.flat() if k.startswith("strategy.")] == [
        f"strategy.{k}" for k in knobs
    ]
    foreign = next(
        k for c in STRATEGY_CONFIGS.values() for k in c.knobs() if k not in knobs
    )
    message = rf"strategy\.{foreign}: not a knob of {name}"
    with pytest.raises(ConfigError, match=message):
        build_config({"strategy": {"name": name, foreign: 1}})


def test_every_strategy_is_built_from_its_own_config() -> None:
    assert set(STRATEGIES) == set(STRATEGY_CONFIGS)
    for name, cls in STRATEGIES.items():
        assert cls.config_class is STRATEGY_CONFIGS[name]
    with pytest.raises(TypeError, match="OpenES needs OpenESConfig, got TrustGAConfig"):
        OpenES(STRATEGY_CONFIGS["trust_ga"](), DIM)


def test_lowrank_es_needs_the_model() -> None:
    with pytest.raises(ValueError, match="BatchedMLP"):
        make_strategy(toy_config("lowrank_es"), DIM, 1)


def test_pgpe_stdev_change_is_bounded() -> None:
    strategy, state, rng = start("pgpe")
    genomes, state = strategy.ask(state, rng)
    new, _ = strategy.tell(state, genomes, quadratic(genomes))
    ratio = new.stdev / state.stdev
    limit = strategy.config.stdev_max_change
    assert ((ratio >= 1 - limit - 1e-6) & (ratio <= 1 + limit + 1e-6)).all()
    assert not torch.equal(new.stdev, state.stdev)


def test_centered_ranks_of_a_fixed_vector() -> None:
    ranks = centered_ranks(torch.tensor([3.0, -1.0, 2.0, 10.0]))
    torch.testing.assert_close(ranks, torch.tensor([1 / 6, -1 / 2, -1 / 6, 1 / 2]))


def test_adam_matches_torch_adam_on_a_known_gradient() -> None:
    grad = torch.tensor([0.5, -2.0, 0.0, 1e-3])
    step, m, v = adam_step(grad, torch.zeros(4), torch.zeros(4), 1, lr=0.1)
    # first Adam step is lr * sign(grad) (bias correction cancels), 0 where grad is 0
    torch.testing.assert_close(
        step, torch.tensor([0.1, -0.1, 0.0, 0.1 * 1e-3 / (1e-3 + 1e-8)])
    )
    param = torch.zeros(4, requires_grad=True)
    reference = torch.optim.Adam([param], lr=0.1)
    ours, m, v = torch.zeros(4), torch.zeros(4), torch.zeros(4)
    for t, g in enumerate([grad, 2 * grad, -grad], start=1):
        param.grad = -g  # torch minimises; our step is ascent
        reference.step()
        delta, m, v = adam_step(g, m, v, t, lr=0.1)
        ours = ours + delta
    torch.testing.assert_close(ours, param.detach())


def test_clipup_normalises_then_clips() -> None:
    step, velocity = clipup_step(torch.tensor([3.0, 4.0]), torch.zeros(2), 0.1, 0.2)
    torch.testing.assert_close(step, torch.tensor([0.06, 0.08]))
    step, _ = clipup_step(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 0.0]), 0.1, 0.2)
    assert step.norm().item() == pytest.approx(0.2)


def test_fast_preset_is_registered_and_paper_preset_unchanged() -> None:
    cfg = build_config({"preset": "fast"})
    assert cfg.strategy.name in STRATEGIES
    assert PRESETS["genreg-paper"] == {"strategy": {"name": "trust_ga"}}


def test_peers_table_at_tiny_size(prepared_mnist: Path, load_benchmark) -> None:
    peers = load_benchmark("peers")
    tiny = ["model.hidden=8", "strategy.population_size=8", "train.images_per_class=2"]
    tiny += ["train.eval_every=1", "train.val_images=300"]
    rows = peers.compare(prepared_mnist, [1.0, 2.0], tiny, ["adam"], peer_popsize=8)
    assert rows[0]["peer"] == "genreg fast"
    assert len(rows) == (2 if importlib.util.find_spec("evotorch") else 1)
    unit = build_config({"preset": "fast", "strategy": {"name": "unit_es"}})
    assert peers.peer_label(unit) == "genreg unit_es"
    for row in rows:
        assert row["generations"] >= 2
        # the test score is of the genome the validation picked: close to its score
        assert row["test@2s"] == pytest.approx(row["val@2s"], abs=0.15)
        assert row["val@2s"] >= row["val@1s"] > 0.0
    assert "t90_s" in peers.format_table(rows)


def test_seed_checkpoint_bytes(load_benchmark) -> None:
    sizes = load_benchmark("strategies").checkpoint_bytes(50890, 100, 200)
    assert sizes == {
        "full_weights": 203560,
        "open_es_replay": 8 + 100 * (8 + 800),
        "ga_lineage": 808,
    }


def small_train(small_mnist: Path) -> tuple[torch.Tensor, torch.Tensor]:
    train = load_prepared(small_mnist)["train"]
    return to_inputs(train.images), torch.as_tensor(train.labels)


DATA_INIT = {
    "strategy": {"name": "lowrank_es", "population_size": 4, "center_init_scale": 1.0},
    "model": {"hidden": 16, "init_images": 0},
}


def data_init_config(**model: object) -> Config:
    return build_config({**DATA_INIT, "model": {**DATA_INIT["model"], **model}})


def test_pca_init_whitens_the_training_images(small_mnist: Path) -> None:
    x, y = small_train(small_mnist)
    cfg = data_init_config(init="pca", pca_std=0.5)
    model = BatchedMLP(784, 16, 10)
    genomes = initial_genomes(model, cfg.model, 3, make_rngs(0)["init"], x, y)
    random = model.init(3, make_rngs(0)["init"], 0.5, 0.1)
    assert genomes.shape == (3, model.num_params)
    w1, b1, w2, b2 = model.layers(genomes)
    pre = x @ w1[0] + b1[0]  # [N, 16]: centred, each of std pca_std
    assert pre.mean(0).abs().max().item() < 1e-4
    assert torch.allclose(pre.std(0), torch.full((16,), 0.5), atol=1e-4)
    directions = w1[0] / w1[0].norm(dim=0)  # orthonormal principal directions
    assert torch.allclose(directions.T @ directions, torch.eye(16), atol=1e-4)
    # the readout and every other genome stay random
    assert torch.equal(w2[0], model.layers(random)[2][0])
    assert torch.equal(genomes[1:], random[1:])


def test_data_init_is_seeded(small_mnist: Path) -> None:
    x, y = small_train(small_mnist)
    cfg = data_init_config(init="pca", readout="ridge", init_images=200)
    model = BatchedMLP(784, 16, 10)

    def first(seed: int) -> torch.Tensor:
        return initial_genomes(model, cfg.model, 1, make_rngs(seed)["init"], x, y)[0]

    assert torch.equal(first(0), first(0))
    assert not torch.equal(first(0), first(1))  # another seed, other 200 images


@pytest.mark.parametrize("init", ["uniform", "pca"])
def test_ridge_readout_beats_a_random_one_at_generation_0(
    small_mnist: Path, init: str
) -> None:
    x, y = small_train(small_mnist)
    val = load_prepared(small_mnist)["val"]
    val_x, val_y = to_inputs(val.images), torch.as_tensor(val.labels)
    model = BatchedMLP(784, 16, 10)

    def val_accuracy(readout: str) -> float:
        cfg = data_init_config(init=init, readout=readout, init_weight=0.05)
        genome = initial_genomes(model, cfg.model, 1, make_rngs(0)["init"], x, y)
        return accuracy(model, genome, val_x, val_y).item()

    random, ridge = val_accuracy("uniform"), val_accuracy("ridge")
    assert random < 0.3  # chance is 0.1
    assert ridge > 0.6 and ridge > random + 0.3


def test_data_init_run_resumes_exactly(small_mnist: Path, tmp_path: Path) -> None:
    cfg = with_overrides(
        data_init_config(init="pca", readout="ridge"),
        {
            "train.num_generations": 6,
            "train.images_per_class": 4,
            "train.eval_every": 2,
            "train.checkpoint_every": 3,
        },
    )
    full = train(cfg, small_mnist, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, small_mnist, tmp_path / "split", callbacks=[InterruptAfter(4)])
    resumed = train(cfg, small_mnist, tmp_path / "split", resume=True)
    assert resumed.best_val_accuracy == full.best_val_accuracy > 0.5
    for name in ("last.npz", "best.npz"):
        a = (tmp_path / "full" / "checkpoints" / name).read_bytes()
        assert a == (tmp_path / "split" / "checkpoints" / name).read_bytes(), name


class InterruptAfter:
    def __init__(self, generation: int) -> None:
        self.generation = generation

    def on_generation(self, generation: int, metrics: object) -> None:
        if generation == self.generation:
            raise KeyboardInterrupt
