"""Prepare a dataset: load and check the raw data, carve a seeded validation split,
and write train/val/test arrays (uint8 images + labels, one .npz per split) and
meta.json.

MNIST and Fashion-MNIST are read from RAW_DIR/<dataset> (data/raw/mnist), the folder
`genreg fetch` fills; if it is not there yet it is fetched first, the same way: copied
from --source / GENREG_DATA_DIR / data.source_dir, else downloaded from the official
mirrors. The alphabet (data.dataset: alphabet) is rendered from TTF fonts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genreg.adapters.commands.fetch import add_source_arguments, source_config
from genreg.config import Config

HELP = "load, check and split a dataset into prepared arrays"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("data/prepared"), help="output folder"
    )
    add_source_arguments(parser)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from genreg.fetch import fetch
    from genreg.stages.prepare import prepare

    data = source_config(args, cfg)
    fetch(data, args.raw_dir, source=args.source)
    meta = prepare(data, args.out, raw_dir=args.raw_dir)
    print(json.dumps({"out": str(args.out), "counts": meta.get("counts")}))
    return 0
