"""Issue 7's experiments as named sweeps through the real train and evaluate stages.

    python benchmarks/experiments.py width --data /tmp/exp_prep --gens 300
    python benchmarks/experiments.py es_vs_ga --data /tmp/exp_prep --budget 120
    python benchmarks/experiments.py alphabet --gens 400
    python benchmarks/experiments.py crossover --preset genreg-plus --gens 300

Every run starts from the `genreg-paper` preset (trust GA), seed 0, on the CPU, with
only the swept key changed. The best genome is picked on validation by `train`, then
scored on the test split by `evaluate`. One CSV row per run goes to
<out>/<sweep>.csv and a PNG of the validation curves to <docs>/exp_<sweep>.png.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curves import read_curve  # noqa: E402

from genreg.config import build_config, with_overrides  # noqa: E402
from genreg.rundir import RunDir  # noqa: E402
from genreg.stages.evaluate import evaluate  # noqa: E402
from genreg.stages.train import train  # noqa: E402

BASE = {"preset": "genreg-paper", "seed": 0, "train": {"device": "cpu"}}
COLUMNS = (
    "sweep",
    "label",
    "key",
    "value",
    "generations",
    "best_val_accuracy",
    "best_generation",
    "test_accuracy",
    "seconds",
    "seconds_per_generation",
    "plain_test_accuracy",
)
# sweep name -> (dotted key, values); the rest of the config is the base preset
SWEEPS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "width": ("model.hidden", (16, 32, 64, 128, 256)),
    "mutation": ("strategy.mutation_prob", (0.0, 0.01, 0.03, 0.07, 0.15, 0.3)),
    "images": ("train.images_per_class", (1, 5, 20)),
    # the trust GA's own knobs, meant with --preset genreg-plus (docs/genreg_plus.md)
    "crossover": ("strategy.crossover", ("unit", "none", "uniform")),
    "trust_signal": (
        "strategy.fitness",
        ("neg_cross_entropy", "margin", "trust_reward"),
    ),
    "selection": ("strategy.parent_selection", ("uniform", "rank", "trust")),
    "mutation_kind": ("strategy.mutation", ("lowrank", "dense")),
}
ALPHABET_AUG = {"shift": 0.1, "rotation": 10.0, "scale": 0.1, "thickness": 1}


@dataclass(frozen=True)
class RunSpec:
    """One run: a label, its overrides of `base`, and the prepared data it uses."""

    label: str
    data_dir: Path
    overrides: Mapping[str, Any] = field(default_factory=dict)
    base: Mapping[str, Any] = field(default_factory=lambda: BASE)
    # also score the best genome on this data's test split (plain renderings)
    plain_test_dir: Path | None = None


def run_one(spec: RunSpec, out_dir: Path) -> dict[str, Any]:
    """Train and evaluate one run in out_dir/<label>; return its CSV row."""
    cfg = with_overrides(build_config(spec.base), spec.overrides)
    run_dir = RunDir(out_dir / spec.label)
    start = time.perf_counter()
    summary = train(cfg, spec.data_dir, run_dir.root, overwrite=True)
    seconds = time.perf_counter() - start
    metrics = evaluate(cfg, spec.data_dir, run_dir.best, run_dir.root / "eval")
    row = {
        "label": spec.label,
        "generations": summary.num_generations,
        "best_val_accuracy": round(summary.best_val_accuracy, 4),
        "best_generation": summary.best_generation,
        "test_accuracy": round(metrics["test_accuracy"], 4),
        "seconds": round(seconds, 1),
        "seconds_per_generation": summary.seconds_per_generation,
    }
    if spec.plain_test_dir is not None:
        plain = evaluate(
            cfg, spec.plain_test_dir, run_dir.best, run_dir.root / "eval_plain"
        )
        row["plain_test_accuracy"] = round(plain["test_accuracy"], 4)
    return row


def run_sweep(
    name: str,
    specs: Sequence[RunSpec],
    out_dir: Path,
    png: Path | None = None,
    by_seconds: bool = False,
) -> list[dict[str, Any]]:
    """Run each spec in turn, appending rows to out_dir/<name>.csv; plot if asked."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{name}.csv"
    rows = []
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for spec in specs:
            key, value = next(iter(spec.overrides.items()), ("", ""))
            row = {"sweep": name, "key": key, "value": value, **run_one(spec, out_dir)}
            writer.writerow(row)
            handle.flush()
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            rows.append(row)
    if png is not None:
        plot_curves(name, [out_dir / s.label for s in specs], png, by_seconds)
    return rows


