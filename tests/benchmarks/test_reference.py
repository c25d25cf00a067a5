"""benchmarks/reference.py: backprop on genreg's own models, beside the evolved ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genreg.autoencoder import BatchedAutoencoder, ReconstructionTask, mirrored_sizes
from genreg.datasets import load_prepared
from genreg.task import to_inputs

CHANCE = 0.1  # ten digits


def test_classifier_reference_learns_and_keeps_its_curve(
    small_mnist: Path, load_benchmark
) -> None:
    ref = load_benchmark("reference")
    settings = ref.AdamSettings(eval_every=2, patience=3, max_epochs=40)
    rows = ref.run_task("classifier", small_mnist, [0.5, 1.0], settings)

    assert [r["at"] for r in rows[:2]] == ["0.5 s", "1 s"]
    assert rows[2]["at"].startswith("plateau (of ")
    plateau = rows[2]
    epochs_run = int(plateau["at"].removeprefix("plateau (of ").split()[0])
    # at least the largest budget, however many epochs that is on this machine
    assert plateau["steps"] > 0 and plateau["epochs"] <= epochs_run
    assert plateau["val"] >= rows[1]["val"] >= rows[0]["val"]
    assert plateau["test"] > 3 * CHANCE  # 400 training images: well above chance
    assert plateau["val"] == pytest.approx(plateau["test"], abs=0.25)


def test_training_stops_at_the_plateau_and_the_budget(
    small_mnist: Path, load_benchmark
) -> None:
    ref = load_benchmark("reference")
    peers = load_benchmark("peers")
    cfg = peers.build_config({"preset": "fast", "train": {"val_images": 100}})
    task, _, _ = peers.load_task(small_mnist, cfg)
    start = peers.initial_center(task, cfg)
    # 400 images in batches of 100: four steps an epoch, validated at each end
    run = ref.classifier_reference(
        task, start, ref.AdamSettings(patience=2, max_epochs=500, eval_every=1000)
    )
    steps = [g for _, g, _ in run.curve.points]
    assert run.steps_per_epoch == 4 and steps == [4 * e for e in range(run.epochs + 1)]
    best_step = run.plateau[1]
    assert run.epochs == best_step // 4 + 2  # two epochs without a better score
    seconds = [t for t, _, _ in run.curve.points]
    assert seconds == sorted(seconds) and seconds[0] == 0 < seconds[1]

    timed = ref.classifier_reference(
        task, start, ref.AdamSettings(patience=None, max_epochs=None, max_seconds=0.3)
    )
    assert timed.curve.points[-1][0] >= 0.3  # stopped by the budget, not the epochs
    assert torch.equal(start, peers.initial_center(task, cfg))  # left untouched


def test_autoencoder_reference_lowers_validation_mse(
    small_mnist: Path, load_benchmark
) -> None:
    ref = load_benchmark("reference")
    splits = load_prepared(small_mnist)
    task = ReconstructionTask.from_images(
        BatchedAutoencoder(mirrored_sizes((784, 16, 3))),
        to_inputs(splits["train"].images),
        to_inputs(splits["val"].images),
        batch_size=50,
    )
    genome = task.model.init(1, torch.Generator().manual_seed(0))[0]
    run = ref.autoencoder_reference(
        task, genome, ref.AdamSettings(learning_rate=3e-3, max_epochs=30)
    )
    vals = [v for _, _, v in run.curve.points]
    assert not run.curve.higher_is_better
    assert run.plateau[2] == min(vals) < 0.9 * task.validate(genome)
    assert run.plateau[2] == pytest.approx(task.validate(run.curve.improvements[-1][1]))


def test_peers_table_ends_with_the_backprop_row(
    small_mnist: Path, load_benchmark
) -> None:
    peers = load_benchmark("peers")
    tiny = ["model.hidden=8", "strategy.population_size=8", "train.images_per_class=2"]
    tiny += ["train.eval_every=1", "train.val_images=100"]
    rows = peers.compare(small_mnist, [0.5, 1.0], tiny, [], backprop=True)
    assert [r["peer"] for r in rows] == ["genreg fast", "backprop (Adam)"]
    backprop = rows[-1]
    assert backprop["generations"] > 0  # Adam steps in the budget
    assert backprop["test@1s"] > 3 * CHANCE
    assert "backprop (Adam)" in peers.format_table(rows)
