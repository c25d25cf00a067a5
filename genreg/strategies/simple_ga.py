"""A simple GA: truncation selection, elitism and dense Gaussian mutation.

The `elitism` best genomes pass on unchanged (and are re-scored on the next batch); the
other children are copies of parents drawn uniformly from the top `top_fraction`, with
N(0, mutation_scale) added to every weight (with probability `mutation_prob`).

[1] Such et al., "Deep Neuroevolution: Genetic Algorithms Are a Competitive Alternative
    for Training Deep Neural Networks for Reinforcement Learning", 2017.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from genreg.config import SimpleGAConfig
from genreg.metric_names import MUTATION_SCALE, fitness_metrics
from genreg.strategies.base import StrategyBase
from genreg.strategies.trust_ga import mutate_


@dataclass
class SimpleGAState:
    genomes: Tensor  # [P, D] the population last evaluated
    fitness: Tensor  # [P] its fitness
    generation: int = 0


class SimpleGA(StrategyBase):
    """Truncation-selection GA; knobs from `SimpleGAConfig`."""

    config: SimpleGAConfig
    config_class: ClassVar[type] = SimpleGAConfig
    state_class: ClassVar[type] = SimpleGAState

    def init(self, genomes: Tensor, rng: torch.Generator) -> SimpleGAState:
        genomes = genomes * self.config.center_init_scale
        fitness = torch.full((len(genomes),), -math.inf, device=genomes.device)
        return SimpleGAState(genomes, fitness)

    def ask(
        self, state: SimpleGAState, rng: torch.Generator
    ) -> tuple[Tensor, SimpleGAState]:
        if state.generation == 0:
            return state.genomes, state
        cfg = self.config
        pop = len(state.genomes)
        num_parents = max(1, math.ceil(cfg.top_fraction * pop))
        ranked = torch.argsort(state.fitness, descending=True, stable=True)
        elites = state.genomes[ranked[: cfg.elitism]]
        draws = torch.randint(
            0, num_parents, (pop - cfg.elitism,), generator=rng, device=rng.device
        )
        children = state.genomes[ranked[draws.to(ranked.device)]]
        mutate_(children, cfg.mutation_prob, cfg.mutation_scale, rng)
        return torch.cat([elites, children]), state

    def tell(
        self, state: SimpleGAState, genomes: Tensor, fitness: Tensor
    ) -> tuple[SimpleGAState, dict[str, float]]:
        new = SimpleGAState(genomes, fitness.float(), state.generation + 1)
        metrics = {
            **fitness_metrics(fitness),
            MUTATION_SCALE: self.config.mutation_scale,
        }
        return new, metrics

    def best(self, state: SimpleGAState) -> Tensor:
        return state.genomes[state.fitness.argmax()]
