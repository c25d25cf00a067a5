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
from genreg.config import STRATEGY_CONFIGS, LowRankESConfig
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


def test_lowrank_population_equals_its_dense_genomes(load_benchmark) -> None:
    ae = load_benchmark("autoencoder")
    model = BatchedAutoencoder(mirrored_sizes((20, 8, 3)))
    center = model.init(1, torch.Generator().manual_seed(0))[0]
    for rank in (1, 3):
        cfg = LowRankESConfig(population_size=6, noise_rank=rank, stdev_init=0.05)
        es = ae.LowRankAutoencoderES(cfg, model, batch_size=5)
        state = es.init(center[None], torch.Generator().manual_seed(1))
        population, _ = es.ask_seeded(state, seed=3)
        dense = population.dense()
        x = torch.randn(5, 20)
        torch.testing.assert_close(population.forward(x), model.forward(dense, x))
        # search gradient sum_j w_j eps_j / (sigma P), eps_j the + members' noise
        weights = torch.randn(3)
        eps = (dense[:3] - state.center) / 0.05
        torch.testing.assert_close(
            es.gradient(population, weights, 0.05),
            weights @ eps / (0.05 * 6),
            rtol=1e-4,
            atol=1e-5,
        )


def test_lowrank_es_lowers_validation_mse(prepared_mnist: Path, load_benchmark) -> None:
    ae = load_benchmark("autoencoder")
    task = small_task(prepared_mnist)
    knobs = {"name": "lowrank_es", "population_size": 40, "noise_rank": 2}
    knobs |= {"stdev_init": 0.02, "center_learning_rate": 0.01}
    knobs |= {"center_init_scale": 1.0}
    test_x = task.val_x[:100]
    start = task.validate(task.model.init(1, make_rngs(0)["init"])[0])
    state, record = ae.evolve(task, knobs, 40, 5, 0, test_x)
    assert [p[0] for p in record.points] == list(range(5, 41, 5))
    assert -state.best_val_score == min(p[2] for p in record.points) < 0.9 * start
    assert record.points[-1][3] == pytest.approx(
        task.val_mse(state.best_genome, test_x)
    )


def test_benchmark_writes_curves_and_grid(
    small_mnist: Path, tmp_path: Path, load_benchmark, capsys
) -> None:
    load_benchmark("autoencoder").main(
        ["--data", str(small_mnist), "--generations", "2", "--eval-every", "1"]
        + ["--batch", "10", "--val-images", "50", "--out", str(tmp_path)]
        + ["--strategy", "trust_ga"]
        + [
            "--reference-epochs",
            "1",
            "--variant",
            "small=lowrank_es,population_size=20",
        ]
        + ["--jobs", "2"]
    )
    with (tmp_path / "autoencoder_curves.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    methods = {"backprop (Adam)", "small", "trust_ga"}
    assert {r["method"] for r in rows} == methods
    evolved = [r for r in rows if r["method"] != "backprop (Adam)"]
    assert len(evolved) == 4
    assert all(float(r["val_mse"]) > 0 and float(r["test_mse"]) > 0 for r in rows)
    # one epoch of 400 images in batches of 10: validated at the start and its end
    steps = [r["generation"] for r in rows if r["method"] == "backprop (Adam)"]
    assert steps == ["0", "40"]
    for png in (
        "autoencoder_per_generation.png",
        "autoencoder_per_second.png",
        "autoencoder_reconstructions.png",
    ):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    table = capsys.readouterr().out
    assert "| small | 2 |" in table and "| mean image |" in table
