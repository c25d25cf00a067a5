"""PGPE: a diagonal Gaussian whose mean and per-weight stdev follow the ranked fitness.

Mirrored seed-based samples center +- stdev * eps; the center moves by ClipUp (or Adam)
on the mean gradient, the stdev by plain gradient ascent, each step bounded to
`stdev_max_change` of the stdev (EvoTorch's knob names and defaults style).

[1] Sehnke et al., "Parameter-exploring policy gradients", Neural Networks 2010.
[2] Toklu et al., "ClipUp: a simple and powerful optimizer for distribution-based policy
    evolution", PPSN 2020.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor

from genreg.noise import draw_seed, mirrored_population
from genreg.optim import optimizer_step
from genreg.shaping import centered_ranks, normalized
from genreg.strategies.base import StrategyBase
from genreg.strategies.open_es import initial_center


@dataclass
class PGPEState:
    center: Tensor  # [D]
    stdev: Tensor  # [D]
    m: Tensor  # [D] optimiser first moment / velocity
    v: Tensor  # [D] optimiser second moment (Adam only)
    noise_seed: int = 0
    generation: int = 0


class PGPE(StrategyBase):
    """PGPE with symmetric sampling; knobs from `StrategyConfig`."""

    mirrored: ClassVar[bool] = True
    state_class: ClassVar[type] = PGPEState

    def init(self, genomes: Tensor, rng: torch.Generator) -> PGPEState:
        center = initial_center(genomes, self.config.center_init_scale)
        stdev = torch.full_like(center, self.config.stdev_init)
        zeros = torch.zeros_like(center)
        return PGPEState(center, stdev, zeros, zeros.clone())

    def ask(self, state: PGPEState, rng: torch.Generator) -> tuple[Tensor, PGPEState]:
        return self.ask_seeded(state, draw_seed(rng))

    def ask_seeded(self, state: PGPEState, seed: int) -> tuple[Tensor, PGPEState]:
        """The population for noise seed `seed` (deterministic given state and seed)."""
        pop = self.config.population_size
        genomes = mirrored_population(
            state.center, state.stdev, seed, pop, self.config.noise_table_size
        )
        return genomes, replace(state, noise_seed=seed)

    def tell(
        self, state: PGPEState, genomes: Tensor, fitness: Tensor
    ) -> tuple[PGPEState, dict[str, float]]:
        cfg = self.config
        half = len(genomes) // 2
        shape = centered_ranks if cfg.shaping == "centered_ranks" else normalized
        utility = shape(fitness)
        plus, minus = utility[:half], utility[half:]
        # scaled noise delta_i = (G+_i - G-_i) / 2, recovered without keeping it
        delta = (genomes[:half] - genomes[half:]).mul_(0.5)
        # [1, P/2] @ [P/2, D] as a GEMM: much faster than a vector @ matrix
        grad_center = (((plus - minus) / 2)[None] @ delta)[0] / half
        grad_center = grad_center - cfg.weight_decay * state.center
        baseline = utility.mean()
        pair_mean = (plus + minus) / 2 - baseline
        delta.square_().sub_(state.stdev.square())
        grad_stdev = (pair_mean[None] @ delta)[0] / (half * state.stdev)
        t = state.generation + 1
        step, m, v = optimizer_step(
            cfg.optimizer,
            grad_center,
            state.m,
            state.v,
            t,
            cfg.center_learning_rate * cfg.learning_rate_decay**state.generation,
        )
        bound = cfg.stdev_max_change * state.stdev
        change = (cfg.stdev_learning_rate * grad_stdev).clamp(-bound, bound)
        stdev = state.stdev + change
        new = PGPEState(state.center + step, stdev, m, v, state.noise_seed, t)
        metrics = {
            "fitness_max": fitness.max().item(),
            "fitness_mean": fitness.mean().item(),
            "stdev_mean": stdev.mean().item(),
            "center_norm": new.center.norm().item(),
            "step_norm": step.norm().item(),
        }
        return new, metrics

    def best(self, state: PGPEState) -> Tensor:
        return state.center
