"""Static PNG figures (matplotlib, Agg backend).

Confusion matrix, per-class bars, curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_png(
    path: Path, confusion: np.ndarray, class_names: Sequence[str], title: str
) -> None:
    """Confusion matrix [C, C] (rows true, columns predicted) as a labelled heat map."""
    c = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * c, 0.8 + 0.5 * c), dpi=110)
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(c), class_names)
    ax.set_yticks(range(c), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if c <= 26:
        threshold = confusion.max() / 2
        for (i, j), n in np.ndenumerate(confusion):
            color = "white" if n > threshold else "black"
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    _save(fig, path)


def per_class_png(
    path: Path, accuracies: Sequence[float], class_names: Sequence[str], title: str
) -> None:
    """Accuracy per class as a bar chart with the overall mean marked."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(class_names)), 3.2), dpi=110)
    ax.bar(range(len(accuracies)), accuracies, color="tab:blue")
    ax.axhline(
        float(np.mean(accuracies)), color="tab:red", linestyle="--", label="mean"
    )
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
