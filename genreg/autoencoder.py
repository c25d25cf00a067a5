"""The evolved MNIST autoencoder of a second post (see docs/autoencoder.md).

A mirrored 784-128-64-12-3 encoder and 3-12-64-128-784 decoder (219,891 weights),
tanh between layers, a linear 3-D code and a linear output. Inputs are images minus
the mean training image (the post's trick: otherwise evolution first spends its time
finding the mean image), and fitness is the negative reconstruction MSE on a batch
shared by the whole population. The runner, strategies and checkpoints are the same
ones the classifier uses; only the model and the task differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genreg.metric_names import TRAIN_MSE_BEST, TRAIN_MSE_MEAN, VAL_MSE

ENCODER = (784, 128, 64, 12, 3)


def mirrored_sizes(encoder: tuple[int, ...] = ENCODER) -> tuple[int, ...]:
    """Layer widths of the encoder followed by its mirror image as the decoder."""
    return encoder + encoder[-2::-1]


@dataclass(frozen=True)
class BatchedAutoencoder:
    """A population of deep MLPs over flat genomes [P, D], layer by layer.

    `sizes` are the layer widths; layer k maps sizes[k] -> sizes[k+1]. Every layer but
    the code layer (its output is `sizes[code]`) and the last applies tanh.
    """

    sizes: tuple[int, ...]

    @property
    def code(self) -> int:
        """Index in `sizes` of the narrowest layer, the code."""
        return self.sizes.index(min(self.sizes))

    @property
    def num_params(self) -> int:
        return sum(a * b + b for a, b in zip(self.sizes, self.sizes[1:]))

    def layers(self, genomes: Tensor) -> list[tuple[Tensor, Tensor]]:
        """(W [P, in, out], b [P, out]) views of genomes [P, D] (or [D]), in order."""
        flat = genomes.unsqueeze(0) if genomes.dim() == 1 else genomes
        if flat.shape[-1] != self.num_params:
            raise ValueError(
                f"genome length {flat.shape[-1]} does not match the autoencoder "
                f"{'-'.join(map(str, self.sizes))} ({self.num_params} params)"
            )
        out, start, p = [], 0, flat.shape[0]
        for a, b in zip(self.sizes, self.sizes[1:]):
            w = flat[:, start : start + a * b].view(p, a, b)
            bias = flat[:, start + a * b : start + a * b + b]
            out.append((w, bias))
            start += a * b + b
        return out

    def _run(self, genomes: Tensor, x: Tensor, stop: int) -> Tensor:
        h = x
        for k, (w, b) in enumerate(self.layers(genomes)[:stop], start=1):
            h = torch.matmul(h, w) + b.unsqueeze(1)  # x [B, I] broadcasts over P
            if k not in (self.code, len(self.sizes) - 1):
                h = torch.tanh(h)
        return h

    def forward(self, genomes: Tensor, x: Tensor) -> Tensor:
        """Reconstructions [P, B, I] of the shared inputs x [B, I]."""
        return self._run(genomes, x, len(self.sizes) - 1)

    def encode(self, genomes: Tensor, x: Tensor) -> Tensor:
        """Codes [P, B, sizes[code]] of inputs x [B, I]."""
        return self._run(genomes, x, self.code)

    def init(self, population_size: int, rng: torch.Generator) -> Tensor:
        """Genomes [P, D]: each layer U(-1/sqrt(fan_in), 1/sqrt(fan_in)), like torch.

        The classifier's U(-0.5, 0.5) would saturate every tanh of a 784-wide layer.
        """
        genomes = torch.rand(
            population_size, self.num_params, generator=rng, device=rng.device
        )
        for w, b in self.layers(genomes):
            bound = 1.0 / math.sqrt(w.shape[1])
            for part in (w, b):
                part.mul_(2 * bound).sub_(bound)
        return genomes


def mse(outputs: Tensor, target: Tensor) -> Tensor:
    """Mean squared error [P] of outputs [P, B, I] against target [B, I]."""
    return (outputs - target).square().mean(dim=(1, 2))


def neg_mse(outputs: Tensor, target: Tensor, rng: torch.Generator) -> Tensor:
    """Fitness [P], higher is better: minus the reconstruction MSE."""
    return -mse(outputs, target)


@dataclass
class ReconstructionTask:
    """Mean-subtracted training pool and validation set; a random shared batch."""

    model: BatchedAutoencoder
    train_x: Tensor  # [N, I], already minus `mean_image`
    val_x: Tensor  # [V, I], already minus `mean_image`
    mean_image: Tensor  # [I], of the training pool
    batch_size: int
    val_metric = VAL_MSE
    higher_is_better = False

    @classmethod
    def from_images(
        cls,
        model: BatchedAutoencoder,
        train_x: Tensor,
        val_x: Tensor,
        batch_size: int,
    ) -> ReconstructionTask:
        """Task from raw inputs [N, I] in [0, 1]; subtracts the training mean image."""
        mean_image = train_x.mean(0)
        return cls(
            model, train_x - mean_image, val_x - mean_image, mean_image, batch_size
        )

    def sample_batch(self, rng: torch.Generator) -> tuple[Tensor, Tensor]:
        """`batch_size` random training images as both input and target."""
        order = torch.randperm(len(self.train_x), generator=rng, device=rng.device)
        x = self.train_x[order[: self.batch_size]]
        return x, x

    def batch_metrics(self, outputs: Tensor, target: Tensor) -> dict[str, float]:
        errors = mse(outputs, target)
        return {
            TRAIN_MSE_BEST: errors.min().item(),
            TRAIN_MSE_MEAN: errors.mean().item(),
        }

    def validate(self, genome: Tensor) -> float:
        return self.val_mse(genome, self.val_x)

    def val_mse(self, genome: Tensor, x: Tensor, chunk: int = 2500) -> float:
        """Reconstruction MSE of one genome [D] on mean-subtracted images x [N, I]."""
        total = 0.0
        for start in range(0, len(x), chunk):
            part = x[start : start + chunk]
            total += mse(self.model.forward(genome, part), part).item() * len(part)
        return total / len(x)

    def reconstruct(self, genome: Tensor, images: Tensor) -> Tensor:
        """Reconstructions [N, I] in pixel space of raw images [N, I] in [0, 1]."""
        centred = images - self.mean_image
        return (self.model.forward(genome, centred)[0] + self.mean_image).clamp(0, 1)
