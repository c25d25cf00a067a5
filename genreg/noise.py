"""Seed-based noise: a generation's perturbations are a function of one 62-bit seed.

A strategy state then stores the seed, not the [P, D] noise; a run is reproducible from
the initial genome, the per-generation seeds and the fitness vectors (see `replay`).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

TABLE_SEED = 20170310  # fixed: a table offset means the same noise in every run


def draw_seed(rng: torch.Generator) -> int:
    """A fresh seed from the strategy's generator."""
    return int(torch.randint(0, 2**62, (1,), generator=rng, device=rng.device).item())


@functools.lru_cache(maxsize=2)
def noise_table(size: int, device: str = "cpu") -> Tensor:
    """A fixed table of `size` standard normals shared by all runs (OpenAI ES trick).

    Drawing P/2 slices of it is much cheaper than P/2 * D fresh normals per generation.
    """
    gen = torch.Generator(device=device)
    gen.manual_seed(TABLE_SEED)
    return torch.randn(size, generator=gen, device=device)


def mirrored_population(
    center: Tensor, stdev: Tensor | float, seed: int, pop: int, table_size: int = 0
) -> Tensor:
    """[center + stdev * eps; center - stdev * eps] [pop, D] with eps drawn from `seed`.

    eps is fresh normals, or, when `table_size` > 0, slices of `noise_table` at offsets
    drawn from `seed`. One preallocated buffer avoids the temporaries of a `cat`.
    """
    half, dim = pop // 2, center.shape[0]
    out = torch.empty(pop, dim, device=center.device)
    gen = torch.Generator(device=center.device)
    gen.manual_seed(seed)
    if table_size:
        if table_size < dim:
            raise ValueError(
                f"strategy.noise_table_size: {table_size} < genome size {dim}"
            )
        table = noise_table(table_size, str(center.device))
        offsets = torch.randint(
            0, table_size - dim + 1, (half,), generator=gen, device=gen.device
        )
        for row, offset in enumerate(offsets.tolist()):
            out[row].copy_(table[offset : offset + dim])
    else:
        torch.randn(half, dim, generator=gen, device=center.device, out=out[:half])
    out[:half].mul_(stdev)
    torch.sub(center, out[:half], out=out[half:])
    out[:half].add_(center)
    return out
