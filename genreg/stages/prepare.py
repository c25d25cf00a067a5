"""Prepare stage: raw IDX files or fonts in; checked train/val/test .npz, meta.json out.

The raw IDX files are read from `raw_dir/<dataset>` (data/raw/mnist in the pipeline,
the `fetch` stage's output); when that folder is not there yet it is fetched first
(`genreg.fetch`: copied from GENREG_DATA_DIR / data.source_dir, or downloaded).

Outputs in `out_dir`: train.npz, val.npz, test.npz (see `genreg.datasets.save_split`)
and meta.json. Everything is built and checked in a temporary folder beside `out_dir`
first; only then are the files moved into place (meta.json last), so a failed run leaves
earlier outputs untouched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from genreg.config import DataConfig
from genreg.datasets import (
    CLASS_NAMES,
    KNOWN_MD5,
    SPLITS,
    Split,
    carve_validation,
    check_split,
    load_raw,
    save_split,
    sha256_file,
)
from genreg.fetch import fetch


def _idx_splits(
    cfg: DataConfig, raw_root: Path
) -> tuple[dict[str, Split], dict[str, Any]]:
    (train_x, train_y), (test_x, test_y) = load_raw(cfg.dataset, fetch(cfg, raw_root))
    train, val = carve_validation(
        train_x, train_y.astype(np.int64), cfg.val_size, cfg.split_seed
    )
    splits = {
        "train": train,
        "val": val,
        "test": Split(test_x, test_y.astype(np.int64)),
    }
    # load_raw rejects any file whose md5 differs, so the known table is what was read
    extra = {
        "class_names": CLASS_NAMES[cfg.dataset],
        "sources": dict(KNOWN_MD5[cfg.dataset]),
    }
    return splits, extra


def _alphabet_splits(cfg: DataConfig) -> tuple[dict[str, Split], dict[str, Any]]:
    from genreg.alphabet import LETTERS, render_fonts, resolve_fonts

    fonts = resolve_fonts(cfg.alphabet)
    splits = {
        s: render_fonts(fonts[s], cfg.alphabet, cfg.split_seed, s) for s in SPLITS
    }
    sources = {
        name: hashlib.md5(path.read_bytes()).hexdigest()
        for split_fonts in fonts.values()
        for name, path in sorted(split_fonts.items())
    }
    extra = {
        "class_names": list(LETTERS),
        "fonts": {s: sorted(fonts[s]) for s in SPLITS},
        "sources": sources,
    }
    return splits, extra


def _install(tmp: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in [f"{s}.npz" for s in SPLITS] + ["meta.json"]:
        os.replace(tmp / name, out_dir / name)


def prepare(
    cfg: DataConfig, out_dir: Path, *, raw_dir: Path | None = None
) -> dict[str, Any]:
    """Write out_dir/{train,val,test}.npz and meta.json; return the meta dict.

    `raw_dir` holds the raw files, one folder per dataset (see `genreg.fetch`); it
    defaults to `out_dir.parent / "raw"`. Raises DataError (and writes nothing) on bad
    input.
    """
    out_dir = Path(out_dir)
    if cfg.dataset == "alphabet":
        splits, extra = _alphabet_splits(cfg)
    else:
        raw_root = Path(raw_dir) if raw_dir is not None else out_dir.parent / "raw"
        splits, extra = _idx_splits(cfg, raw_root)
    info: dict[str, Any] = {
        "dataset": cfg.dataset,
        "class_names": extra["class_names"],
        "val_size": cfg.val_size if cfg.dataset != "alphabet" else None,
        "split_seed": cfg.split_seed,
        "sources": extra["sources"],
    }
    if "fonts" in extra:
        info["fonts"] = extra["fonts"]
        info["alphabet"] = {
            k: v
            for k, v in dataclasses.asdict(cfg.alphabet).items()
            if not k.endswith("_fonts")
        }
    return write_prepared(out_dir, splits, info)


def write_prepared(
    out_dir: Path, splits: dict[str, Split], info: dict[str, Any]
) -> dict[str, Any]:
    """Check `splits` and write them with their meta.json into `out_dir`; return it.

    `info` holds at least `dataset` and `class_names`; the counts, shapes and sha256s
    are added here. Everything is written to a temporary folder first, meta.json last.
    """
    num_classes = len(info["class_names"])
    for name, split in splits.items():
        check_split(
            f"{info['dataset']} {name} split", split.images, split.labels, num_classes
        )
    meta: dict[str, Any] = {
        "dataset": info["dataset"],
        "class_names": info["class_names"],
        "num_classes": num_classes,
        "image_shape": list(splits["train"].images.shape[1:]),
        "counts": {s: len(splits[s].labels) for s in SPLITS},
        "class_counts": {
            s: np.bincount(splits[s].labels, minlength=num_classes).tolist()
            for s in SPLITS
        },
        **{k: v for k, v in info.items() if k not in ("dataset", "class_names")},
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        for s in SPLITS:
            save_split(tmp / f"{s}.npz", splits[s].images, splits[s].labels)
        meta["sha256"] = {f"{s}.npz": sha256_file(tmp / f"{s}.npz") for s in SPLITS}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        _install(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta
