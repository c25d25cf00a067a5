"""What the distribution strategies (open_es, lowrank_es, pgpe) share.

A search distribution around `center` is sampled in mirrored pairs from one seed per
generation; its update shapes the fitness, ascends the search gradient (with weight
decay and a decaying learning rate) by the configured optimiser, and reports the same
metrics.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from genreg.config import DistributionConfig
from genreg.metric_names import (
    CENTER_NORM,
    GRAD_NORM,
    STDEV_MEAN,
    STEP_NORM,
    fitness_metrics,
)
from genreg.noise import draw_seed, mirrored_population
from genreg.optim import optimizer_step
from genreg.shaping import centered_ranks, normalized
from genreg.strategies.base import Population, StrategyBase


class DistributionState(Protocol):
    center: Tensor  # [D] the search distribution's mean: the candidate
    m: Tensor  # [D] optimiser first moment (velocity for ClipUp / SGD)
    v: Tensor  # [D] optimiser second moment (Adam only)
    noise_seed: int  # seed of the generation last asked for
    generation: int  # generations told so far


class CenterStep(NamedTuple):
    """One optimiser step of the center: its gradient, step and new moments."""

    grad: Tensor  # [D] search gradient minus weight decay
    step: Tensor  # [D] added to the center
    m: Tensor
    v: Tensor
    generation: int  # generations told, this one included


def annealed(kind: str, floor: float, generation: int, length: int) -> float:
    """Factor at `generation` of a schedule falling from 1 to `floor` over `length`.

    "cosine" follows half a cosine, "linear" a straight line; both stay at `floor`
    after `length` generations. "constant" is always 1.
    """
    if kind == "constant":
        return 1.0
    progress = min(generation / length, 1.0)
    if kind == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear":
        return floor + (1.0 - floor) * (1.0 - progress)
    raise ValueError(f"unknown schedule {kind!r}")


def interpolated(start: int, end: int, generation: int, length: int) -> int:
    """`start` moving linearly to `end` over `length` generations (end 0: stay)."""
    if not end:
        return start
    return round(start + (end - start) * min(generation / length, 1.0))


def initial_center(genomes: Tensor, scale: float) -> Tensor:
    """The first initial genome shrunk by `scale` (the model's init saturates tanh)."""
    return genomes[0].detach().clone() * scale


class DistributionStrategy(StrategyBase):
    """Mirrored seed-based sampling, fitness shaping and the center's optimiser step."""

    config: DistributionConfig

    def ask(self, state: Any, rng: torch.Generator) -> tuple[Population, Any]:
        return self.ask_seeded(state, draw_seed(rng))

    def ask_seeded(self, state: Any, seed: int) -> tuple[Population, Any]:
        """The population for noise seed `seed` (deterministic given state and seed)."""
        genomes = mirrored_population(
            state.center,
            self.stdev(state),
            seed,
            self.config.population_size,
            self.config.noise_table_size,
        )
        return genomes, replace(state, noise_seed=seed)

    def stdev(self, state: Any) -> Tensor | float:
        """The sampling stdev: a scalar, or one per weight [D]."""
        return self.config.stdev_init

    def utility(self, fitness: Tensor) -> Tensor:
        """Fitness [P] shaped by `strategy.shaping`."""
        if self.config.shaping == "centered_ranks":
            return centered_ranks(fitness)
        return normalized(fitness)

    def center_step(self, state: DistributionState, grad: Tensor) -> CenterStep:
        """Weight decay, then one optimiser step at the scheduled learning rate."""
        cfg = self.config
        grad = grad - cfg.weight_decay * state.center
        t = state.generation + 1
        step, m, v = optimizer_step(
            cfg.optimizer, grad, state.m, state.v, t, self.learning_rate(state)
        )
        return CenterStep(grad, step, m, v, t)

    def learning_rate(self, state: DistributionState) -> float:
        """The center's learning rate at generation `state.generation`."""
        cfg, t = self.config, state.generation
        if cfg.learning_rate_schedule == "exponential":
            return cfg.center_learning_rate * cfg.learning_rate_decay**t
        factor = annealed(
            cfg.learning_rate_schedule,
            cfg.learning_rate_floor,
            t,
            cfg.schedule_generations,
        )
        return cfg.center_learning_rate * factor

    def metrics(
        self,
        fitness: Tensor,
        stdev_mean: float,
        center: Tensor,
        update: CenterStep,
    ) -> dict[str, float]:
        """Fitness, distribution and step sizes of one generation."""
        return {
            **fitness_metrics(fitness),
            STDEV_MEAN: stdev_mean,
            CENTER_NORM: center.norm().item(),
            GRAD_NORM: update.grad.norm().item(),
            STEP_NORM: update.step.norm().item(),
        }

    def best(self, state: DistributionState) -> Tensor:
        return state.center
