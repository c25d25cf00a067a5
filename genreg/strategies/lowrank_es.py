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
from genreg.model import BatchedMLP, sigmoid_readout
from genreg.strategies.distribution import interpolated
from genreg.strategies.open_es import OpenES, OpenESState

# hidden-layer elements per CPU chunk of members, x2 for the mirrored half: 4 MB
CACHE_ELEMENTS = 2**19


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
        """Logits [P, B, C] of every member on the shared images x [B, I].

        The same values as tanh(x W1 + b1) W2 + b2 (to ~1e-6), written for speed (the
        forward of a `fast` generation on a 2-core CPU went from ~25 to ~8 ms):
        sigmoid units with the readout rewritten for them (`sigmoid_readout`), each
        member's hidden layer held as [H, B], and, on a CPU, the members taken in
        chunks whose hidden layer stays in cache.
        """
        i, h, c = self.model.num_inputs, self.model.hidden, self.model.num_outputs
        half, r, n, s = len(self.rest), self.rank, len(x), self.sigma
        w1 = self.center[: i * h].view(i, h)
        b1, w2, b2 = self.model.rest_layers(self.center[i * h :])
        nb1, nw2, nb2 = self.model.rest_layers(self.rest)
        # pre-activations times 2 (the units are sigmoid(2z)); base [H, B] once for all
        base = torch.addmm(b1.unsqueeze(1), w1.t(), x.t()).mul_(2)
        xa = (self.a.t() @ x.t()).view(half, r, n)  # [P/2, r, B]
        b_t = self.b.view(half, r, h).transpose(1, 2)  # [P/2, H, r]
        readout, bias = sigmoid_readout(
            torch.stack([w2 + s * nw2, w2 - s * nw2]),
            torch.stack([b2 + s * nb2, b2 - s * nb2]),
        )  # [2, P/2, C, H], [2, P/2, C, 1]
        chunk = half if x.device.type != "cpu" else max(1, CACHE_ELEMENTS // (h * n))
        units = x.new_empty(2, min(chunk, half), h, n)
        logits = x.new_empty(2, half, c, n)
        for lo in range(0, half, chunk):
            hi = min(lo + chunk, half)
            delta = torch.bmm(b_t[lo:hi], xa[lo:hi]).mul_(2 * s / math.sqrt(r))
            delta.add_(nb1[lo:hi].unsqueeze(2), alpha=2 * s)  # [chunk, H, B]
            part = units[:, : hi - lo]
            torch.add(base, delta, out=part[0])
            torch.sub(base, delta, out=part[1])
            part.sigmoid_()
            for sign in range(2):
                torch.baddbmm(
                    bias[sign, lo:hi],
                    readout[sign, lo:hi],
                    part[sign],
                    out=logits[sign, lo:hi],
                )
        return logits.view(2 * half, c, n).transpose(1, 2).contiguous()

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
