"""The one ask -> evaluate -> tell loop, with validation tracking and callbacks.

The loop itself never logs or writes files: progress bars, checkpoints and MLflow attach
as callbacks (EvoTorch's hook idea). The run's best genome is selected on the task's
validation metric only (accuracy for classification, MSE for the autoencoder).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from genreg.metric_names import SECONDS_PER_GENERATION, best_metric
from genreg.strategies.base import Strategy, population_forward
from genreg.task import FitnessFn, Task

RNG_STREAMS = ("init", "batch", "strategy", "predict")


class Callback(Protocol):
    def on_generation(self, generation: int, metrics: Mapping[str, float]) -> None: ...


def make_rngs(
    seed: int, device: torch.device | str = "cpu"
) -> dict[str, torch.Generator]:
    """Independent generators per stream (init, batch, strategy, predict), one seed."""
    children = np.random.SeedSequence(seed).spawn(len(RNG_STREAMS))
    rngs = {}
    for name, child in zip(RNG_STREAMS, children, strict=True):
        gen = torch.Generator(device=device)
        gen.manual_seed(int(child.generate_state(1, np.uint64)[0]))
        rngs[name] = gen
    return rngs


@dataclass
class RunState:
    """Everything needed to continue a run exactly: what a checkpoint holds."""

    strategy_state: Any
    rngs: dict[str, torch.Generator]
    generation: int = 0  # generations completed
    best_genome: Tensor | None = None  # [D], by the task's validation score
    best_val_score: float = -math.inf  # higher is better (accuracy, or -MSE)
    best_generation: int = -1
    history: list[dict[str, float]] = field(default_factory=list)


def run(
    strategy: Strategy,
    task: Task,
    fitness_fn: FitnessFn,
    state: RunState,
    *,
    num_generations: int,
    eval_every: int,
    callbacks: Sequence[Callback] = (),
    checkpoint_fn: Callable[[RunState], None] | None = None,
    checkpoint_every: int = 0,
    max_seconds: float = 0.0,
) -> RunState:
    """Evolve until `num_generations` are done, continuing from `state.generation`.

    With `max_seconds` > 0 the loop also stops after the first generation that ends
    that many seconds after this call began; that generation is validated and
    checkpointed like the last one, and `state.generation` tells where it stopped.
    """
    began = time.perf_counter()
    while state.generation < num_generations:
        gen = state.generation
        started = time.perf_counter()
        metrics = step(strategy, task, fitness_fn, state)
        out_of_time = max_seconds > 0 and time.perf_counter() - began >= max_seconds
        last = gen + 1 == num_generations or out_of_time
        if (gen + 1) % eval_every == 0 or last:
            metrics.update(_validate(strategy, task, state, gen))
        metrics[SECONDS_PER_GENERATION] = time.perf_counter() - started
        state.history.append(metrics)
        state.generation = gen + 1
        for callback in callbacks:
            callback.on_generation(gen, metrics)
        if checkpoint_fn is not None and (
            last or (checkpoint_every and state.generation % checkpoint_every == 0)
        ):
            checkpoint_fn(state)
        if out_of_time:
            break
    return state


def step(
    strategy: Strategy, task: Task, fitness_fn: FitnessFn, state: RunState
) -> dict[str, float]:
    """One generation: ask, score on the task's fresh batch, tell. Returns metrics."""
    rngs = state.rngs
    genomes, strategy_state = strategy.ask(state.strategy_state, rngs["strategy"])
    x, target = task.sample_batch(rngs["batch"])
    outputs = population_forward(task.model, genomes, x)
    fitness = fitness_fn(outputs, target, rngs["predict"])
    state.strategy_state, metrics = strategy.tell(strategy_state, genomes, fitness)
    metrics.update(task.batch_metrics(outputs, target))
    return metrics


def _validate(
    strategy: Strategy, task: Task, state: RunState, gen: int
) -> dict[str, float]:
    candidate = strategy.best(state.strategy_state)
    value = task.validate(candidate)
    sign = 1.0 if task.higher_is_better else -1.0
    if sign * value > state.best_val_score:
        state.best_val_score = sign * value
        state.best_genome = candidate.detach().clone()
        state.best_generation = gen
    name = task.val_metric
    return {name: value, best_metric(name): sign * state.best_val_score}
