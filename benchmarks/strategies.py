"""Time-to-accuracy curves of genreg's strategies, and seed-based checkpoint sizes.

    python benchmarks/strategies.py --data data/prepared --budget 60 \
        --run fast= --run ga=strategy.name=simple_ga,strategy.fitness=neg_cross_entropy

Each --run is NAME=comma-separated overrides of the `fast` preset. Curves (search
seconds, generation, validation accuracy) go to --out as CSV; the table and the bytes
of a seed-based checkpoint against full weights are printed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import Curve, format_table, load_task, run_genreg, table  # noqa: E402

from genreg.config import build_config, parse_override, unflatten  # noqa: E402

SEED_BYTES = 8  # one 64-bit seed
FLOAT_BYTES = 4  # float32


def checkpoint_bytes(
    num_params: int, generations: int, population: int
) -> dict[str, int]:
    """Bytes of one genome stored as full weights and as seeds (+ fitness) to replay.

    full_weights: D float32 values. open_es_replay: the initial seed, then per
    generation the noise seed and the P fitness values `open_es.replay` needs (the
    Adam update depends on the whole fitness vector). ga_lineage: a simple-GA genome
    as its initial seed plus one mutation seed per generation (Such et al. 2017).
    """
    return {
        "full_weights": num_params * FLOAT_BYTES,
        "open_es_replay": SEED_BYTES
        + generations * (SEED_BYTES + population * FLOAT_BYTES),
        "ga_lineage": SEED_BYTES * (generations + 1),
    }


def run_curves(
    data_dir: Path, runs: Mapping[str, Sequence[str]], budget: float
) -> dict[str, Curve]:
    """Each named run (overrides of the `fast` preset) for `budget` search seconds."""
    curves = {}
    for name, overrides in runs.items():
        params = {
            "preset": "fast",
            **unflatten(dict(parse_override(o) for o in overrides)),
        }
        cfg = build_config(params)
        task, _, _ = load_task(data_dir, cfg)
        curve = run_genreg(task, cfg, budget)
        curve.peer = name
        curves[name] = curve
    return curves


def write_curves(curves: Mapping[str, Curve], path: Path) -> None:
    """All curves in one CSV: run, seconds, generation, val_accuracy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "seconds", "generation", "val_accuracy"])
        for name, curve in curves.items():
            for seconds, generation, val in curve.points:
                writer.writerow([name, f"{seconds:.2f}", generation, f"{val:.4f}"])


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: --data, --budget, --run NAME=overrides (repeatable), --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--run", action="append", default=[], help="NAME=k=v,k=v")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/curves.csv"))
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.run or ["fast="]:
        name, _, overrides = spec.partition("=")
        runs[name] = [o for o in overrides.split(",") if o]
    curves = run_curves(args.data, runs, args.budget)
    write_curves(curves, args.out)
    cfg = build_config({"preset": "fast"})
    task, test_x, test_y = load_task(args.data, cfg)
    print(
        format_table(
            table(list(curves.values()), [args.budget], task.model, test_x, test_y)
        )
    )
    generations = max(c.points[-1][1] for c in curves.values())
    sizes = checkpoint_bytes(
        task.model.num_params, generations, cfg.strategy.population_size
    )
    print(f"checkpoint bytes after {generations} generations: {sizes}")


if __name__ == "__main__":
    main()
