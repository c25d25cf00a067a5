"""GENREG trust-based genetic algorithm, as published (DESIGN §1).

Each genome's trust decays and accumulates its generation score; the top fraction by
trust become parents, drawn in proportion to trust; children are mutated copies
(optionally uniform crossovers of two parents) that inherit a share of their parent's
trust.

[1] AsyncVibes, "GENREG: 81.47% on MNIST by trust-based evolution"
    (shared/seeds/000_*.txt)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from genreg.strategies.base import StrategyBase


@dataclass
class TrustGAState:
    genomes: Tensor  # [P, D] the population being (or just) evaluated
    trust: Tensor  # [P]
    generation: int = 0  # generations told so far


def update_trust(trust: Tensor, score: Tensor, keep: float, clamp: float) -> Tensor:
    """trust * keep + score, clamped to [-clamp, clamp]: [P]."""
    return (trust * keep + score).clamp_(-clamp, clamp)


def select_parents(
    trust: Tensor,
    top_fraction: float,
    num_children: int,
    by_trust: bool,
    rng: torch.Generator,
) -> Tensor:
    """Indices [num_children] of parents drawn from the top fraction by trust."""
    num_parents = max(1, math.ceil(top_fraction * len(trust)))
    top = torch.topk(trust, num_parents).indices
    if not by_trust:
        weights = torch.ones(num_parents, device=trust.device)
    else:
        # trust goes negative at chance level (10 * 0.1 - 1.5 * 0.9 < 0), so weigh by
        # trust above the weakest parent's; equal trust means equal chances
        weights = trust[top] - trust[top].min()
        if not torch.isfinite(weights).all() or weights.sum() <= 0:
            weights = torch.ones(num_parents, device=trust.device)
    draws = torch.multinomial(weights, num_children, replacement=True, generator=rng)
    return top[draws]


def crossover(mothers: Tensor, fathers: Tensor, rng: torch.Generator) -> Tensor:
    """Uniform crossover: each weight from either parent with probability 1/2 [N, D]."""
    take_father = torch.rand(mothers.shape, generator=rng, device=mothers.device) < 0.5
    return torch.where(take_father, fathers, mothers)


def mutate_(genomes: Tensor, prob: float, scale: float, rng: torch.Generator) -> Tensor:
    """Add N(0, scale) to each weight of `genomes` [N, D] with probability `prob`.

    In place.

    Only the positions that mutate are drawn: Poisson(-N*D*ln(1-prob)) uniform hits, so
    each weight is hit at least once with probability exactly `prob`; a hit weight gets
    one normal draw. This costs O(prob * N * D) instead of two draws per weight.
    """
    if prob <= 0 or scale <= 0 or genomes.numel() == 0:
        return genomes
    flat = genomes.view(-1)
    if prob >= 1:
        flat += torch.randn(flat.shape, generator=rng, device=flat.device) * scale
        return genomes
    rate = torch.tensor([-flat.numel() * math.log1p(-prob)], dtype=torch.float64)
    hits = int(torch.poisson(rate.to(rng.device), generator=rng).item())
    positions = torch.randint(
        0, flat.numel(), (hits,), generator=rng, device=flat.device
    )
    positions = torch.unique(positions)
    noise = torch.randn(positions.shape, generator=rng, device=flat.device) * scale
    flat.index_add_(0, positions, noise)
    return genomes


class TrustGA(StrategyBase):
    """GENREG's trust GA; every constant comes from `StrategyConfig`."""

    state_class: ClassVar[type] = TrustGAState

    def init(self, genomes: Tensor, rng: torch.Generator) -> TrustGAState:
        trust = torch.zeros(len(genomes), device=genomes.device)
        return TrustGAState(genomes=genomes, trust=trust)

    def ask(
        self, state: TrustGAState, rng: torch.Generator
    ) -> tuple[Tensor, TrustGAState]:
        if state.generation == 0:
            return state.genomes, state
        genomes, trust = self._reproduce(state.genomes, state.trust, rng)
        return genomes, TrustGAState(genomes, trust, state.generation)

    def tell(
        self, state: TrustGAState, genomes: Tensor, fitness: Tensor
    ) -> tuple[TrustGAState, dict[str, float]]:
        cfg = self.config
        keep = 1.0 - cfg.trust_decay
        if cfg.decay_mode == "image":  # the per-image rewards already carry their decay
            keep = keep**self.images_per_generation
        trust = update_trust(state.trust, fitness, keep, cfg.trust_clamp)
        metrics = {
            "trust_max": trust.max().item(),
            "trust_mean": trust.mean().item(),
            "trust_median": trust.median().item(),
            "trust_std": trust.std().item() if len(trust) > 1 else 0.0,
            "fitness_max": fitness.max().item(),
            "fitness_mean": fitness.mean().item(),
            "mutation_scale": cfg.mutation_scale,
        }
        return TrustGAState(genomes, trust, state.generation + 1), metrics

    def best(self, state: TrustGAState) -> Tensor:
        return state.genomes[state.trust.argmax()]

    def _reproduce(
        self, genomes: Tensor, trust: Tensor, rng: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        cfg = self.config
        pop = len(genomes)
        num_children = pop - cfg.elitism
        by_trust = cfg.parent_selection == "trust"
        mothers = select_parents(trust, cfg.top_fraction, num_children, by_trust, rng)
        children = genomes[mothers]
        child_trust = trust[mothers]
        if cfg.crossover:
            fathers = select_parents(
                trust, cfg.top_fraction, num_children, by_trust, rng
            )
            children = crossover(children, genomes[fathers], rng)
            child_trust = (child_trust + trust[fathers]) / 2
        if cfg.child_trust == "factor":
            child_trust = trust[mothers] * cfg.child_trust_factor
        mutate_(children, cfg.mutation_prob, cfg.mutation_scale, rng)
        elites = torch.topk(trust, cfg.elitism).indices
        survivors = genomes[elites]
        if cfg.mutate_survivors:
            mutate_(survivors, cfg.mutation_prob, cfg.mutation_scale, rng)
        return torch.cat([survivors, children]), torch.cat([trust[elites], child_trust])
