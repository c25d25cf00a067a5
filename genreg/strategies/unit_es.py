"""OpenAI-ES whose every member perturbs one hidden unit: a cheap member on a CPU.

Pair j (members j and j + P/2) perturbs hidden unit u_j only (its I input weights, its
bias, its C output weights) by +-sigma times normals, plus mirrored noise on all of b2.
Units are dealt out in turn from a random offset each generation, so every unit gets
P/2H pairs. A member's logits are then the center's plus a change on one unit:

    logits = L0 - W2[u] h_u + (W2[u] +- s n2) tanh(z_u +- s (a . x + n1)) +- s nb2

so the members' first layers are one [P/2, I] @ [I, B] GEMM, and no member needs its
own [H, B] hidden layer or readout (`lowrank_es` computes both). On a 2-core CPU a
`fast`-sized generation takes about a third of a `lowrank_es` one (docs/es_push.md).

The input-weight noise a_j is a window of a fixed table of normals (`noise_table`):
rows of one generation are disjoint windows at a seeded start and stride, a view, not a
copy. The search gradient is unbiased for every weight (the unit blocks are scaled by
H, as each is perturbed by 1/H of the pairs). Everything else (centred ranks or
normalised fitness, Adam, schedules, seeds in the state, `replay`) is OpenES's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor

from genreg.config import UnitESConfig
from genreg.model import BatchedMLP
from genreg.noise import noise_table
from genreg.strategies.open_es import OpenES, OpenESState

# noise table size: at least this, or twice what a generation's windows span
TABLE_MIN = 2**22
STRIDE_SPREAD = 64  # the window stride is I + [0, STRIDE_SPREAD)


@dataclass(frozen=True)
class UnitPopulation:
    """P mirrored members around `center`, each pair perturbing hidden unit `units[j]`.

    a [P/2, I]: input-weight noise; rest [P/2, 1 + 2C]: noise on the unit's bias, its
    output weights, and b2.
    """

    model: BatchedMLP
    center: Tensor
    sigma: float
    units: Tensor
    a: Tensor
    rest: Tensor

    def __len__(self) -> int:
        return 2 * len(self.units)

    def forward(self, x: Tensor) -> Tensor:
        """Logits [P, B, C] of every member on the shared images x [B, I].

        A view of [P, C, B] storage: reductions over the classes (logsumexp, amax)
        run along contiguous images, several times faster on a CPU than over a last
        dimension of 10.
        """
        i, h, c = self.model.num_inputs, self.model.hidden, self.model.num_outputs
        s, u, n = self.sigma, self.units, len(x)
        half = len(u)
        w1 = self.center[: i * h].view(i, h)
        b1, w2, b2 = self.model.rest_layers(self.center[i * h :])
        z = torch.addmm(b1.unsqueeze(1), w1.t(), x.t())  # [H, B]
        hidden = torch.tanh(z)
        center_logits = torch.addmm(b2.unsqueeze(1), w2.t(), hidden)  # [C, B]
        dz = torch.addmm(self.rest[:, :1], self.a, x.t()).mul_(s)  # [P/2, B]
        z_u, h_u, w2_u = z[u], hidden[u], w2[u]  # [P/2, B], [P/2, B], [P/2, C]
        n2 = self.rest[:, 1 : 1 + c] * s
        nb2 = self.rest[:, 1 + c :].mul(s).unsqueeze(2)  # [P/2, C, 1]
        h_new = torch.stack([z_u + dz, z_u - dz]).tanh_()  # [2, P/2, B]
        w_new = torch.stack([w2_u + n2, w2_u - n2])  # [2, P/2, C]
        # the center's logits without unit u's term: [P/2, C, B]
        base = torch.addcmul(
            center_logits, w2_u.unsqueeze(2), h_u.unsqueeze(1), value=-1
        )
        logits = x.new_empty(2, half, c, n)
        torch.add(base, nb2, out=logits[0])
        torch.sub(base, nb2, out=logits[1])
        logits.addcmul_(w_new.unsqueeze(3), h_new.unsqueeze(2))
        return logits.view(2 * half, c, n).transpose(1, 2)

    def dense(self) -> Tensor:
        """The members as flat genomes [P, D] (for tests and inspection; large)."""
        c = self.model.num_outputs
        half = len(self.units)
        eps = self.center.new_zeros(half, self.model.num_params)
        w1, b1, w2, b2 = self.model.layers(eps)
        rows = torch.arange(half, device=eps.device)
        w1[rows, :, self.units] = self.a
        b1[rows, self.units] = self.rest[:, 0]
        w2[rows, self.units] = self.rest[:, 1 : 1 + c]
        b2.copy_(self.rest[:, 1 + c :])
        return torch.cat(
            [self.center + self.sigma * eps, self.center - self.sigma * eps]
        )


class UnitES(OpenES):
    """OpenES with one-hidden-unit noise per mirrored pair (module docstring)."""

    config: UnitESConfig
    config_class: ClassVar[type] = UnitESConfig
    needs_model: ClassVar[bool] = True

    def ask_seeded(
        self, state: OpenESState, seed: int
    ) -> tuple[UnitPopulation, OpenESState]:
        model = self.model
        assert model is not None  # needs_model: checked by the constructor
        i, h, c = model.num_inputs, model.hidden, model.num_outputs
        half = self.config.population_size // 2
        device = state.center.device
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        draws = torch.randint(0, 2**62, (3,), generator=gen, device=device).tolist()
        offset, stride = draws[0] % h, i + draws[1] % STRIDE_SPREAD
        span = half * (i + STRIDE_SPREAD)
        table = noise_table(max(TABLE_MIN, 2 * span), str(device))
        start = draws[2] % (len(table) - half * stride + 1)
        a = table.as_strided((half, i), (stride, 1), start)
        units = (torch.arange(half, device=device) + offset) % h
        rest = torch.randn(half, 1 + 2 * c, generator=gen, device=device)
        population = UnitPopulation(
            model, state.center, self.stdev(state), units, a, rest
        )
        return population, replace(state, noise_seed=seed)

    def gradient(
        self, genomes: UnitPopulation, weights: Tensor, sigma: float
    ) -> Tensor:
        model = self.model
        assert model is not None
        i, h, c = model.num_inputs, model.hidden, model.num_outputs
        u = genomes.units
        weighted = genomes.rest * weights.unsqueeze(1)
        g_w1 = weights.new_zeros(h, i).index_add_(0, u, genomes.a * weights[:, None])
        g_b1 = weights.new_zeros(h).index_add_(0, u, weighted[:, 0])
        g_w2 = weights.new_zeros(h, c).index_add_(0, u, weighted[:, 1 : 1 + c])
        unit_blocks = torch.cat([g_w1.t().flatten(), g_b1, g_w2.flatten()]).mul_(h)
        grad = torch.cat([unit_blocks, weighted[:, 1 + c :].sum(0)])
        return grad / (sigma * len(genomes))
