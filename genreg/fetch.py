"""Raw data into the project's own folder, data/raw/<dataset>: copied or downloaded.

MNIST and Fashion-MNIST are the four official IDX files, kept uncompressed so the
folder's content (and DVC's hash of it) is the same whichever gzip wrapper they came
in. They are copied from a local folder when one is named (the GENREG_DATA_DIR
environment variable, else data.source_dir), otherwise downloaded from the official
mirrors (unless data.download is false). Every file is checked against its published
md5 before anything is written, and files land by rename, so a failed fetch leaves
nothing half-written. The alphabet is rendered from fonts: nothing to fetch.
"""

from __future__ import annotations

import gzip
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

from genreg.atomic import atomic_file
from genreg.config import DataConfig
from genreg.datasets import (
    DISPLAY_NAMES,
    IDX_NAMES,
    KNOWN_MD5,
    DataError,
    check_md5,
    find_idx,
    read_checked,
)

DATA_DIR_ENV = "GENREG_DATA_DIR"
# the mirrors torchvision uses; a file is tried on each in turn
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
DOWNLOAD_TIMEOUT_S = 30.0


def resolve_source_dir(cfg: DataConfig) -> Path | None:
    """GENREG_DATA_DIR if set, else data.source_dir, else None (download)."""
    value = os.environ.get(DATA_DIR_ENV) or cfg.source_dir
    return Path(value).expanduser() if value else None


def fetch(
    cfg: DataConfig,
    raw_root: str | Path,
    *,
    source: Path | None = None,
    mirrors: Sequence[str] | None = None,
) -> Path:
    """Fill `raw_root/<dataset>` with the dataset's checked raw files; return it.

    Files come from `source` if given, else from `resolve_source_dir(cfg)`, else from
    `mirrors` (default: the official ones) when cfg.download is true. A folder that
    already holds the official files is left as it is. Raises DataError (and writes
    nothing) when a file is missing, wrong or cannot be downloaded.
    """
    folder = Path(raw_root) / cfg.dataset
    if cfg.dataset not in KNOWN_MD5:  # rendered from fonts
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    if is_complete(folder, cfg.dataset):
        return folder
    source = source or resolve_source_dir(cfg)
    if source is not None:
        contents = _copy(source, cfg.dataset)
    elif cfg.download:
        contents = _download(cfg.dataset, mirrors or MIRRORS[cfg.dataset], folder)
    else:
        raise DataError(f"{folder}: {_missing(cfg.dataset)} (data.download is false)")
    for name, data in contents.items():
        with atomic_file(folder / name) as handle:
            handle.write(data)
    return folder


def is_complete(folder: Path, dataset: str) -> bool:
    """Whether `folder` holds all four official IDX files of `dataset`, unchanged."""
    try:
        for name in IDX_NAMES.values():
            path = find_idx(folder, name)
            if path is None:
                return False
            read_checked(path, dataset)
    except DataError:
        return False
    return True


def _missing(dataset: str) -> str:
    return (
        f"{DISPLAY_NAMES[dataset]} not found: set {DATA_DIR_ENV} to a folder with the "
        "four IDX files, or connect to the internet so it can be downloaded"
    )


def _copy(source: Path, dataset: str) -> dict[str, bytes]:
    paths = {name: find_idx(source, name) for name in IDX_NAMES.values()}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        raise DataError(
            f"{source}: missing {dataset} IDX files {missing} (or their .gz); "
            f"{DATA_DIR_ENV} / data.source_dir must name a folder holding all four"
        )
    return {name: read_checked(path, dataset) for name, path in paths.items() if path}


def _download(dataset: str, mirrors: Sequence[str], folder: Path) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    for name in IDX_NAMES.values():
        unreachable, wrong = [], []
        for url in (f"{mirror}{name}.gz" for mirror in mirrors):
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as reply:
                    data = gzip.decompress(reply.read())
                check_md5(url, dataset, name, data)
            except DataError as exc:
                wrong.append(str(exc))
            except (OSError, EOFError, zlib.error) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                unreachable.append(f"{url}: {reason}")
            else:
                contents[name] = data
                break
        else:
            if wrong:
                raise DataError(f"no mirror served the official {name}: {wrong[0]}")
            raise DataError(f"{folder}: {_missing(dataset)} ({unreachable[0]})")
    return contents
