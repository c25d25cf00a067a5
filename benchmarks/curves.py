"""Validation curves of `genreg train` run folders, against generation and seconds.

    python benchmarks/curves.py runs/a runs/b --label "run a" --label "run b" \
        --out docs/curves.png

Reads each folder's val_curve.csv (generation, val_accuracy, best_val_accuracy) and
metrics.csv (seconds_per_generation) and draws one line per run in two panels.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from genreg.metric_names import SECONDS_PER_GENERATION, VAL_ACCURACY  # noqa: E402
from genreg.rundir import RunDir  # noqa: E402


def read_curve(run_dir: Path) -> tuple[list[int], list[float], list[float]]:
    """(generation, cumulative wall seconds, validation accuracy) at each validation."""
    run = RunDir(run_dir)
    with run.metrics.open() as handle:
        # blank for generations resumed from a run folder that lost its metrics.csv
        per_gen = [
            float(r[SECONDS_PER_GENERATION] or "nan") for r in csv.DictReader(handle)
        ]
    elapsed = list(accumulate(per_gen))
    with run.val_curve.open() as handle:
        rows = list(csv.DictReader(handle))
    gens = [int(r["generation"]) for r in rows]
    return gens, [elapsed[g] for g in gens], [float(r[VAL_ACCURACY]) for r in rows]


def plot(
    runs: Sequence[Path],
    labels: Sequence[str],
    out: Path,
    title: str,
    ymin: float = 0.85,
) -> None:
    """One line per run: validation accuracy by generation and by seconds."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for run_dir, label in zip(runs, labels, strict=True):
        gens, secs, vals = read_curve(run_dir)
        best = max(vals)
        axes[0].plot([g + 1 for g in gens], vals, label=f"{label} (best {best:.2%})")
        axes[1].plot(secs, vals, label=label)
    for ax, xlabel in zip(axes, ("generation", "training seconds"), strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation accuracy")
        ax.set_ylim(ymin, 1.0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: RUN_DIR... [--label L]... --out PNG [--title T]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="genreg train --out folders")
    parser.add_argument("--label", action="append", help="one per run (default: name)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="784-64-10 MLP on MNIST, no gradients")
    parser.add_argument("--ymin", type=float, default=0.85, help="lowest y shown")
    args = parser.parse_args(argv)
    labels = args.label or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(labels)} --label for {len(args.runs)} runs")
    plot(args.runs, labels, args.out, args.title, args.ymin)


if __name__ == "__main__":
    main()
