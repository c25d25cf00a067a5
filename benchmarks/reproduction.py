"""GENREG's published 81.47% across seeds: the published presets and their variants.

    python benchmarks/reproduction.py --data data/prepared            # every variant
    python benchmarks/reproduction.py --data data/prepared --variant paper --seeds 5
    python benchmarks/reproduction.py --report                          # table + plot

Each run is the real train stage (then evaluate on the test split) with the variant's
overrides, for `--gens` generations (1,500); the best genome by validation accuracy is
also scored after the first `--early` (600) generations, so one run gives both
figures. Runs resume where they stopped (the train stage's own --resume), and each
finished run appends one row to <docs>/reproduction/<variant>.csv plus its validation
curve to <docs>/reproduction/<variant>_curves.csv, so an interrupted study loses at
most the run in progress. `--report` prints the mean +- sd table over seeds and draws
<docs>/reproduction_curves.png (mean validation accuracy with a +-1 sd band).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from genreg.config import build_config, with_overrides  # noqa: E402
from genreg.metric_names import VAL_ACCURACY  # noqa: E402
from genreg.rundir import RunDir  # noqa: E402
from genreg.stages.evaluate import evaluate  # noqa: E402
from genreg.stages.train import train  # noqa: E402

PUBLISHED = {64: 0.8147, 32: 0.7252}  # the post's test accuracy by hidden width
# name -> (description, params, seeds by default)
VARIANTS: dict[str, tuple[str, Mapping[str, Any], int]] = {
    "paper": ("`genreg-paper`", {"preset": "genreg-paper"}, 5),
    "code": ("`genreg-code`", {"preset": "genreg-code"}, 5),
    "code-gen-decay": (
        "`genreg-code`, per-generation decay 0.2",
        {
            "preset": "genreg-code",
            "strategy": {"decay_mode": "generation", "trust_decay": 0.2},
        },
        5,
    ),
    "paper-crossover": (
        "`genreg-paper` + uniform crossover",
        {"preset": "genreg-paper", "strategy": {"crossover": "uniform"}},
        3,
    ),
    "paper-32": (
        "`genreg-paper`, 32 hidden",
        {"preset": "genreg-paper", "model": {"hidden": 32}},
        3,
    ),
}
COLUMNS = (
    "variant",
    "seed",
    "hidden",
    "early_generations",
    "early_best_val",
    "early_test",
    "generations",
    "best_val",
    "best_generation",
    "test",
    "first_generation_past_published",
    "seconds_per_generation",
)


def val_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(generation, validation accuracy) at each validation of a run folder."""
    rows = read_rows(RunDir(run_dir).val_curve)
    return [(int(r["generation"]), float(r[VAL_ACCURACY])) for r in rows]


def first_past(curve: Sequence[tuple[int, float]], threshold: float) -> int | None:
    """The first validated generation whose accuracy reaches threshold."""
    return next((gen for gen, acc in curve if acc >= threshold), None)


def run_variant_seed(
    variant: str, seed: int, data: Path, out: Path, gens: int, early: int, threads: int
) -> dict[str, Any]:
    """Train (resuming) to `early` then `gens` generations; evaluate both bests."""
    _, params, _ = VARIANTS[variant]
    base = with_overrides(
        build_config(params),
        {"seed": seed, "train.device": "cpu", "train.threads": threads},
    )
    run = RunDir(out / variant / f"seed{seed}")
    row: dict[str, Any] = {
        "variant": variant,
        "seed": seed,
        "hidden": base.model.hidden,
    }
    for stop, prefix in ((early, "early_"), (gens, "")):
        cfg = with_overrides(base, {"train.num_generations": stop})
        summary = train(cfg, data, run.root, resume=True)
        test = evaluate(cfg, data, run.best, run.root / f"eval{stop}")["test_accuracy"]
        row[f"{prefix}generations"] = stop
        row[f"{prefix}best_val"] = round(summary.best_val_accuracy, 4)
        row[f"{prefix}test"] = round(test, 4)
    row["best_generation"] = summary.best_generation
    row["seconds_per_generation"] = summary.seconds_per_generation
    curve = val_curve(run.root)
    past = first_past(curve, PUBLISHED[base.model.hidden])
    row["first_generation_past_published"] = "" if past is None else past
    return row


