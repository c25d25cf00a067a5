"""OpenAI-ES with low-rank noise on the first layer, evaluated without dense genomes.

Member j < P/2 perturbs the 784 x H first-layer matrix by +sigma/sqrt(r) A_j B_j^T
(A_j [I, r], B_j [H, r]) and member j + P/2 by minus that; the small rest of the
genome (b1, W2, b2) gets dense mirrored noise, or, with `w2_noise: lowrank`, W2 gets
u_j v_j^T / sqrt(r) (u_j [H, r], v_j [C, r]) and only the biases dense noise.
The population is never materialised:
x @ (W + s A B^T) = x @ W + s (x @ A) B^T, so the 784 x H product is computed once for
the center and each member pays only for rank-r products (EGGROLL's trick [1]). The
search gradient sum_j w_j A_j B_j^T is still full rank: one [I, P r] @ [P r, H] GEMM.

Everything else (centred ranks, Adam, weight decay, seeds in the state, `replay`) is
OpenES's. The rank and the population may change over the run
(`noise_rank_final`, `population_final`): both are functions of the generation.

[1] Sarkar et al., "Evolution Strategies at the Hyperscale", 2025 (EGGROLL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor

from genreg.config import LowRankESConfig
from genreg.model import BatchedMLP
from genreg.strategies.distribution import interpolated
from genreg.strategies.open_es import OpenES, OpenESState


@dataclass(frozen=True)
class LowRankPopulation:
    """P mirrored members around `center`, held as their noise factors.

    a [I, P/2 * r] and b [P/2 * r, H]: member j's first-layer factors are the columns
    j*r..(j+1)*r of a and the rows j*r..(j+1)*r of b. rest [P/2, D - I*H]: dense noise
    on b1, W2 and b2.
    """

    model: BatchedMLP
    center: Tensor
    sigma: float
    rank: int
    a: Tensor
    b: Tensor
    rest: Tensor

    def __len__(self) -> int:
        return 2 * len(self.rest)

    def forward(self, x: Tensor) -> Tensor:
        """Logits [P, B, C] of every member on the shared images x [B, I]."""
        i, h = self.model.num_inputs, self.model.hidden
        half, r = len(self.rest), self.rank
        w1 = self.center[: i * h].view(i, h)
        b1, w2, b2 = self.model.rest_layers(self.center[i * h :])
        nb1, nw2, nb2 = self.model.rest_layers(self.rest)
        base = torch.addmm(b1, x, w1)  # [B, H], once for all members
        xa = (x @ self.a).view(len(x), half, r).transpose(0, 1)  # [P/2, B, r]
        delta = torch.bmm(xa, self.b.view(half, r, h)).mul_(self.sigma / math.sqrt(r))
        delta.add_(nb1.unsqueeze(1), alpha=self.sigma)  # [P/2, B, H]
        hidden = torch.cat([base + delta, delta.neg_().add_(base)]).tanh_()
        w2s = torch.cat([w2 + self.sigma * nw2, w2 - self.sigma * nw2])
        b2s = torch.cat([b2 + self.sigma * nb2, b2 - self.sigma * nb2])
        return torch.baddbmm(b2s.unsqueeze(1), hidden, w2s)

    def dense(self) -> Tensor:
        """The members as flat genomes [P, D] (for tests and inspection; large)."""
        i, h = self.model.num_inputs, self.model.hidden
        half, r = len(self.rest), self.rank
        a = self.a.view(i, half, r)
        b = self.b.view(half, r, h)
        e1 = torch.einsum("ijr,jrh->jih", a, b).reshape(half, i * h) / math.sqrt(r)
        eps = torch.cat([e1, self.rest], dim=1)
        return torch.cat(
            [self.center + self.sigma * eps, self.center - self.sigma * eps]
        )


class LowRankES(OpenES):
    """OpenES whose first-layer noise has rank `strategy.noise_rank`."""

    config: LowRankESConfig
    config_class: ClassVar[type] = LowRankESConfig
    needs_model: ClassVar[bool] = True

    def ask_seeded(
        self, state: OpenESState, seed: int
    ) -> tuple[LowRankPopulation, OpenESState]:
        model = self.model
        assert model is not None  # needs_model: checked by the constructor
        t = state.generation
        half, r = self.population_at(t) // 2, self.rank_at(t)
        i, h = model.num_inputs, model.hidden
        device = state.center.device
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        a = torch.randn(i, half * r, generator=gen, device=device)
        b = torch.randn(half * r, h, generator=gen, device=device)
        rest = torch.randn(half, self.num_params - i * h, generator=gen, device=device)
        if self.config.w2_noise == "lowrank":
            _, w2, _ = model.rest_layers(rest)
            u = torch.randn(half, h, r, generator=gen, device=device)
            v = torch.randn(half, r, model.num_outputs, generator=gen, device=device)
            torch.bmm(u, v, out=w2).div_(math.sqrt(r))
        population = LowRankPopulation(
            model, state.center, self.stdev(state), r, a, b, rest
        )
        return population, replace(state, noise_seed=seed)

    def population_at(self, generation: int) -> int:
        """Population size at `generation`: even, moving to `population_final`."""
        cfg = self.config
        pop = interpolated(
            cfg.population_size,
            cfg.population_final,
            generation,
            cfg.schedule_generations,
        )
        return max(2, pop - pop % 2)

    def rank_at(self, generation: int) -> int:
        """Noise rank at `generation`, moving to `noise_rank_final`."""
        cfg = self.config
        return interpolated(
            cfg.noise_rank,
            cfg.noise_rank_final,
            generation,
            cfg.schedule_generations,
        )

    def gradient(
        self, genomes: LowRankPopulation, weights: Tensor, sigma: float
    ) -> Tensor:
        pop, r = len(genomes), genomes.rank
        scale = 1.0 / (sigma * pop)
        g1 = (genomes.a * weights.repeat_interleave(r)) @ genomes.b
        g_rest = weights[None] @ genomes.rest
        return torch.cat([g1.flatten() / math.sqrt(r), g_rest[0]]) * scale
