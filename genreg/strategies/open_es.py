"""OpenAI-ES with mirrored seed-based noise, centred ranks, weight decay and Adam.

Member i < P/2 is center + sigma * eps_i and member i + P/2 is center - sigma * eps_i,
with eps drawn from one per-generation seed kept in the state (so the state never holds
[P, D] noise, and a run replays from its seeds and fitness vectors: `replay`).

[1] Salimans et al., "Evolution Strategies as a Scalable Alternative to RL", 2017.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from genreg.config import IsotropicESConfig, OpenESConfig
from genreg.strategies.distribution import (
    DistributionStrategy,
    annealed,
    initial_center,
)


@dataclass
class OpenESState:
    center: Tensor  # [D] the search distribution's mean: the candidate
    m: Tensor  # [D] optimiser first moment (velocity for ClipUp / SGD)
    v: Tensor  # [D] optimiser second moment (Adam only)
    noise_seed: int = 0  # seed of the generation last asked for
    generation: int = 0  # generations told so far


class OpenES(DistributionStrategy):
    """Isotropic Gaussian ES; the learning rate and sigma come from `OpenESConfig`."""

    config: IsotropicESConfig
    config_class: ClassVar[type] = OpenESConfig
    state_class: ClassVar[type] = OpenESState

    def init(self, genomes: Tensor, rng: torch.Generator) -> OpenESState:
        center = initial_center(genomes, self.config.center_init_scale)
        zeros = torch.zeros_like(center)
        return OpenESState(center, zeros, zeros.clone())

    def tell(
        self, state: OpenESState, genomes: Tensor, fitness: Tensor
    ) -> tuple[OpenESState, dict[str, float]]:
        half = len(fitness) // 2
        utility = self.utility(fitness)
        weights = utility[:half] - utility[half:]
        sigma = self.stdev(state)
        update = self.center_step(state, self.gradient(genomes, weights, sigma))
        center = state.center + update.step
        new = OpenESState(
            center, update.m, update.v, state.noise_seed, update.generation
        )
        return new, self.metrics(fitness, sigma, center, update)

    def stdev(self, state: OpenESState) -> float:
        """stdev_init times the `strategy.stdev_schedule` factor at this generation."""
        cfg = self.config
        factor = annealed(
            cfg.stdev_schedule,
            cfg.stdev_floor,
            state.generation,
            cfg.schedule_generations,
        )
        return cfg.stdev_init * factor

    def gradient(self, genomes: Tensor, weights: Tensor, sigma: float) -> Tensor:
        """Search gradient [D] from pair weights u(+eps_j) - u(-eps_j) [P/2]."""
        half = len(weights)
        # (G+ - G-) = 2 sigma eps, so w @ G+ - w @ G- avoids a [P/2, D] temporary
        row = weights[None]  # [1, P/2] @ [P/2, D]: a GEMM, much faster than vector @
        diff = (row @ genomes[:half] - row @ genomes[half:])[0]
        return diff / (2 * sigma**2 * 2 * half)


def replay(
    strategy: OpenES,
    state: OpenESState,
    seeds: Sequence[int],
    fitness: Sequence[Tensor],
) -> OpenESState:
    """Re-run the updates from the per-generation seeds and fitness vectors."""
    for seed, fit in zip(seeds, fitness, strict=True):
        genomes, state = strategy.ask_seeded(state, seed)
        state, _ = strategy.tell(state, genomes, fit)
    return state
