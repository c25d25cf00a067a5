"""benchmarks/es_push.py: lever variants and a long run at a tiny size on real MNIST."""

from __future__ import annotations

import csv
import json
from pathlib import Path

TINY = [
    "model.hidden=8",
    "strategy.population_size=8",
    "train.images_per_class=2",
    "train.eval_every=1",
    "train.val_images=300",
]


def test_levers_write_a_row_per_variant_with_its_schedule(
    small_mnist: Path, tmp_path: Path, load_benchmark
) -> None:
    es_push = load_benchmark("es_push")
    args = ["levers", "--data", str(small_mnist), "--budget", "0.3", "--threads", "1"]
    args += ["--docs", str(tmp_path), "--tag", "tiny", "--schedule", "7"]
    for lever in ("baseline", "cosine_lr", "pop_500_to_2000", "images_late"):
        args += ["--lever", lever]
    es_push.main([*args, *(a for o in TINY for a in ("-S", o))])

    with (tmp_path / "es_levers_tiny.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["variant"] for r in rows] == [
        "baseline",
        "cosine_lr",
        "pop_500_to_2000",
        "images_late",
    ]
    assert {r["schedule"] for r in rows} == {"7"}
    assert all(0.0 <= float(r["test@0.3s"]) <= 1.0 for r in rows)
    assert (tmp_path / "es_levers_tiny.png").stat().st_size > 0


def test_variant_config_fills_in_the_schedule_and_splits_loop_levers(
    load_benchmark,
) -> None:
    es_push = load_benchmark("es_push")
    cfg, loop = es_push.variant_config(
        {"preset": "fast"}, es_push.LEVERS["combo_lr_sigma_images"], 123
    )
    assert cfg.strategy.schedule_generations == 123
    assert cfg.strategy.learning_rate_schedule == "cosine"
    assert loop == {"images_late": 2}


def test_a_lever_keeps_the_command_lines_keys_of_its_section(load_benchmark) -> None:
    es_push = load_benchmark("es_push")
    base = {"preset": "fast", "seed": 2, "strategy": {"population_size": 2000}}
    cfg, _ = es_push.variant_config(base, es_push.LEVERS["unit_cosine_images_30"], 50)
    assert cfg.strategy.name == "unit_es" and cfg.strategy.population_size == 2000
    assert cfg.strategy.learning_rate_schedule == "cosine" and cfg.seed == 2
    assert cfg.train.images_per_class == 30


def test_long_run_calibrates_its_schedule_and_writes_the_curve(
    small_mnist: Path, tmp_path: Path, load_benchmark
) -> None:
    es_push = load_benchmark("es_push")
    args = ["long", "--data", str(small_mnist), "--budget", "0.3", "--threads", "1"]
    args += ["--calibrate", "--name", "tiny", "--out", str(tmp_path)]
    args += ["-S", "strategy.learning_rate_schedule=cosine"]
    args += ["-S", "strategy.learning_rate_decay=1.0", "-S", "seed=3"]
    es_push.main([*args, *(a for o in TINY for a in ("-S", o))])

    with (tmp_path / "tiny_curve.csv").open() as handle:
        points = list(csv.DictReader(handle))
    assert points and all("test_accuracy" in p for p in points)
    assert all(0 <= float(p["train_accuracy"]) <= 1 for p in points)
    summary = json.loads((tmp_path / "tiny_summary.json").read_text())
    assert summary["config"]["strategy.schedule_generations"] >= 1
    assert summary["config"]["seed"] == 3  # a top-level key through -S
    assert summary["generations"] == int(points[-1]["generation"])

    es_push.main(["plot", str(tmp_path / "tiny_curve.csv"), "--docs", str(tmp_path)])
    curve = es_push.read_curve(tmp_path / "tiny_curve.csv")
    assert curve.name == "tiny" and len(curve.points) == len(points)
    for x in ("seconds", "generation"):
        assert (tmp_path / f"es_long_curves_{x}.png").stat().st_size > 0


def test_data_init_levers_start_above_chance_and_count_the_init(
    small_mnist: Path, tmp_path: Path, load_benchmark
) -> None:
    es_push = load_benchmark("es_push")
    args = ["levers", "--data", str(small_mnist), "--budget", "0.3", "--threads", "1"]
    args += ["--docs", str(tmp_path), "--tag", "init", "--schedule", "7"]
    args += ["--lever", "baseline", "--lever", "pca_ridge"]
    es_push.main([*args, *(a for o in TINY for a in ("-S", o))])

    with (tmp_path / "es_levers_init.csv").open() as handle:
        baseline, data_init = csv.DictReader(handle)
    # generation 0: a random center is near chance, PCA + ridge is not
    assert float(data_init["val@0"]) > float(baseline["val@0"]) + 0.2
    assert float(data_init["test@0"]) > float(baseline["test@0"]) + 0.2
    assert float(data_init["init_s"]) > 0.0


def test_levers_by_generation_count(
    small_mnist: Path, tmp_path: Path, load_benchmark
) -> None:
    es_push = load_benchmark("es_push")
    args = ["levers", "--data", str(small_mnist), "--generations", "3"]
    args += ["--threads", "1", "--docs", str(tmp_path), "--tag", "g"]
    args += ["--lever", "baseline", "--lever", "cosine_lr"]
    es_push.main([*args, *(a for o in TINY for a in ("-S", o))])

    with (tmp_path / "es_levers_g.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["generations"], r["schedule"]) for r in rows] == [("3", "3")] * 2
    assert all(0.0 <= float(r["test@3g"]) <= 1.0 for r in rows)
    with (tmp_path / "es_levers_g_curves.csv").open() as handle:
        points = [(r["variant"], r["generation"]) for r in csv.DictReader(handle)]
    assert points == [(v, str(g)) for v in ("baseline", "cosine_lr") for g in range(4)]
