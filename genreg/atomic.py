"""Atomic file writes: a temp file beside the target, fsync, then one rename.

`.npz` files are written with a fixed timestamp on every member (np.savez stamps the
current time), so equal arrays always give equal bytes and DVC sees unchanged outputs.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

NPZ_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip member can carry


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Yield a temp file; on a clean exit it replaces `path`, on an error it is removed.

    A reader never sees a half-written file, and an interrupted write leaves the old
    file in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        newline = "" if "b" not in mode else None
        with os.fdopen(fd, mode, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace `path` with `text` atomically."""
    with atomic_file(path, "w") as handle:
        handle.write(text)


def write_npz_atomic(
    path: str | Path, arrays: Mapping[str, np.ndarray], *, compress: bool = False
) -> None:
    """Replace `path` with an .npz of `arrays`, byte-identical for equal arrays.

    Readable by np.load; `compress` deflates the members (np.savez_compressed).
    """
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_file(path) as handle, zipfile.ZipFile(handle, "w") as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=NPZ_DATE_TIME)
            info.compress_type = method
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
