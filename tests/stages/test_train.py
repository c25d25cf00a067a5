"""Real-MNIST training: learning, exact resume, byte-identical checkpoints, the time
budget, numpy == torch, best by validation.

All but the learning test run on `small_mnist` (600 real images, committed)."""

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


def test_resume_equals_uninterrupted(small_mnist: Path, tmp_path: Path) -> None:
    full = train(tiny(), small_mnist, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):  # after generation 5; last checkpoint: 3
        train(tiny(), small_mnist, tmp_path / "split", callbacks=[InterruptAt(4)])
    metrics_csv = tmp_path / "split" / "metrics.csv"
    before = metrics_csv.read_text().splitlines()  # written with the checkpoint
    resumed = train(tiny(), small_mnist, tmp_path / "split", resume=True)
    assert resumed.best_val_accuracy == full.best_val_accuracy
    assert resumed.best_generation == full.best_generation
    for name in ("last.npz", "best.npz"):  # the same bytes, as if never interrupted
        a = (tmp_path / "full" / "checkpoints" / name).read_bytes()
        assert a == (tmp_path / "split" / "checkpoints" / name).read_bytes(), name
    # the checkpoint holds no timing: the restored generations keep the seconds
    # metrics.csv had for them, the new ones get their own
    rows = metrics_csv.read_text().splitlines()
    assert rows[0].endswith(",seconds_per_generation") and len(before) == 4
    assert rows[:4] == before and all(r.split(",")[-1] for r in rows[1:])
    assert resumed.seconds_per_generation > 0


def test_same_seed_same_bytes(small_mnist: Path, tmp_path: Path) -> None:
    """Checkpoints hold no timestamps or timings: equal params give equal files."""
    cfg = tiny(**{"train.num_generations": 3})
    train(cfg, small_mnist, tmp_path / "a")
    train(cfg, small_mnist, tmp_path / "b")
    train(with_overrides(cfg, {"seed": 1}), small_mnist, tmp_path / "c")

    def read(run: str, name: str) -> bytes:
        return (tmp_path / run / "checkpoints" / name).read_bytes()

    for name in ("last.npz", "best.npz"):
        assert read("a", name) == read("b", name), name
        assert read("a", name) != read("c", name), name
    history = json.loads(
        read_npz(tmp_path / "a" / "checkpoints" / "last.npz")["history_json"].tobytes()
    )
    assert len(history) == 3 and "seconds_per_generation" not in history[0]
    assert "seconds_per_generation" in (tmp_path / "a" / "metrics.csv").read_text()


def test_max_seconds_stops_cleanly_and_resumes(
    small_mnist: Path, tmp_path: Path
) -> None:
    budget = tiny(**{"train.num_generations": 100_000, "train.max_seconds": 1.0})
    summary = train(budget, small_mnist, tmp_path)
    assert summary.stop_reason == "max_seconds"
    assert 0 < summary.num_generations < 100_000
    assert 0 < summary.wall_seconds < 30  # generation time only, not checkpoints
    done = summary.num_generations
    last = read_npz(tmp_path / "checkpoints" / "last.npz")
    assert int(last["generation"]) == done  # the stopping generation is checkpointed
    val_rows = (tmp_path / "val_curve.csv").read_text().splitlines()
    assert val_rows[-1].startswith(f"{done - 1},")  # and validated
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["stop_reason"] == "max_seconds"
    more = tiny(**{"train.num_generations": done + 2})  # another budget: resumable
    resumed = train(more, small_mnist, tmp_path, resume=True)
    assert resumed.stop_reason == "num_generations"
    assert resumed.num_generations == done + 2


def test_resume_refuses_other_params(small_mnist: Path, tmp_path: Path) -> None:
    train(tiny(**{"train.num_generations": 2}), small_mnist, tmp_path)
    with pytest.raises(CheckpointError, match="strategy.mutation_scale"):
        train(
            tiny(**{"strategy.mutation_scale": 0.5}),
            small_mnist,
            tmp_path,
            resume=True,
        )
    with pytest.raises(CheckpointError, match="--resume"):
        train(tiny(), small_mnist, tmp_path)


def test_resume_refuses_a_checkpoint_older_than_per_strategy_configs(
    small_mnist: Path, tmp_path: Path
) -> None:
    train(tiny(**{"train.num_generations": 2}), small_mnist, tmp_path)
    last = tmp_path / "checkpoints" / "last.npz"
    arrays = {**read_npz(last), "format_version": np.array(2)}
    np.savez(last, **arrays)
    with pytest.raises(CheckpointError, match="predates per-strategy configs") as exc:
        train(tiny(**{"train.num_generations": 3}), small_mnist, tmp_path, resume=True)
    assert str(last) in str(exc.value)


def test_numpy_evaluation_equals_torch(small_mnist: Path, tmp_path: Path) -> None:
    train(tiny(**{"train.num_generations": 2}), small_mnist, tmp_path / "run")
    genome = load_genome(tmp_path / "run" / "checkpoints" / "best.npz")
    test = np.load(small_mnist / "test.npz")
    images, labels = test["images"], test["labels"]
    x = to_inputs(images)
    torch_logits = genome.model.forward(torch.from_numpy(genome.weights), x)[0].numpy()
    numpy_logits = logits_numpy(genome.model, genome.weights, x.numpy())
    np.testing.assert_allclose(numpy_logits, torch_logits, rtol=1e-4, atol=1e-4)
    metrics = evaluate(
        tiny(),
        small_mnist,
        tmp_path / "run" / "checkpoints" / "best.npz",
        tmp_path / "eval",
    )
    expected = float((torch_logits.argmax(1) == labels).mean())
    assert metrics["test_accuracy"] == pytest.approx(expected)
    assert set(metrics["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000
    assert len((tmp_path / "eval" / "predictions.csv").read_text().splitlines()) == 101


def test_best_genome_chosen_on_validation(small_mnist: Path, tmp_path: Path) -> None:
    summary = train(tiny(), small_mnist, tmp_path)
    val = [r for r in (tmp_path / "val_curve.csv").read_text().splitlines()[1:]]
    accuracies = [float(r.split(",")[1]) for r in val]
    assert summary.best_val_accuracy == pytest.approx(max(accuracies))
    genome = load_genome(tmp_path / "checkpoints" / "best.npz")
    assert genome.meta["val_accuracy"] == pytest.approx(max(accuracies))
