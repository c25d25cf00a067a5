"""Trust GA: exact trust update, parent choice, child trust, mutation rate.

Also the batched model.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from genreg.config import TrustGAConfig
from genreg.model import BatchedMLP
from genreg.strategies.trust_ga import (
    TrustGA,
    TrustGAState,
    UnitChildren,
    mutate_,
    random_bits,
    select_parents,
    update_trust,
)
from genreg.task import class_margin, make_fitness_fn


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_trust_update_decays_adds_and_clamps() -> None:
    trust = torch.tensor([100.0, -50.0, 0.0, 9e4])
    score = torch.tensor([10.0, 20.0, -3.0, 5e4])
    out = update_trust(trust, score, keep=0.8, clamp=1e5)
    assert out.tolist() == pytest.approx([90.0, -20.0, -3.0, 1e5])


def test_parents_come_from_the_top_fraction_in_proportion_to_trust() -> None:
    trust = torch.tensor([5.0, 1.0, 9.0, 3.0, 7.0, 0.0, 2.0, 4.0, 6.0, 8.0])
    picks = select_parents(trust, 3, 30_000, "trust", rng())
    assert set(picks.tolist()) <= {2, 9, 4}
    counts = torch.bincount(picks, minlength=10).float() / 30_000
    # weights are trust above the weakest parent (7): 9 -> 2, 8 -> 1, 7 -> 0
    assert counts[2].item() == pytest.approx(2 / 3, abs=0.02)
    assert counts[9].item() == pytest.approx(1 / 3, abs=0.02)
    uniform = select_parents(trust, 3, 30_000, "uniform", rng())
    assert torch.bincount(uniform, minlength=10)[4].item() / 30_000 == pytest.approx(
        1 / 3, abs=0.02
    )
    # rank: weights 3, 2, 1 for the three most trusted
    ranked = torch.bincount(select_parents(trust, 3, 30_000, "rank", rng()), None, 10)
    assert (ranked[[2, 9, 4]] / 30_000).tolist() == pytest.approx(
        [3 / 6, 2 / 6, 1 / 6], abs=0.02
    )


def test_child_trust_is_parent_trust_times_factor() -> None:
    cfg = TrustGAConfig(population_size=4, top_fraction=0.25, mutation_prob=0.0)
    ga = TrustGA(cfg, num_params=3)
    genomes = torch.arange(12.0).view(4, 3)
    trust = torch.tensor([1.0, 50.0, 2.0, 3.0])
    state = TrustGAState(genomes, trust, torch.full((4,), 0.1), generation=1)
    children, new = ga.ask(state, rng())
    assert torch.equal(children, genomes[[1, 1, 1, 1]])  # mutation off: exact copies
    assert new.trust.tolist() == pytest.approx([1.5] * 4)


def test_crossover_and_parent_mean_trust() -> None:
    cfg = TrustGAConfig(
        population_size=4,
        top_fraction=0.5,
        mutation_prob=0.0,
        crossover="uniform",
        child_trust="parent_mean",
        elitism=1,
    )
    ga = TrustGA(cfg, num_params=1000)
    genomes = torch.stack(
        [
            torch.zeros(1000),
            torch.ones(1000),
            torch.full((1000,), 2.0),
            torch.full((1000,), 3.0),
        ]
    )
    trust = torch.tensor([0.0, 10.0, 0.0, 20.0])
    state = TrustGAState(genomes, trust, torch.full((4,), 0.1), generation=1)
    children, new = ga.ask(state, rng())
    assert torch.equal(children[0], genomes[3]) and new.trust[0] == 20.0  # the elite
    assert set(children[1:].unique().tolist()) <= {1.0, 3.0}
    assert set(new.trust[1:].tolist()) <= {10.0, 15.0, 20.0}


def test_mutation_hits_each_weight_with_the_given_probability() -> None:
    genomes = torch.zeros(200, 5000)
    mutate_(genomes, 0.07, 0.1, rng())
    changed = (genomes != 0).float().mean().item()
    assert changed == pytest.approx(0.07, abs=0.002)
    assert genomes[genomes != 0].std().item() == pytest.approx(0.1, rel=0.02)
    untouched = torch.zeros(10, 10)
    mutate_(untouched, 0.0, 0.1, rng())
    assert not untouched.any()


def test_tell_per_image_decay_matches_the_sequential_rule() -> None:
    cfg = TrustGAConfig(
        decay_mode="image",
        trust_decay=0.1,
        reward_correct=1.0,
        reward_wrong=-1.0,
        predictions="argmax",
    )
    logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]]])  # predicts 0, 1, 0
    labels = torch.tensor([0, 0, 0])
    fitness = make_fitness_fn(cfg)(logits, labels, rng())
    ga = TrustGA(cfg, num_params=1, images_per_generation=3)
    state, _ = ga.tell(
        TrustGAState(torch.zeros(1, 1), torch.tensor([10.0]), torch.ones(1)),
        torch.zeros(1, 1),
        fitness,
    )
    expected = 10.0
    for reward in (1.0, -1.0, 1.0):
        expected = expected * 0.9 + reward
    assert state.trust.item() == pytest.approx(expected)


def test_sampled_predictions_follow_the_softmax() -> None:
    cfg = TrustGAConfig(reward_correct=1.0, reward_wrong=0.0)
    logits = torch.log(torch.tensor([[[0.7, 0.3]] * 20_000]))
    fitness = make_fitness_fn(cfg)(logits, torch.zeros(20_000, dtype=torch.long), rng())
    assert fitness.item() / 20_000 == pytest.approx(0.7, abs=0.01)


def test_batched_forward_equals_a_per_genome_loop() -> None:
    model = BatchedMLP(784, 16, 10)
    genomes = model.init(5, rng())
    x = torch.rand(7, 784)
    batched = model.forward(genomes, x)
    for p in range(5):
        w1, b1, w2, b2 = (t[p] for t in model.layers(genomes))
        expected = torch.tanh(x @ w1 + b1) @ w2 + b2
        torch.testing.assert_close(batched[p], expected)
    assert model.num_params == 784 * 16 + 16 + 16 * 10 + 10


def test_init_ranges() -> None:
    model = BatchedMLP(784, 64, 10)
    w1, b1, w2, b2 = model.layers(model.init(3, rng(), 0.5, 0.1))
    assert w1.abs().max() <= 0.5 and w2.abs().max() <= 0.5
    assert b1.abs().max() <= 0.1 and b2.abs().max() <= 0.1
    assert w1.std().item() == pytest.approx(1 / math.sqrt(12), rel=0.02)


def scaled_ga(model: BatchedMLP, **knobs: object) -> TrustGA:
    """A trust GA over `model` with the large-population knobs, plus `knobs`."""
    base = {
        "population_size": 40,
        "top_fraction": 0.25,
        "crossover": "unit",
        "crossover_fraction": 0.5,
        "mutation": "lowrank",
        "mutation_scale": 0.05,
        "child_trust": "parent_mean",
        "elitism": 3,
    }
    cfg = TrustGAConfig(**{**base, **knobs})
    return TrustGA(cfg, model.num_params, 20, model)


def pool_state(ga: TrustGA, model: BatchedMLP, seed: int = 0) -> TrustGAState:
    """The state after one generation: a pool of the 10 most trusted of 40."""
    gen = rng(seed)
    state = ga.init(model.init(40, gen), gen)
    population, state = ga.ask(state, gen)
    state, _ = ga.tell(state, population, torch.randn(40, generator=gen))
    return state


@pytest.mark.parametrize("rank", [1, 3])
def test_unit_children_forward_equals_their_dense_genomes(rank: int) -> None:
    model = BatchedMLP(784, 16, 10)
    ga = scaled_ga(model, noise_rank=rank, self_adapt_tau=0.1)
    state = pool_state(ga, model)
    assert len(state.genomes) == 10  # only the parent pool is kept
    children, _ = ga.ask(state, rng(1))
    assert isinstance(children, UnitChildren) and len(children) == 40
    dense = children.dense()
    x = torch.rand(7, 784, generator=rng(2))
    torch.testing.assert_close(
        children.forward(x), model.forward(dense, x), rtol=1e-4, atol=1e-4
    )
    rows = torch.tensor([5, 0, 33])
    torch.testing.assert_close(children.dense(rows), dense[rows])
    elites = state.genomes[torch.topk(state.trust, 3).indices]
    assert torch.equal(dense[:3], elites)  # carried over unchanged, re-scored


def zeros_and_ones_children(
    model: BatchedMLP, population: int, crossover_fraction: float
) -> Tensor:
    """Unmutated children [N, D] of a pool of two: all-zero and all-one genomes."""
    ga = scaled_ga(
        model,
        population_size=population,
        crossover_fraction=crossover_fraction,
        mutation_scale=0.0,
        elitism=0,
    )
    pool = torch.stack([torch.zeros(model.num_params), torch.ones(model.num_params)])
    state = TrustGAState(pool, torch.tensor([1.0, 1.0]), torch.zeros(2), 1)
    return ga.ask(state, rng())[0].dense()


def test_unit_crossover_takes_each_hidden_unit_whole_from_one_parent() -> None:
    model = BatchedMLP(6, 4, 3)
    w1, b1, w2, b2 = model.layers(zeros_and_ones_children(model, 400, 1.0))
    unit_value = w1[:, 0, :]  # [N, H]: each unit is all zeros or all ones
    assert torch.equal(w1, unit_value.unsqueeze(1).expand_as(w1))
    assert torch.equal(b1, unit_value)
    assert torch.equal(w2, unit_value.unsqueeze(-1).expand_as(w2))
    assert set(b2.unique().tolist()) <= {0.0, 1.0}
    assert unit_value.mean().item() == pytest.approx(0.5, abs=0.05)


def test_crossover_fraction_sets_the_share_of_crossed_children() -> None:
    model = BatchedMLP(6, 32, 3)
    w1 = model.layers(zeros_and_ones_children(model, 2000, 0.3))[0]
    mixed = (w1.amin((1, 2)) != w1.amax((1, 2))).float().mean().item()
    # a crossed child of two different parents is mixed unless all 32 coins agree;
    # half the crossings pair a parent with itself
    assert mixed == pytest.approx(0.3 * 0.5, abs=0.03)


def test_dense_mutation_moves_every_weight_by_the_genome_sigma() -> None:
    cfg = TrustGAConfig(population_size=50, top_fraction=0.02, mutation="dense")
    ga = TrustGA(cfg, num_params=2000)
    pool = torch.zeros(1, 2000)
    state = TrustGAState(pool, torch.ones(1), torch.tensor([0.02]), 1)
    children, _ = ga.ask(state, rng())
    assert (children != 0).all()
    assert children.std().item() == pytest.approx(0.02, rel=0.02)


def test_self_adaptive_sigma_is_inherited_and_perturbed_log_normally() -> None:
    cfg = TrustGAConfig(
        population_size=4000, top_fraction=0.001, self_adapt_tau=0.2, mutation="dense"
    )
    ga = TrustGA(cfg, num_params=10)
    state = TrustGAState(torch.zeros(4, 10), torch.ones(4), torch.full((4,), 0.01), 1)
    children, asked = ga.ask(state, rng())
    log_ratio = torch.log(asked.sigma / 0.01)
    assert log_ratio.mean().item() == pytest.approx(0.0, abs=0.02)
    assert log_ratio.std().item() == pytest.approx(0.2, rel=0.05)
    per_child = children.std(1) / asked.sigma  # each child mutated by its own sigma
    assert per_child.median().item() == pytest.approx(1.0, rel=0.1)
    told, metrics = ga.tell(asked, children, torch.arange(4000.0))
    assert torch.equal(told.sigma, asked.sigma[3996:].flip(0))  # kept with genomes
    assert metrics["mutation_scale"] == pytest.approx(asked.sigma.mean().item())


def test_sparse_mutation_uses_each_genome_sigma_when_self_adaptive() -> None:
    genomes = torch.zeros(4, 20_000)
    sigma = torch.tensor([0.01, 0.1, 1.0, 0.0])
    mutate_(genomes, 0.5, sigma, rng())
    hit = genomes != 0
    assert hit[:3].float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert not hit[3].any()
    stds = [genomes[k][hit[k]].std().item() for k in range(3)]
    assert stds == pytest.approx([0.01, 0.1, 1.0], rel=0.05)


def test_tell_keeps_the_most_trusted_as_the_pool_and_best() -> None:
    cfg = TrustGAConfig(population_size=10, top_fraction=0.3, child_trust_factor=1.0)
    ga = TrustGA(cfg, num_params=2)
    genomes = torch.arange(20.0).view(10, 2)
    state = TrustGAState(genomes, torch.zeros(10), torch.ones(10))
    fitness = torch.tensor([5.0, 1.0, 9.0, 3.0, 7.0, 0.0, 2.0, 4.0, 6.0, 8.0])
    told, _ = ga.tell(state, genomes, fitness)
    assert told.trust.tolist() == [9.0, 8.0, 7.0] and told.generation == 1
    assert torch.equal(told.genomes, genomes[[2, 9, 4]])
    assert torch.equal(ga.best(told), genomes[2])


def test_random_bits_are_fair_coins() -> None:
    bits = random_bits((300, 1001), rng())
    assert bits.shape == (300, 1001) and bits.dtype == torch.bool
    assert bits.float().mean().item() == pytest.approx(0.5, abs=0.005)
    assert bits[:, -1].float().mean().item() == pytest.approx(0.5, abs=0.1)


def test_margin_fitness_is_the_squashed_true_class_lead() -> None:
    logits = torch.tensor([[[3.0, 1.0, 0.0], [0.0, 2.0, 2.5]]])  # [P=1, B=2, C=3]
    labels = torch.tensor([0, 1])
    assert class_margin(logits, labels).tolist() == [[2.0, -0.5]]
    fitness = make_fitness_fn(TrustGAConfig(fitness="margin"))(logits, labels, rng())
    expected = (math.tanh(2.0) + math.tanh(-0.5)) / 2
    assert fitness.item() == pytest.approx(expected)


def test_unit_crossover_needs_the_model() -> None:
    with pytest.raises(ValueError, match="crossover: unit"):
        TrustGA(TrustGAConfig(crossover="unit"), num_params=10)


def test_cross_entropy_fitness_is_minus_each_genomes_mean_cross_entropy() -> None:
    logits = torch.randn(7, 30, 10, generator=rng())  # [P, B, C]
    labels = torch.randint(0, 10, (30,), generator=rng())
    fitness = make_fitness_fn(TrustGAConfig(fitness="neg_cross_entropy"))(
        logits, labels, rng()
    )
    expected = torch.stack([-F.cross_entropy(member, labels) for member in logits])
    torch.testing.assert_close(fitness, expected)
