"""Data-dependent, gradient-free initial genomes: a PCA first layer, a ridge readout.

`model.init: pca` sets W1's H columns to the top H principal directions of the
(centred) training images, scaled so every unit's pre-activation has standard deviation
`model.pca_std` on those images (`pca_whiten`, the default), or so that their mean
variance is `pca_std`² (keeping the eigenvalue spread); b1 = -(mean image @ W1) centres
the units. `model.readout: ridge` sets W2, b2 to the ridge regression of one-hot labels
on the tanh hidden activations (an (H+1) x (H+1) linear solve), times the temperature,
from a fixed grid, that minimises the cross-entropy on the same images: least squares
gives logits near 0..1, far too flat for a softmax. Both are closed forms: no gradient
is taken. They use `model.init_images` training images drawn from the init generator.

Only the first genome is set (the one a distribution strategy's center starts from);
the rest stay random.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import cross_entropy, one_hot

from genreg.config import ModelConfig
from genreg.model import BatchedMLP

# readout temperatures tried (log-spaced); the cross-entropy minimum lies near 10
TEMPERATURES = torch.logspace(-1, 2.5, 36).tolist()


def initial_genomes(
    model: BatchedMLP,
    cfg: ModelConfig,
    count: int,
    rng: torch.Generator,
    train_x: Tensor,
    train_y: Tensor,
) -> Tensor:
    """`count` genomes [count, D]: random, the first one data-initialised per `cfg`."""
    genomes = model.init(count, rng, cfg.init_weight, cfg.init_bias)
    if cfg.init == "uniform" and cfg.readout == "uniform":
        return genomes
    x, y = init_images(train_x, train_y, cfg.init_images, rng)
    w1, b1, w2, b2 = (layer[0] for layer in model.layers(genomes))
    if cfg.init == "pca":
        w1[:], b1[:] = pca_layer(x, model.hidden, cfg.pca_std, cfg.pca_whiten)
    if cfg.readout == "ridge":
        hidden = torch.tanh(torch.addmm(b1, x, w1))
        w2[:], b2[:] = ridge_readout(hidden, y, model.num_outputs, cfg.ridge_alpha)
    return genomes


def init_images(
    x: Tensor, y: Tensor, count: int, rng: torch.Generator
) -> tuple[Tensor, Tensor]:
    """`count` training images and labels drawn without replacement (0: all)."""
    if count == 0 or count >= len(x):
        return x, y
    picks = torch.randperm(len(x), generator=rng, device=rng.device)[:count]
    picks = picks.to(x.device)
    return x[picks], y[picks]


def pca_layer(
    x: Tensor, hidden: int, std: float, whiten: bool
) -> tuple[Tensor, Tensor]:
    """W1 [I, hidden] from the top principal directions of x [N, I]; b1 [hidden]."""
    if hidden > x.shape[1]:
        raise ValueError(
            f"model.init: 'pca' gives at most {x.shape[1]} hidden units (one per "
            f"input), model.hidden is {hidden}"
        )
    mean = x.mean(0)
    centred = x - mean
    cov = centred.T @ centred / max(len(x) - 1, 1)  # float32 GEMM: the init's cost
    eigenvalues, vectors = torch.linalg.eigh(cov.double())  # ascending
    eigenvalues = eigenvalues.flip(0)[:hidden].clamp_min(1e-12)
    vectors = vectors.flip(1)[:, :hidden]
    # eigenvectors are defined up to sign: make each one's largest entry positive
    peak = vectors.abs().argmax(0)
    vectors = (
        vectors * vectors[peak, torch.arange(hidden, device=vectors.device)].sign()
    )
    if whiten:
        w1 = vectors * (std / eigenvalues.sqrt())
    else:
        w1 = vectors * (std / eigenvalues.mean().sqrt())
    w1 = w1.to(x.dtype)
    return w1, -(mean @ w1)


def ridge_readout(
    hidden: Tensor, y: Tensor, num_classes: int, alpha: float
) -> tuple[Tensor, Tensor]:
    """W2 [H, C], b2 [C]: ridge regression of one-hot y on `hidden` [N, H], tempered.

    The bias is not penalised. The solution is scaled by the temperature of
    TEMPERATURES with the lowest cross-entropy on the same images.
    """
    n, h = hidden.shape
    design = torch.cat([hidden.double(), hidden.new_ones(n, 1, dtype=torch.float64)], 1)
    targets = one_hot(y, num_classes).double()
    penalty = torch.full((h + 1,), alpha, dtype=torch.float64, device=hidden.device)
    penalty[-1] = 0.0
    gram = design.T @ design + torch.diag(penalty)
    solution = torch.linalg.solve(gram, design.T @ targets)  # [H + 1, C]
    logits = design @ solution
    losses = [cross_entropy(logits * t, y).item() for t in TEMPERATURES]
    solution = solution * TEMPERATURES[losses.index(min(losses))]
    solution = solution.to(hidden.dtype)
    return solution[:-1], solution[-1]
