"""Hidden-layer analysis: separation scores, sampling, curves, CLI errors.

UMAP itself runs in one test only (tests/test_flows.py): its first fit JIT-compiles.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from genreg.adapters.cli import main
from genreg.analysis import (
    ensure_numba_cache,
    hidden_activations,
    per_class_accuracy,
    sample_indices,
    separation_scores,
    umap_embedding,
)
from genreg.config import ConfigError, build_config
from genreg.model import BatchedMLP
from genreg.plots_analysis import curves_png
from genreg.stages.analyze import read_curves
from genreg.stages.train import train


@pytest.fixture(scope="module")
def tiny_run(prepared_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-generation training run (population 8, hidden 8) on real MNIST."""
    cfg = build_config(
        {
            "model": {"hidden": 8},
            "strategy": {"population_size": 8},
            "train": {
                "num_generations": 3,
                "eval_every": 1,
                "images_per_class": 2,
                "val_images": 500,
                "device": "cpu",
            },
        }
    )
    out = tmp_path_factory.mktemp("tiny_run")
    train(cfg, prepared_mnist, out)
    return out


def _blobs(
    separated: bool, n: int = 300, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n // 3)
    centres = rng.normal(size=(3, 16)) * (20.0 if separated else 0.0)
    return (centres[labels] + rng.normal(size=(n, 16))).astype(np.float32), labels


def test_separation_scores_tell_separated_from_mixed_classes() -> None:
    hidden, labels = _blobs(separated=True)
    good = separation_scores(hidden, _project(hidden), labels, n_neighbors=10, seed=0)
    mixed_hidden, _ = _blobs(separated=False)
    rng = np.random.default_rng(1)
    bad = separation_scores(mixed_hidden, rng.normal(size=(300, 2)), labels, 10, seed=0)
    assert good["knn_accuracy_2d"] > 0.95 and good["knn_accuracy_hidden"] > 0.95
    assert good["silhouette_2d"] > 0.5
    assert good["trustworthiness"] > bad["trustworthiness"]
    assert bad["knn_accuracy_2d"] < 0.55 and bad["knn_accuracy_hidden"] < 0.55
    assert abs(bad["silhouette_2d"]) < 0.1
    assert good["num_points"] == 300 and good["trustworthiness_k"] == 10


def _project(points: np.ndarray) -> np.ndarray:
    # a PCA projection to 2-D keeps the blobs apart, like a good embedding would
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def test_sample_indices_are_seeded_sorted_and_unique() -> None:
    a, b = sample_indices(10_000, 200, seed=3), sample_indices(10_000, 200, seed=3)
    assert np.array_equal(a, b) and len(np.unique(a)) == 200 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, sample_indices(10_000, 200, seed=4))
    assert np.array_equal(sample_indices(50, 200, seed=0), np.arange(50))


def test_per_class_accuracy_counts_within_each_true_class() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2])
    predictions = np.array([0, 1, 1, 1, 0, 0])
    assert per_class_accuracy(predictions, labels, 4) == pytest.approx(
        [0.5, 2 / 3, 0.0, 0.0]
    )


def test_hidden_activations_match_the_batched_torch_model() -> None:
    model = BatchedMLP(784, 8, 10)
    genome = model.init(1, torch.Generator().manual_seed(0))
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    expected = model.hidden_activations(
        genome, torch.from_numpy(images.reshape(5, -1)) / 255.0
    )
    got = hidden_activations(model, genome[0].numpy(), images)
    assert got.shape == (5, 8)
    np.testing.assert_allclose(got, expected[0].numpy(), atol=1e-5)


def test_umap_needs_more_points_than_neighbours() -> None:
    with pytest.raises(ConfigError, match="analyze.n_neighbors"):
        umap_embedding(
            np.zeros((10, 4), np.float32), n_neighbors=15, min_dist=0.1, seed=0
        )


def test_curves_are_read_from_a_training_run_and_plotted(
    tiny_run: Path, tmp_path: Path
) -> None:
    per_gen, val = read_curves(tiny_run)
    assert per_gen["generation"] == [0.0, 1.0, 2.0]
    assert len(per_gen["trust_max"]) == 3 and len(val["val_accuracy"]) == 3
    curves_png(tmp_path / "curves.png", per_gen, val, "tiny")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_rejects_bad_inputs_naming_them(
    tiny_run: Path, prepared_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    genome = tiny_run / "checkpoints" / "best.npz"
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"garbage")
    base = ["analyze", "--data", str(prepared_mnist), "--out", str(tmp_path / "out")]
    assert main([*base, "--checkpoint", str(corrupt)]) == 2
    assert str(corrupt) in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(genome), "--train-dir", str(tmp_path)]) == 2
    assert "metrics.csv" in capsys.readouterr().err
    assert main([*base, "--compare", str(genome)]) == 2
    assert "two or more" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_numba_cache_goes_to_the_project_unless_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    folder = ensure_numba_cache()
    assert folder == (tmp_path / ".cache" / "numba").resolve() and folder.is_dir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert ensure_numba_cache() == tmp_path / "mine"
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "mine")