def append_rows(path: Path, columns: Sequence[str], rows: list[Mapping]) -> None:
    """Append rows to a CSV, writing the header when the file is new."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def run_study(
    variants: Sequence[str],
    seeds: int | None,
    data: Path,
    out: Path,
    docs: Path,
    gens: int,
    early: int,
    threads: int,
    first_seed: int = 0,
) -> None:
    """Run every missing (variant, seed), appending rows as each finishes."""
    for variant in variants:
        table = docs / "reproduction" / f"{variant}.csv"
        done = {int(r["seed"]) for r in read_rows(table)}
        for seed in range(first_seed, seeds or VARIANTS[variant][2]):
            if seed in done:
                continue
            row = run_variant_seed(variant, seed, data, out, gens, early, threads)
            append_rows(table, COLUMNS, [row])
            curve = val_curve(out / variant / f"seed{seed}")
            append_rows(
                docs / "reproduction" / f"{variant}_curves.csv",
                ("seed", "generation", "val_accuracy"),
                [{"seed": seed, "generation": g, "val_accuracy": a} for g, a in curve],
            )
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)


def mean_sd(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} +- {100 * sd:.2f}%"


def report(docs: Path) -> None:
    """Print the markdown table over seeds and draw the curves with sd bands."""
    print(
        "| variant | seeds | test @ early | test @ gens | median test @ gens "
        "| runs past the published figure (first generation) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    fig, ax = plt.subplots(figsize=(8, 5))
    for variant, (description, _, _) in VARIANTS.items():
        rows = read_rows(docs / "reproduction" / f"{variant}.csv")
        if not rows:
            continue
        early = [float(r["early_test"]) for r in rows]
        final = [float(r["test"]) for r in rows]
        past = [r["first_generation_past_published"] for r in rows]
        passed = ", ".join(p for p in past if p) or "none"
        print(
            f"| {description} | {len(rows)} | {mean_sd(early)} "
            f"(gen {rows[0]['early_generations']}) | {mean_sd(final)} "
            f"(gen {rows[0]['generations']}) | {100 * statistics.median(final):.2f}% "
            f"| {sum(1 for p in past if p)}/{len(rows)} ({passed}) |"
        )
        label = description.replace("`", "")
        plot_band(ax, docs / "reproduction" / f"{variant}_curves.csv", label)
    ax.axhline(PUBLISHED[64], color="k", ls="--", lw=1, label="published 81.47% (64 h)")
    ax.axhline(
        PUBLISHED[32], color="gray", ls=":", lw=1, label="published 72.52% (32 h)"
    )
    ax.set_xlabel("generation")
    ax.set_ylabel("validation accuracy (mean +- sd over seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(docs / "reproduction_curves.png", dpi=120)


def plot_band(ax: Any, curves_csv: Path, label: str) -> None:
    by_gen: dict[int, list[float]] = {}
    for r in read_rows(curves_csv):
        by_gen.setdefault(int(r["generation"]), []).append(float(r["val_accuracy"]))
    gens = sorted(by_gen)
    mean = [statistics.mean(by_gen[g]) for g in gens]
    sd = [statistics.stdev(by_gen[g]) if len(by_gen[g]) > 1 else 0.0 for g in gens]
    (line,) = ax.plot(gens, mean, lw=1.2, label=label)
    low = [m - s for m, s in zip(mean, sd, strict=True)]
    high = [m + s for m, s in zip(mean, sd, strict=True)]
    ax.fill_between(gens, low, high, color=line.get_color(), alpha=0.2)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument(
        "--variant", action="append", choices=list(VARIANTS), help="repeatable"
    )
    parser.add_argument(
        "--seeds", type=int, help="seeds per variant (default: its own)"
    )
    parser.add_argument(
        "--first-seed", type=int, default=0, help="skip seeds below (another worker)"
    )
    parser.add_argument("--gens", type=int, default=1500)
    parser.add_argument("--early", type=int, default=600)
    parser.add_argument("--out", type=Path, default=Path("experiments/reproduction"))
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all)")
    parser.add_argument("--report", action="store_true", help="table and plot only")
    args = parser.parse_args(argv)
    if not args.report:
        run_study(
            args.variant or list(VARIANTS),
            args.seeds,
            args.data,
            args.out,
            args.docs,
            args.gens,
            args.early,
            args.threads,
            args.first_seed,
        )
    report(args.docs)


if __name__ == "__main__":
    main()
