"""The strategy interface (ask/tell, evosax-style) and the registry of strategies.

A strategy never logs, prints or touches global RNG state; randomness comes in as a
`torch.Generator`, state goes out as a new dataclass. Fitness is higher-is-better [P].
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol, TypeVar

import torch
from torch import Tensor

from genreg.config import StrategyConfig
from genreg.model import BatchedMLP

S = TypeVar("S")


class StructuredPopulation(Protocol):
    """A population held in factored form (e.g. low-rank noise), never as [P, D]."""

    def __len__(self) -> int: ...

    def forward(self, x: Tensor) -> Tensor:
        """Logits [P, B, C] of every member on the shared images x [B, I]."""
        ...


Population = Tensor | StructuredPopulation


def population_forward(model: BatchedMLP, population: Population, x: Tensor) -> Tensor:
    """Logits [P, B, C]: dense genomes through `model`, others through their own."""
    if isinstance(population, Tensor):
        return model.forward(population, x)
    return population.forward(x)


class Strategy(Protocol[S]):
    """Population-based optimiser over flat genomes [P, D].

    `ask` may return a `StructuredPopulation` instead of dense genomes; `tell` gets back
    whatever `ask` gave.
    """

    config: StrategyConfig
    state_class: ClassVar[type]

    def init(self, genomes: Tensor, rng: torch.Generator) -> S:
        """State from initial genomes [P, D] (a distribution strategy uses the mean)."""
        ...

    def ask(self, state: S, rng: torch.Generator) -> tuple[Population, S]:
        """Genomes [P, D] (or a structured population) to evaluate next."""
        ...

    def tell(
        self, state: S, genomes: Population, fitness: Tensor
    ) -> tuple[S, dict[str, float]]:
        """Update on fitness [P] of `genomes`; return new state and scalar metrics."""
        ...

    def best(self, state: S) -> Tensor:
        """The genome [D] the strategy now rates best (candidate for validation)."""
        ...


class StrategyBase:
    """The constructor every strategy shares: config, genome length, batch size.

    Each strategy takes its own config class (`config_class`), whose construction
    already checked its knobs (an even population where members come in +/- pairs).
    `model`, when given, is the network whose genomes are evolved; only strategies
    that exploit its layer shapes (lowrank_es) need it.
    """

    config_class: ClassVar[type[StrategyConfig]]  # the config it is built from
    needs_model: ClassVar[bool] = False  # uses the model's layer shapes

    def __init__(
        self,
        config: StrategyConfig,
        num_params: int,
        images_per_generation: int = 1,
        model: BatchedMLP | None = None,
    ) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        if self.needs_model and (model is None or model.num_params != num_params):
            raise ValueError(
                f"strategy.name: {config.name} needs the BatchedMLP whose genomes it "
                "evolves (one-hidden-layer classifiers only)"
            )
        self.config = config
        self.num_params = num_params
        self.images_per_generation = images_per_generation
        self.model = model


def state_arrays(state: Any) -> dict[str, Tensor]:
    """A state dataclass as a dict of tensors (scalars as 0-d), for checkpoints."""
    out = {}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if isinstance(value, Tensor):
            out[f.name] = value
        else:  # float64 so a Python float comes back unchanged
            dtype = torch.float64 if isinstance(value, float) else None
            out[f.name] = torch.tensor(value, dtype=dtype)
    return out


def state_from_arrays(
    cls: type[S], arrays: dict[str, Tensor], device: torch.device
) -> S:
    """Inverse of `state_arrays`: 0-d tensors become numbers of the field's type."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in arrays:
            raise KeyError(f.name)
        value = arrays[f.name]
        kwargs[f.name] = value.item() if value.dim() == 0 else value.to(device)
    return cls(**kwargs)
