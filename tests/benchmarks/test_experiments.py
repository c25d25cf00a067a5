"""benchmarks/experiments.py: a two-run sweep through the real train and evaluate."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

TINY = {
    "preset": "genreg-paper",
    "seed": 0,
    "model": {"hidden": 8},
    "strategy": {"population_size": 10},
    "train": {"device": "cpu", "eval_every": 1, "val_images": 300},
}


def test_sweep_writes_one_row_per_run_and_a_png(
    prepared_mnist: Path, tmp_path: Path, load_benchmark
) -> None:
    exp = load_benchmark("experiments")
    specs = [
        exp.RunSpec(
            f"p={p}",
            prepared_mnist,
            {"strategy.mutation_prob": p, "train.num_generations": 2},
            TINY,
            plain_test_dir=prepared_mnist if p else None,
        )
        for p in (0.0, 0.3)
    ]
    png = tmp_path / "docs" / "exp_tiny.png"
    rows = exp.run_sweep("tiny", specs, tmp_path / "runs", png)

    with (tmp_path / "runs" / "tiny.csv").open() as handle:
        saved = list(csv.DictReader(handle))
    assert [r["value"] for r in saved] == ["0.0", "0.3"]
    assert [r["key"] for r in saved] == ["strategy.mutation_prob"] * 2
    for row in rows:
        assert row["generations"] == 2
        assert 0.0 < row["test_accuracy"] < 1.0
        assert 0.0 < row["best_val_accuracy"] < 1.0
    # the same genome scored on the same test split gives the same accuracy
    assert rows[1]["plain_test_accuracy"] == rows[1]["test_accuracy"]
    assert "plain_test_accuracy" not in rows[0]
    assert png.stat().st_size > 5000
    assert (tmp_path / "runs" / "p=0.3" / "eval" / "metrics.json").exists()

    curves = load_benchmark("curves")
    gens, secs, vals = curves.read_curve(tmp_path / "runs" / "p=0.3")
    assert gens == [0, 1] and 0 < secs[0] < secs[1]
    assert max(vals) == pytest.approx(rows[1]["best_val_accuracy"], abs=1e-4)
    out = tmp_path / "docs" / "curves.png"
    runs = [str(tmp_path / "runs" / name) for name in ("p=0.0", "p=0.3")]
    curves.main([*runs, "--out", str(out)])
    assert out.read_bytes()[:4] == b"\x89PNG"
