"""PGPE: a diagonal Gaussian whose mean and per-weight stdev follow the ranked fitness.

Mirrored seed-based samples center +- stdev * eps; the center moves by ClipUp (or Adam)
on the mean gradient, the stdev by plain gradient ascent, each step bounded to
`stdev_max_change` of the stdev (EvoTorch's knob names and defaults style).

[1] Sehnke et al., "Parameter-exploring policy gradients", Neural Networks 2010.
[2] Toklu et al., "ClipUp: a simple and powerful optimizer for distribution-based policy
    evolution", PPSN 2020.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from genreg.config import PGPEConfig
from genreg.strategies.distribution import DistributionStrategy, initial_center


@dataclass
class PGPEState:
    center: Tensor  # [D]
    stdev: Tensor  # [D]
    m: Tensor  # [D] optimiser first moment / velocity
    v: Tensor  # [D] optimiser second moment (Adam only)
    noise_seed: int = 0
    generation: int = 0


class PGPE(DistributionStrategy):
    """PGPE with symmetric sampling; knobs from `PGPEConfig`."""

    config: PGPEConfig
    config_class: ClassVar[type] = PGPEConfig

    state_class: ClassVar[type] = PGPEState

    def init(self, genomes: Tensor, rng: torch.Generator) -> PGPEState:
        center = initial_center(genomes, self.config.center_init_scale)
        stdev = torch.full_like(center, self.config.stdev_init)
        zeros = torch.zeros_like(center)
        return PGPEState(center, stdev, zeros, zeros.clone())

    def stdev(self, state: PGPEState) -> Tensor:
        return state.stdev

    def tell(
        self, state: PGPEState, genomes: Tensor, fitness: Tensor
    ) -> tuple[PGPEState, dict[str, float]]:
        cfg = self.config
        half = len(genomes) // 2
        utility = self.utility(fitness)
        plus, minus = utility[:half], utility[half:]
        # scaled noise delta_i = (G+_i - G-_i) / 2, recovered without keeping it
        delta = (genomes[:half] - genomes[half:]).mul_(0.5)
        # [1, P/2] @ [P/2, D] as a GEMM: much faster than a vector @ matrix
        grad_center = (((plus - minus) / 2)[None] @ delta)[0] / half
        update = self.center_step(state, grad_center)
        baseline = utility.mean()
        pair_mean = (plus + minus) / 2 - baseline
        delta.square_().sub_(state.stdev.square())
        grad_stdev = (pair_mean[None] @ delta)[0] / (half * state.stdev)
        bound = cfg.stdev_max_change * state.stdev
        change = (cfg.stdev_learning_rate * grad_stdev).clamp(-bound, bound)
        stdev = state.stdev + change
        center = state.center + update.step
        new = PGPEState(
            center, stdev, update.m, update.v, state.noise_seed, update.generation
        )
        return new, self.metrics(fitness, stdev.mean().item(), center, update)