def plot_curves(
    title: str, run_dirs: Sequence[Path], png: Path, by_seconds: bool = False
) -> None:
    """Validation accuracy against generation (or search seconds), one line per run."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run_dir in run_dirs:
        gens, secs, accs = read_curve(run_dir)
        if gens:
            ax.plot(secs if by_seconds else gens, accs, label=run_dir.name)
    xlabel = "search seconds" if by_seconds else "generation"
    ax.set(xlabel=xlabel, ylabel="validation accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def grid_specs(
    name: str,
    data_dir: Path,
    generations: int,
    values: Sequence[Any] | None = None,
    base: Mapping[str, Any] = BASE,
) -> list[RunSpec]:
    """The runs of a one-key sweep from SWEEPS (values override its defaults)."""
    key, defaults = SWEEPS[name]
    return [
        RunSpec(
            f"{key.split('.')[-1]}={v}",
            data_dir,
            {key: v, "train.num_generations": generations},
            base,
        )
        for v in (values if values is not None else defaults)
    ]


def seconds_per_generation(
    base: Mapping[str, Any], data_dir: Path, out_dir: Path
) -> float:
    """Seconds per generation of `base`, timed over 10 generations (plus evaluation)."""
    cfg = with_overrides(build_config(base), {"train.num_generations": 10})
    summary = train(cfg, data_dir, out_dir, overwrite=True)
    return summary.wall_seconds / summary.num_generations


def equal_time_specs(data_dir: Path, out_dir: Path, budget: float) -> list[RunSpec]:
    """Trust GA and the `fast` preset (low-rank ES), each given ~`budget` seconds."""
    bases = {"trust_ga": BASE, "es_fast": {**BASE, "preset": "fast"}}
    specs = []
    for label, base in bases.items():
        spg = seconds_per_generation(base, data_dir, out_dir / f"calibrate_{label}")
        generations = max(10, int(budget / spg))
        print(
            f"{label}: {spg:.3f} s/generation -> {generations} generations", flush=True
        )
        specs.append(
            RunSpec(label, data_dir, {"train.num_generations": generations}, base)
        )
    return specs


def prepare_alphabet(out_dir: Path, renders: int, augment: bool) -> Path:
    """Prepared A-Z (default font split) in out_dir, reused if already there."""
    from genreg.stages.prepare import prepare

    if (out_dir / "meta.json").exists():
        return out_dir
    alphabet = {"renders_per_font": renders, **(ALPHABET_AUG if augment else {})}
    data = build_config({"data": {"dataset": "alphabet", "alphabet": alphabet}}).data
    prepare(data, out_dir)
    return out_dir


def alphabet_specs(
    prep_root: Path,
    generations: int,
    renders: int,
    hidden: int = 64,
    base: Mapping[str, Any] = BASE,
) -> list[RunSpec]:
    """Trust GA on A-Z, unseen test fonts: trained on plain, then augmented renders."""
    plain = prepare_alphabet(prep_root / "alphabet_plain", 1, augment=False)
    augmented = prepare_alphabet(
        prep_root / "alphabet_augmented", renders, augment=True
    )
    overrides = {
        "data.dataset": "alphabet",
        "model.hidden": hidden,
        "train.num_generations": generations,
    }
    return [
        RunSpec("plain", plain, overrides, base, plain_test_dir=plain),
        RunSpec("augmented", augmented, overrides, base, plain_test_dir=plain),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: SWEEP [--data DIR] [--gens N] [--budget S] [--out DIR] [--docs]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", choices=[*SWEEPS, "es_vs_ga", "alphabet"])
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--gens", type=int, default=300)
    parser.add_argument("--budget", type=float, default=120.0, help="es_vs_ga seconds")
    parser.add_argument("--renders", type=int, default=5, help="alphabet renders/font")
    parser.add_argument("--preset", default="genreg-paper", help="base preset")
    parser.add_argument("--out", type=Path, default=Path("experiments"))
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    base = {**BASE, "preset": args.preset}
    name = (
        args.sweep if args.preset == "genreg-paper" else f"{args.sweep}_{args.preset}"
    )
    out = args.out / name
    if args.sweep == "es_vs_ga":
        specs = equal_time_specs(args.data, out, args.budget)
    elif args.sweep == "alphabet":
        specs = alphabet_specs(args.out / "data", args.gens, args.renders, base=base)
    else:
        specs = grid_specs(args.sweep, args.data, args.gens, base=base)
    png = args.docs / f"exp_{name}.png"
    run_sweep(name, specs, out, png, by_seconds=args.sweep == "es_vs_ga")


if __name__ == "__main__":
    main()
