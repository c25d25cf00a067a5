"""Real-MNIST training: learning, exact resume, numpy == torch, best by validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genreg.checkpoint import CheckpointError, load_genome, read_npz
from genreg.config import Config, build_config, with_overrides
from genreg.evaluation import logits_numpy
from genreg.stages.evaluate import evaluate
from genreg.stages.train import train
from genreg.task import to_inputs

TINY = {
    "strategy.population_size": 20,
    "model.hidden": 16,
    "train.num_generations": 6,
    "train.images_per_class": 4,
    "train.eval_every": 2,
    "train.checkpoint_every": 3,
    "train.val_images": 500,
}


def tiny(**overrides: object) -> Config:
    return with_overrides(Config(), {**TINY, **overrides})


def test_short_run_learns(prepared_mnist: Path, tmp_path: Path) -> None:
    cfg = with_overrides(
        build_config({"preset": "genreg-paper"}),
        {"train.num_generations": 40, "train.eval_every": 10, "train.val_images": 2000},
    )
    summary = train(cfg, prepared_mnist, tmp_path)
    assert summary.best_val_accuracy > 0.25  # chance is 0.10
    assert summary.num_generations == 40
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 41 and rows[0].startswith("generation,trust_max")
    val_rows = (tmp_path / "val_curve.csv").read_text().splitlines()
    assert len(val_rows) == 5


class InterruptAt:
    def __init__(self, generation: int) -> None:
        self.generation = generation

    def on_generation(self, generation: int, metrics: object) -> None:
        if generation == self.generation:
            raise KeyboardInterrupt


def test_resume_equals_uninterrupted(prepared_mnist: Path, tmp_path: Path) -> None:
    full = train(tiny(), prepared_mnist, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):  # after generation 5; last checkpoint: 3
        train(tiny(), prepared_mnist, tmp_path / "split", callbacks=[InterruptAt(4)])
    resumed = train(tiny(), prepared_mnist, tmp_path / "split", resume=True)
    assert resumed.best_val_accuracy == full.best_val_accuracy
    assert resumed.best_generation == full.best_generation
    a = read_npz(tmp_path / "full" / "checkpoints" / "last.npz")
    b = read_npz(tmp_path / "split" / "checkpoints" / "last.npz")
    for key in ("state/genomes", "state/trust", "best_genome", "rng/batch"):
        np.testing.assert_array_equal(a[key], b[key])
    assert _history(a) == _history(b)


def _history(arrays: dict[str, np.ndarray]) -> list[dict[str, float]]:
    rows = json.loads(arrays["history_json"].tobytes())
    return [{k: v for k, v in r.items() if k != "seconds_per_generation"} for r in rows]


def test_same_seed_same_run(prepared_mnist: Path, tmp_path: Path) -> None:
    cfg = tiny(**{"train.num_generations": 3})
    train(cfg, prepared_mnist, tmp_path / "a")
    train(cfg, prepared_mnist, tmp_path / "b")
    train(with_overrides(cfg, {"seed": 1}), prepared_mnist, tmp_path / "c")

    def load(name):
        return read_npz(tmp_path / name / "checkpoints" / "last.npz")["state/genomes"]

    np.testing.assert_array_equal(load("a"), load("b"))
    assert not np.array_equal(load("a"), load("c"))


def test_resume_refuses_other_params(prepared_mnist: Path, tmp_path: Path) -> None:
    train(tiny(**{"train.num_generations": 2}), prepared_mnist, tmp_path)
    with pytest.raises(CheckpointError, match="strategy.mutation_scale"):
        train(
            tiny(**{"strategy.mutation_scale": 0.5}),
            prepared_mnist,
            tmp_path,
            resume=True,
        )
    with pytest.raises(CheckpointError, match="--resume"):
        train(tiny(), prepared_mnist, tmp_path)


def test_numpy_evaluation_equals_torch(prepared_mnist: Path, tmp_path: Path) -> None:
    train(tiny(**{"train.num_generations": 2}), prepared_mnist, tmp_path / "run")
    genome = load_genome(tmp_path / "run" / "checkpoints" / "best.npz")
    test = np.load(prepared_mnist / "test.npz")
    images, labels = test["images"][:500], test["labels"][:500]
    x = to_inputs(images)
    torch_logits = genome.model.forward(torch.from_numpy(genome.weights), x)[0].numpy()
    numpy_logits = logits_numpy(genome.model, genome.weights, x.numpy())
    np.testing.assert_allclose(numpy_logits, torch_logits, rtol=1e-4, atol=1e-4)
    metrics = evaluate(
        tiny(),
        prepared_mnist,
        tmp_path / "run" / "checkpoints" / "best.npz",
        tmp_path / "eval",
    )
    expected = float((torch_logits.argmax(1) == labels).mean())
    assert abs(metrics["test_accuracy"] - expected) < 0.1  # 500 of 10k images
    assert set(metrics["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000
    assert (
        len((tmp_path / "eval" / "predictions.csv").read_text().splitlines()) == 10001
    )


def test_best_genome_chosen_on_validation(prepared_mnist: Path, tmp_path: Path) -> None:
    summary = train(tiny(), prepared_mnist, tmp_path)
    val = [r for r in (tmp_path / "val_curve.csv").read_text().splitlines()[1:]]
    accuracies = [float(r.split(",")[1]) for r in val]
    assert summary.best_val_accuracy == pytest.approx(max(accuracies))
    genome = load_genome(tmp_path / "checkpoints" / "best.npz")
    assert genome.meta["val_accuracy"] == pytest.approx(max(accuracies))
