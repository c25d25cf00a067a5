"""Fitness shaping: raw fitness [P] to utilities robust to outliers and scale."""

from __future__ import annotations

import torch
from torch import Tensor


def centered_ranks(fitness: Tensor) -> Tensor:
    """Ranks mapped linearly to [-0.5, 0.5] (lowest -0.5, highest 0.5), [P] float32.

    Ties get distinct ranks in index order, as in OpenAI ES and EvoTorch.
    """
    n = fitness.shape[0]
    if n < 2:
        return torch.zeros_like(fitness, dtype=torch.float32)
    ranks = torch.empty(n, dtype=torch.float32, device=fitness.device)
    order = torch.argsort(fitness, stable=True)
    ranks[order] = torch.arange(n, dtype=torch.float32, device=fitness.device)
    return ranks / (n - 1) - 0.5


def normalized(fitness: Tensor, eps: float = 1e-8) -> Tensor:
    """Fitness minus its mean over its standard deviation, [P]."""
    fitness = fitness.float()
    return (fitness - fitness.mean()) / (fitness.std(unbiased=False) + eps)
