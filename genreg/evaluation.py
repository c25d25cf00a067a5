"""Pure-numpy CPU inference and classification metrics for one genome."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from genreg.model import BatchedMLP


def split_weights(
    model: BatchedMLP, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A flat genome [D] as W1 [I, H], b1 [H], W2 [H, C], b2 [C] (torch's layout)."""
    i, h, c = model.num_inputs, model.hidden, model.num_outputs
    ends = np.cumsum([i * h, h, h * c, c])
    w1 = weights[: ends[0]].reshape(i, h)
    b1 = weights[ends[0] : ends[1]]
    w2 = weights[ends[1] : ends[2]].reshape(h, c)
    b2 = weights[ends[2] : ends[3]]
    return w1, b1, w2, b2


def hidden_numpy(model: BatchedMLP, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """tanh hidden activations [N, H] of inputs x [N, I] in [0, 1]."""
    w1, b1, _, _ = split_weights(model, weights)
    return np.tanh(x @ w1 + b1)


def logits_numpy(model: BatchedMLP, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Logits [N, C] of inputs x [N, I] in [0, 1]."""
    _, _, w2, b2 = split_weights(model, weights)
    return hidden_numpy(model, weights, x) @ w2 + b2


def images_to_inputs(images: np.ndarray) -> np.ndarray:
    """uint8 images [N, H, W] -> float32 [N, H*W] in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    per_class_accuracy: list[float]
    confusion: np.ndarray  # [C, C], rows true class, columns predicted
    ms_per_image: float  # one image at a time, as a CPU deployment would run it
    num_images: int


def evaluate_numpy(
    model: BatchedMLP,
    weights: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int = 1000,
    latency_images: int = 200,
) -> Evaluation:
    """Test accuracy, per-class accuracy, confusion matrix and single-image latency."""
    x = images_to_inputs(images)
    preds = np.concatenate(
        [
            logits_numpy(model, weights, x[s : s + batch_size]).argmax(1)
            for s in range(0, len(x), batch_size)
        ]
    )
    c = model.num_outputs
    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    totals = confusion.sum(1)
    per_class = np.divide(
        np.diag(confusion), totals, out=np.zeros(c), where=totals > 0
    ).tolist()
    sample = x[: min(latency_images, len(x))]
    started = time.perf_counter()
    for row in sample:
        logits_numpy(model, weights, row[None]).argmax(1)
    ms = (time.perf_counter() - started) * 1000 / max(len(sample), 1)
    return Evaluation(
        accuracy=float((preds == labels).mean()),
        per_class_accuracy=per_class,
        confusion=confusion,
        ms_per_image=ms,
        num_images=len(labels),
    )
