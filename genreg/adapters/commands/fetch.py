"""Fetch the raw dataset into RAW_DIR/<dataset> (data/raw/mnist by default).

MNIST and Fashion-MNIST: the four official IDX files, stored uncompressed and checked
against their published md5s. They are copied from a local folder when one is given
(--source, else the GENREG_DATA_DIR environment variable, else data.source_dir), or
downloaded from the official mirrors otherwise (--offline or data.download: false
forbids that). A folder that already holds the right files is left alone. Offline with
no local copy, the command names both ways out and writes nothing.

The alphabet (data.dataset: alphabet) is rendered from fonts: nothing to fetch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from genreg.config import Config, DataConfig

HELP = "copy or download the raw dataset into data/raw, md5-checked"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """--raw-dir, --source and --offline: where raw files live and come from."""
    parser.add_argument(
        "--raw-dir",
        type=Path,
        default=Path("data/raw"),
        help="raw data root; files go to RAW_DIR/<dataset> (default: data/raw)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        help="folder of the IDX files to copy (overrides GENREG_DATA_DIR and params)",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never download (data.download: false)",
    )


def source_config(args: argparse.Namespace, cfg: Config) -> DataConfig:
    """cfg.data with --offline applied (--source is passed to fetch itself)."""
    return dataclasses.replace(cfg.data, download=False) if args.offline else cfg.data


def run(args: argparse.Namespace, cfg: Config) -> int:
    from genreg.fetch import fetch

    folder = fetch(source_config(args, cfg), args.raw_dir, source=args.source)
    print(json.dumps({"dataset": cfg.data.dataset, "raw": str(folder)}))
    return 0
