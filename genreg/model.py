"""Batched MLP: a whole population of 784 -> H -> C tanh networks as one flat tensor.

A population is `genomes` [P, D]; `layers()` returns views (W1 [P, I, H], b1 [P, H],
W2 [P, H, C], b2 [P, C]) without copies. The images X [B, I] are shared by every
genome, so the first layer is one broadcast matmul over the whole population.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def sigmoid_readout(w2: Tensor, b2: Tensor) -> tuple[Tensor, Tensor]:
    """W2 [N, H, C] and b2 [N, C] rewritten to read sigmoid(2z) units, not tanh(z).

    tanh(z) = 2 sigmoid(2z) - 1, so tanh(z) W2 + b2 = sigmoid(2z) (2 W2) + (b2 - 1ᵀW2)
    (the same values to ~1e-6). On a CPU, sigmoid is ~6x faster than tanh. Returns the
    readout transposed, 2 W2ᵀ [N, C, H], and the bias [N, C, 1], for hidden units held
    as [N, H, B]: the product [C, H] @ [H, B] is ~4x faster than [B, H] @ [H, C] for
    C = 10.
    """
    readout = w2.transpose(-2, -1).mul(2)
    bias = (b2 - w2.sum(-2)).unsqueeze(-1)
    return readout, bias


@dataclass(frozen=True)
class BatchedMLP:
    """Shapes of a one-hidden-layer MLP and the flat-genome layout."""

    num_inputs: int
    hidden: int
    num_outputs: int

    @property
    def num_params(self) -> int:
        i, h, c = self.num_inputs, self.hidden, self.num_outputs
        return i * h + h + h * c + c

    def layers(self, genomes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Views of `genomes` [P, D] (or [D]) as weights and biases.

        W1 [P, I, H], b1 [P, H], W2 [P, H, C], b2 [P, C].
        """
        flat = genomes.unsqueeze(0) if genomes.dim() == 1 else genomes
        if flat.shape[-1] != self.num_params:
            raise ValueError(
                f"genome length {flat.shape[-1]} does not match {self.num_inputs}-"
                f"{self.hidden}-{self.num_outputs} ({self.num_params} params)"
            )
        i, h, c = self.num_inputs, self.hidden, self.num_outputs
        p = flat.shape[0]
        ends = torch.tensor([i * h, h, h * c, c]).cumsum(0).tolist()
        w1 = flat[:, : ends[0]].view(p, i, h)
        b1 = flat[:, ends[0] : ends[1]]
        w2 = flat[:, ends[1] : ends[2]].view(p, h, c)
        b2 = flat[:, ends[2] : ends[3]]
        return w1, b1, w2, b2

    def rest_layers(self, rest: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Views of a genome's part after W1 ([..., H + H*C + C]) as b1, W2, b2.

        b1 [..., H], W2 [..., H, C], b2 [..., C].
        """
        h, c = self.hidden, self.num_outputs
        lead = rest.shape[:-1]
        return rest[..., :h], rest[..., h : h + h * c].view(*lead, h, c), rest[..., -c:]

    def hidden_activations(self, genomes: Tensor, x: Tensor) -> Tensor:
        """tanh hidden layer [P, B, H] for images `x` [B, I] shared by all genomes."""
        w1, b1, _, _ = self.layers(genomes)
        return torch.tanh(torch.matmul(x, w1) + b1.unsqueeze(1))

    def forward(self, genomes: Tensor, x: Tensor) -> Tensor:
        """Logits [P, B, C] of every genome on the shared images `x` [B, I]."""
        _, _, w2, b2 = self.layers(genomes)
        hidden = self.hidden_activations(genomes, x)
        return torch.baddbmm(b2.unsqueeze(1), hidden, w2)

    def init(
        self,
        population_size: int,
        rng: torch.Generator,
        init_weight: float = 0.5,
        init_bias: float = 0.1,
    ) -> Tensor:
        """Genomes [P, D]: weights U(-init_weight, init_weight).

        Biases are U(-init_bias, init_bias).
        """
        genomes = torch.rand(
            population_size, self.num_params, generator=rng, device=rng.device
        )
        w1, b1, w2, b2 = self.layers(genomes)
        for weights in (w1, w2):
            weights.mul_(2 * init_weight).sub_(init_weight)
        for bias in (b1, b2):
            bias.mul_(2 * init_bias).sub_(init_bias)
        return genomes
