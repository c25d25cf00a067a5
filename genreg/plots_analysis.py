"""Analysis figures (matplotlib, Agg): UMAP scatters (single, side by side), curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


@dataclass(frozen=True)
class Panel:
    """One UMAP scatter: points [N, 2], their true labels [N], and a title."""

    embedding: np.ndarray
    labels: np.ndarray
    title: str


def umap_png(path: Path, panel: Panel, class_names: Sequence[str]) -> None:
    """A single UMAP scatter coloured by class, with a legend of class names."""
    umap_compare_png(path, [panel], class_names)


def umap_compare_png(
    path: Path, panels: Sequence[Panel], class_names: Sequence[str]
) -> None:
    """UMAP scatters side by side (one per model), sharing one class legend."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n + 1.4, 5.2), dpi=110, squeeze=False)
    colours = _class_colours(len(class_names))
    size = 2.0 if max(len(p.labels) for p in panels) > 3000 else 8.0
    for ax, panel in zip(axes[0], panels, strict=True):
        for c, name in enumerate(class_names):
            points = panel.embedding[panel.labels == c]
            ax.scatter(
                points[:, 0],
                points[:, 1],
                s=size,
                color=colours[c],
                label=name,
                linewidths=0,
                alpha=0.8,
            )
        ax.set_title(panel.title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color=colours[c], label=name)
        for c, name in enumerate(class_names)
    ]
    fig.legend(
        handles=handles,
        loc="center right",
        title="class",
        fontsize=8,
        ncol=1 if len(class_names) <= 13 else 2,
    )
    fig.tight_layout(rect=(0, 0, 1 - 1.2 / (5.2 * n + 1.4), 1))
    _save(fig, path)


def curves_png(
    path: Path,
    per_generation: Mapping[str, Sequence[float]],
    validation: Mapping[str, Sequence[float]],
    title: str,
) -> None:
    """Trust max/mean per generation (top) and validation accuracy (bottom)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), dpi=110, sharex=True)
    gens = per_generation.get("generation", [])
    for key, colour in (("trust_max", "tab:red"), ("trust_mean", "tab:blue")):
        if key in per_generation:
            top.plot(gens, per_generation[key], color=colour, label=key, linewidth=1)
    top.set_ylabel("trust")
    top.set_yscale("symlog")  # trust spans signs and orders of magnitude
    top.legend(loc="upper left")
    top.set_title(title)
    val_gens = validation.get("generation", [])
    for key, style in (("val_accuracy", "-"), ("best_val_accuracy", "--")):
        if key in validation:
            bottom.plot(val_gens, validation[key], style, label=key, linewidth=1)
    bottom.set_xlabel("generation")
    bottom.set_ylabel("validation accuracy")
    bottom.set_ylim(0, 1)
    bottom.legend(loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def _class_colours(num_classes: int) -> list:
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
    if num_classes <= 20:
        return [cmap(i) for i in range(num_classes)]
    return [plt.get_cmap("gist_ncar")(i / num_classes) for i in range(num_classes)]


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
