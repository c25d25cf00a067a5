"""OpenAI-ES with mirrored seed-based noise, centred ranks, weight decay and Adam.

Member i < P/2 is center + sigma * eps_i and member i + P/2 is center - sigma * eps_i,
with eps drawn from one per-generation seed kept in the state (so the state never holds
[P, D] noise, and a run replays from its seeds and fitness vectors: `replay`).

[1] Salimans et al., "Evolution Strategies as a Scalable Alternative to RL", 2017.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor

from genreg.noise import draw_seed, mirrored_population
from genreg.optim import optimizer_step
from genreg.shaping import centered_ranks, normalized
from genreg.strategies.base import StrategyBase


@dataclass
class OpenESState:
    center: Tensor  # [D] the search distribution's mean: the candidate
    m: Tensor  # [D] optimiser first moment (velocity for ClipUp / SGD)
    v: Tensor  # [D] optimiser second moment (Adam only)
    noise_seed: int = 0  # seed of the generation last asked for
    generation: int = 0  # generations told so far


def initial_center(genomes: Tensor, scale: float) -> Tensor:
    """The first initial genome shrunk by `scale` (the model's init saturates tanh)."""
    return genomes[0].detach().clone() * scale


class OpenES(StrategyBase):
    """Isotropic Gaussian ES; the learning rate and sigma come from `StrategyConfig`."""

    mirrored: ClassVar[bool] = True
    state_class: ClassVar[type] = OpenESState

    def init(self, genomes: Tensor, rng: torch.Generator) -> OpenESState:
        center = initial_center(genomes, self.config.center_init_scale)
        zeros = torch.zeros_like(center)
        return OpenESState(center, zeros, zeros.clone())

    def ask(
        self, state: OpenESState, rng: torch.Generator
    ) -> tuple[Tensor, OpenESState]:
        return self.ask_seeded(state, draw_seed(rng))

    def ask_seeded(self, state: OpenESState, seed: int) -> tuple[Tensor, OpenESState]:
        """The population for noise seed `seed` (deterministic given state and seed)."""
        pop = self.config.population_size
        genomes = mirrored_population(
            state.center,
            self.config.stdev_init,
            seed,
            pop,
            self.config.noise_table_size,
        )
        return genomes, replace(state, noise_seed=seed)

    def tell(
        self, state: OpenESState, genomes: Tensor, fitness: Tensor
    ) -> tuple[OpenESState, dict[str, float]]:
        cfg = self.config
        half = len(fitness) // 2
        shape = centered_ranks if cfg.shaping == "centered_ranks" else normalized
        utility = shape(fitness)
        weights = utility[:half] - utility[half:]
        grad = self.gradient(genomes, weights) - cfg.weight_decay * state.center
        t = state.generation + 1
        step, m, v = optimizer_step(
            cfg.optimizer,
            grad,
            state.m,
            state.v,
            t,
            cfg.center_learning_rate * cfg.learning_rate_decay**state.generation,
        )
        center = state.center + step
        new = OpenESState(center, m, v, state.noise_seed, t)
        metrics = {
            "fitness_max": fitness.max().item(),
            "fitness_mean": fitness.mean().item(),
            "stdev_mean": cfg.stdev_init,
            "center_norm": center.norm().item(),
            "grad_norm": grad.norm().item(),
            "step_norm": step.norm().item(),
        }
        return new, metrics

    def gradient(self, genomes: Tensor, weights: Tensor) -> Tensor:
        """Search gradient [D] from pair weights u(+eps_j) - u(-eps_j) [P/2]."""
        half = len(weights)
        # (G+ - G-) = 2 sigma eps, so w @ G+ - w @ G- avoids a [P/2, D] temporary
        row = weights[None]  # [1, P/2] @ [P/2, D]: a GEMM, much faster than vector @
        diff = (row @ genomes[:half] - row @ genomes[half:])[0]
        return diff / (2 * self.config.stdev_init**2 * 2 * half)

    def best(self, state: OpenESState) -> Tensor:
        return state.center


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
