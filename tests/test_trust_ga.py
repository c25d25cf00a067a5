"""Trust GA: exact trust update, parent choice, child trust, mutation rate.

Also the batched model.
"""

from __future__ import annotations

import math

import pytest
import torch

from genreg.config import StrategyConfig
from genreg.model import BatchedMLP
from genreg.strategies.trust_ga import (
    TrustGA,
    TrustGAState,
    mutate_,
    select_parents,
    update_trust,
)
from genreg.task import make_fitness_fn


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_trust_update_decays_adds_and_clamps() -> None:
    trust = torch.tensor([100.0, -50.0, 0.0, 9e4])
    score = torch.tensor([10.0, 20.0, -3.0, 5e4])
    out = update_trust(trust, score, keep=0.8, clamp=1e5)
    assert out.tolist() == pytest.approx([90.0, -20.0, -3.0, 1e5])


def test_parents_come_from_the_top_fraction_in_proportion_to_trust() -> None:
    trust = torch.tensor([5.0, 1.0, 9.0, 3.0, 7.0, 0.0, 2.0, 4.0, 6.0, 8.0])
    picks = select_parents(trust, 0.3, 30_000, by_trust=True, rng=rng())
    assert set(picks.tolist()) <= {2, 9, 4}
    counts = torch.bincount(picks, minlength=10).float() / 30_000
    # weights are trust above the weakest parent (7): 9 -> 2, 8 -> 1, 7 -> 0
    assert counts[2].item() == pytest.approx(2 / 3, abs=0.02)
    assert counts[9].item() == pytest.approx(1 / 3, abs=0.02)
    uniform = select_parents(trust, 0.3, 30_000, by_trust=False, rng=rng())
    assert torch.bincount(uniform, minlength=10)[4].item() / 30_000 == pytest.approx(
        1 / 3, abs=0.02
    )


def test_child_trust_is_parent_trust_times_factor() -> None:
    cfg = StrategyConfig(population_size=4, top_fraction=0.25, mutation_prob=0.0)
    ga = TrustGA(cfg, num_params=3)
    genomes = torch.arange(12.0).view(4, 3)
    state = TrustGAState(genomes, torch.tensor([1.0, 50.0, 2.0, 3.0]), generation=1)
    children, new = ga.ask(state, rng())
    assert torch.equal(children, genomes[[1, 1, 1, 1]])  # mutation off: exact copies
    assert new.trust.tolist() == pytest.approx([1.5] * 4)


def test_crossover_and_parent_mean_trust() -> None:
    cfg = StrategyConfig(
        population_size=4,
        top_fraction=0.5,
        mutation_prob=0.0,
        crossover=True,
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
    state = TrustGAState(genomes, torch.tensor([0.0, 10.0, 0.0, 20.0]), generation=1)
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
    cfg = StrategyConfig(
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
        TrustGAState(torch.zeros(1, 1), torch.tensor([10.0])), None, fitness
    )
    expected = 10.0
    for reward in (1.0, -1.0, 1.0):
        expected = expected * 0.9 + reward
    assert state.trust.item() == pytest.approx(expected)


def test_sampled_predictions_follow_the_softmax() -> None:
    cfg = StrategyConfig(reward_correct=1.0, reward_wrong=0.0)
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
