"""Evaluate stage: the best genome on the test set, in numpy on the CPU.

Writes to `out_dir`: metrics.json (test accuracy, per-class accuracy, ms per image),
predictions.csv (actual,predicted per test image: DVC's confusion plot) and
confusion.png.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from genreg.atomic import atomic_file, write_text_atomic
from genreg.checkpoint import load_genome
from genreg.config import Config
from genreg.datasets import DataError, load_prepared
from genreg.evaluation import evaluate_numpy
from genreg.plots import confusion_png, per_class_png


def evaluate(
    cfg: Config, data_dir: Path, genome_path: Path, out_dir: Path
) -> dict[str, Any]:
    """Score the genome in `genome_path` on the prepared test split; return metrics."""
    genome = load_genome(genome_path)
    test = load_prepared(data_dir)["test"]
    num_inputs = test.images[0].size
    if num_inputs != genome.model.num_inputs:
        raise DataError(
            f"{data_dir}: test images have {num_inputs} pixels, "
            f"the genome in {genome_path} expects {genome.model.num_inputs}"
        )
    result = evaluate_numpy(
        genome.model, genome.weights, test.images, test.labels, cfg.evaluate.batch_size
    )
    names = list(genome.class_names)
    metrics = {
        "test_accuracy": result.accuracy,
        "val_accuracy": genome.meta.get("val_accuracy"),
        "generation": genome.meta.get("generation"),
        "per_class_accuracy": dict(zip(names, result.per_class_accuracy, strict=True)),
        "ms_per_image": round(result.ms_per_image, 4),
        "num_images": result.num_images,
        "hidden": genome.model.hidden,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    with atomic_file(out_dir / "predictions.csv", "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        for actual, row in enumerate(result.confusion):
            for predicted, count in enumerate(row):
                writer.writerows([[names[actual], names[predicted]]] * int(count))
    title = f"test accuracy {result.accuracy:.2%}"
    confusion_png(out_dir / "confusion.png", result.confusion, names, title)
    per_class_png(out_dir / "per_class.png", result.per_class_accuracy, names, title)
    return metrics
