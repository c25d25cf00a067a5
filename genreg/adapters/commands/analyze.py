"""Analyze a genome's hidden layer on the test set: UMAP, class separation, plots.

Writes OUT/umap.png (UMAP of the tanh activations, coloured by class),
OUT/separation.json (trustworthiness, k-NN accuracy in 2-D and in the hidden space,
silhouette), OUT/per_class.png and, with --train-dir, OUT/curves.png (trust and
validation accuracy per generation). Knobs: analyze.num_samples, analyze.n_neighbors,
analyze.min_dist, seed.

--compare A.npz B.npz ... embeds several genomes (e.g. 32 and 64 hidden) on the same
test images and writes one side-by-side OUT/umap_compare.png.

UMAP compiles with numba. What numba can cache (pynndescent, compiled at import) is
kept in .cache/numba (or $NUMBA_CACHE_DIR), so only the first run pays for it; umap's
own layout functions still compile once per process (tens of seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genreg.config import Config

HELP = "UMAP of the hidden layer, class-separation scores, per-class and curve plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, default=Path("data/prepared"), help="prepared data"
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("runs/train/checkpoints/best.npz"),
        help="genome file to analyze",
    )
    parser.add_argument(
        "--train-dir",
        type=Path,
        help="training folder (metrics.csv, val_curve.csv) for curves.png",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        metavar="GENOME",
        help="two or more genome files to embed side by side (umap_compare.png)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/analyze"), help="output folder"
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    from genreg.analysis import ensure_numba_cache

    ensure_numba_cache()
    from genreg.stages.analyze import analyze, compare

    keys = (
        "hidden",
        "test_accuracy",
        "trustworthiness",
        "knn_accuracy_2d",
        "knn_accuracy_hidden",
        "silhouette_2d",
    )
    if args.compare:
        if len(args.compare) < 2:
            print(
                "genreg analyze: error: --compare needs two or more genome files",
                file=sys.stderr,
            )
            return 2
        for scores in compare(cfg, args.data, args.compare, args.out):
            print(
                json.dumps(
                    {"checkpoint": scores["checkpoint"], **{k: scores[k] for k in keys}}
                )
            )
        return 0
    scores = analyze(
        cfg, args.data, args.checkpoint, args.out, train_dir=args.train_dir
    )
    print(json.dumps({k: scores[k] for k in keys}))
    return 0
