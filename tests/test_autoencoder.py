"""The evolved autoencoder: layout, mean subtraction, and real evolution on MNIST."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from genreg.autoencoder import (
    BatchedAutoencoder,
    ReconstructionTask,
    mirrored_sizes,
    neg_mse,
)
from genreg.config import STRATEGY_CONFIGS
from genreg.datasets import load_prepared
from genreg.progress import ProgressBar
from genreg.runner import RunState, make_rngs, run
from genreg.strategies import make_strategy
from genreg.task import to_inputs


def test_mirrored_784_128_64_12_3_layout() -> None:
    model = BatchedAutoencoder(mirrored_sizes())
    assert model.sizes == (784, 128, 64, 12, 3, 12, 64, 128, 784)
    assert model.num_params == 219_891 and model.code == 4
    genomes = model.init(3, torch.Generator().manual_seed(0))
    layers = model.layers(genomes)
    assert torch.equal(
        torch.cat([torch.cat([w.flatten(1), b], 1) for w, b in layers], 1), genomes
    )
    assert layers[0][0].abs().max() <= 1 / 28  # U(-1/sqrt(784), 1/sqrt(784))
    x = torch.rand(5, 784)
    assert model.forward(genomes, x).shape == (3, 5, 784)
    assert model.encode(genomes, x).shape == (3, 5, 3)
    with pytest.raises(ValueError, match="219891 params"):
        model.forward(genomes[:, :-1], x)


def small_task(prepared: Path) -> ReconstructionTask:
    splits = load_prepared(prepared)
    model = BatchedAutoencoder(mirrored_sizes((784, 16, 3)))
    return ReconstructionTask.from_images(
        model,
        to_inputs(splits["train"].images[:2000]),
        to_inputs(splits["val"].images[:300]),
        batch_size=50,
    )


def test_inputs_are_mean_subtracted(prepared_mnist: Path) -> None:
    task = small_task(prepared_mnist)
    torch.testing.assert_close(
        task.train_x.mean(0), torch.zeros(784), atol=1e-5, rtol=0
    )
    x, target = task.sample_batch(torch.Generator().manual_seed(0))
    assert x.shape == (50, 784) and torch.equal(x, target)
    genome = torch.zeros(task.model.num_params)  # outputs 0: the mean image
    images = to_inputs(load_prepared(prepared_mnist)["val"].images[:4])
    torch.testing.assert_close(
        task.reconstruct(genome, images), task.mean_image.expand(4, -1)
    )
    assert task.validate(genome) == pytest.approx(task.val_x.square().mean().item())


@pytest.mark.parametrize("name", ["open_es", "simple_ga", "trust_ga"])
def test_evolution_lowers_validation_mse(prepared_mnist: Path, name: str) -> None:
    task = small_task(prepared_mnist)
    knobs = {
        "population_size": 40,
        "stdev_init": 0.02,
        "center_learning_rate": 0.01,
        "center_init_scale": 1.0,
        "mutation_prob": 0.2,
        "mutation_scale": 0.02,
        "elitism": 1,
        "crossover": "uniform",
    }
    cls = STRATEGY_CONFIGS[name]
    cfg = cls(**{k: v for k, v in knobs.items() if k in cls.knobs()})
    strategy = make_strategy(cfg, task.model.num_params, task.batch_size)
    rngs = make_rngs(0)
    genomes = task.model.init(cfg.population_size, rngs["init"])
    start = task.validate(genomes[0])
    state = RunState(strategy.init(genomes, rngs["strategy"]), rngs)
    bar = ProgressBar(40)  # shows the task's own metrics, no accuracy
    run(
        strategy,
        task,
        neg_mse,
        state,
        num_generations=40,
        eval_every=5,
        callbacks=[bar],
    )
    curve = [m["val_mse"] for m in state.history if "val_mse" in m]
    assert -state.best_val_score == pytest.approx(min(curve))
    assert state.history[-1]["best_val_mse"] == pytest.approx(min(curve))
    assert min(curve) < 0.9 * start
    assert {"train_mse_best", "train_mse_mean"} <= set(state.history[0])
    assert {"train_mse_best", "val_mse"} <= set(bar.shown)


def test_benchmark_writes_curves_and_grid(
    prepared_mnist: Path, tmp_path: Path, load_benchmark
) -> None:
    load_benchmark("autoencoder").main(
        ["--data", str(prepared_mnist), "--generations", "2", "--eval-every", "1"]
        + ["--batch", "10", "--val-images", "50", "--out", str(tmp_path)]
        + ["--strategy", "open_es", "--strategy", "trust_ga"]
    )
    with (tmp_path / "autoencoder_curves.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["strategy"] for r in rows} == {"open_es", "trust_ga"}
    assert len(rows) == 4 and all(float(r["val_mse"]) > 0 for r in rows)
    for png in ("autoencoder_curves.png", "autoencoder_reconstructions.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
