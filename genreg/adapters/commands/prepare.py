"""Prepare a dataset: load and check the raw data, carve a seeded validation split,
and write train/val/test arrays (uint8 images + labels, one .npz per split) and
meta.json.

MNIST and Fashion-MNIST come from a folder of IDX files (data.source_dir, or the
GENREG_DATA_DIR environment variable), or are downloaded by torchvision with --download.
The alphabet (data.dataset: alphabet) is rendered from TTF fonts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from genreg.config import Config

HELP = "load, check and split a dataset into prepared arrays"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("data/prepared"), help="output folder"
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download with torchvision if not found locally",
    )
    parser.add_argument(
        "--source", type=Path, help="folder of IDX files (overrides params)"
    )
    parser.add_argument(
        "--raw-dir",
        type=Path,
        default=Path("data/raw"),
        help="where downloads are kept",
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    from genreg.stages.prepare import prepare

    data = cfg.data
    if args.download:
        data = dataclasses.replace(data, download=True)
    if args.source is not None:
        data = dataclasses.replace(data, source_dir=str(args.source))
    meta = prepare(data, args.out, raw_dir=args.raw_dir)
    print(json.dumps({"out": str(args.out), "counts": meta.get("counts")}))
    return 0
