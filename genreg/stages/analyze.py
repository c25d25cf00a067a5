"""Analyze stage: a genome's hidden layer on the test set, embedded with UMAP.

Writes to `out_dir`: umap.png (2-D UMAP of the tanh activations, coloured by class),
separation.json (trustworthiness, k-NN accuracy in 2-D and in the hidden space,
silhouette), per_class.png (test accuracy per class) and, given the training folder,
curves.png (trust max/mean and validation accuracy per generation). `compare` puts
several genomes' UMAPs side by side in umap_compare.png.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genreg.analysis import (
    hidden_activations,
    per_class_accuracy,
    sample_indices,
    separation_scores,
    umap_embedding,
)
from genreg.checkpoint import Genome, load_genome
from genreg.config import Config
from genreg.datasets import DataError, Split, load_prepared
from genreg.evaluation import images_to_inputs, logits_numpy
from genreg.plots import per_class_png
from genreg.plots_analysis import Panel, curves_png, umap_compare_png, umap_png
from genreg.rundir import RunDir


@dataclass(frozen=True)
class Analysis:
    """One genome's embedding of the test subset and its scores."""

    genome: Genome
    panel: Panel
    scores: dict[str, Any]
    per_class: list[float]


def analyze(
    cfg: Config,
    data_dir: Path,
    genome_path: Path,
    out_dir: Path,
    *,
    train_dir: Path | None = None,
) -> dict[str, Any]:
    """Embed and score the genome in `genome_path`; returns the scores."""
    curves = (
        read_curves(train_dir) if train_dir is not None else None
    )  # fail before UMAP
    test = load_prepared(data_dir)["test"]
    result = _analyze_one(cfg, test, genome_path, data_dir)
    names = list(result.genome.class_names)
    scores = {
        **result.scores,
        "per_class_accuracy": dict(zip(names, result.per_class, strict=True)),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "separation.json", scores)
    umap_png(out_dir / "umap.png", result.panel, names)
    title = f"test accuracy {scores['test_accuracy']:.2%} (hidden {scores['hidden']})"
    per_class_png(out_dir / "per_class.png", result.per_class, names, title)
    if curves is not None:
        curves_png(out_dir / "curves.png", *curves, f"training run {train_dir}")
    return scores


def compare(
    cfg: Config, data_dir: Path, genome_paths: Sequence[Path], out_dir: Path
) -> list[dict[str, Any]]:
    """UMAPs of several genomes on the same test subset, side by side."""
    if len(genome_paths) < 2:
        raise ValueError("compare: give at least two genome files")
    test = load_prepared(data_dir)["test"]
    results = [_analyze_one(cfg, test, Path(p), data_dir) for p in genome_paths]
    names = [list(r.genome.class_names) for r in results]
    if any(n != names[0] for n in names):
        raise DataError(
            f"compare: the genomes {list(map(str, genome_paths))} differ in classes"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    umap_compare_png(out_dir / "umap_compare.png", [r.panel for r in results], names[0])
    scores = [{"checkpoint": str(p), **r.scores} for p, r in zip(genome_paths, results)]
    _write_json(out_dir / "separation_compare.json", scores)
    return scores


def _analyze_one(
    cfg: Config, test: Split, genome_path: Path, data_dir: Path
) -> Analysis:
    genome = load_genome(genome_path)
    if test.images[0].size != genome.model.num_inputs:
        raise DataError(
            f"{data_dir}: test images have {test.images[0].size} pixels, "
            f"the genome in {genome_path} expects {genome.model.num_inputs}"
        )
    logits = logits_numpy(genome.model, genome.weights, images_to_inputs(test.images))
    predictions = logits.argmax(1)
    accuracy = float((predictions == test.labels).mean())
    per_class = per_class_accuracy(predictions, test.labels, genome.model.num_outputs)
    subset = sample_indices(len(test.labels), cfg.analyze.num_samples, cfg.seed)
    hidden = hidden_activations(genome.model, genome.weights, test.images[subset])
    labels = test.labels[subset]
    a = cfg.analyze
    embedding = umap_embedding(hidden, a.n_neighbors, a.min_dist, cfg.seed)
    scores = {
        "hidden": genome.model.hidden,
        "test_accuracy": round(accuracy, 5),
        "generation": genome.meta.get("generation"),
        "val_accuracy": genome.meta.get("val_accuracy"),
        **separation_scores(hidden, embedding, labels, a.n_neighbors, cfg.seed),
    }
    title = (
        f"hidden {genome.model.hidden}: test acc {accuracy:.2%}\n"
        f"k-NN 2-D {scores['knn_accuracy_2d']:.2%}, "
        f"silhouette {scores['silhouette_2d']:.2f}"
    )
    return Analysis(genome, Panel(embedding, labels, title), scores, per_class)


def read_curves(
    train_dir: Path,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Columns of a training folder's metrics.csv and val_curve.csv, as floats."""
    run = RunDir(train_dir)
    return _read_columns(run.metrics), _read_columns(run.val_curve)


def _read_columns(path: Path) -> dict[str, list[float]]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError as exc:
        raise DataError(
            f"{path}: not found; is --train-dir a `genreg train` output?"
        ) from exc
    columns: dict[str, list[float]] = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value) if value else np.nan)
            except ValueError as exc:
                raise DataError(
                    f"{path}: row {i + 2}, column {key}: {value!r} not a number"
                ) from exc
    return columns


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)
