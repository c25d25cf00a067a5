"""MNIST-format data: checked IDX reading, the validation split, prepared .npz files.

IDX is the format of the original MNIST release (LeCun, Cortes, Burges): a 4-byte
magic (0, 0, dtype code, ndim), ndim big-endian uint32 sizes, then the payload.
Prepared splits are .npz files holding `images` uint8 [N, H, W] and `labels` int64 [N].
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from genreg.atomic import write_npz_atomic


class DataError(ValueError):
    """Input data is missing or wrong; the message names the file and the problem."""


class Split(NamedTuple):
    """One prepared split: images uint8 [N, H, W], labels int64 [N]."""

    images: np.ndarray
    labels: np.ndarray


IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# md5 of the uncompressed IDX files (a .gz wrapper's bytes vary between mirrors).
KNOWN_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}
DISPLAY_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
_COUNTS = {"train": 60000, "test": 10000}
_IDX_DTYPES = {8: "u1", 9: "i1", 11: ">i2", 12: ">i4", 13: ">f4", 14: ">f8"}
SPLITS = ("train", "val", "test")


def _read_bytes(path: Path) -> bytes:
    """The uncompressed content of `path` (gzip detected by its magic bytes)."""
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        if gzipped:
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc


def _parse_idx(path: Path, data: bytes) -> np.ndarray:
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    ndim, header = data[3], 4 + 4 * data[3]
    if ndim == 0 or len(data) < header:
        raise DataError(f"{path}: IDX header truncated or has 0 dimensions")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {kind}: shape {shape} needs {expected} bytes, "
            f"file has {len(data)}"
        )
    return (
        np.frombuffer(data, dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzipped or not, as an array of its declared shape and dtype."""
    path = Path(path)
    return _parse_idx(path, _read_bytes(path))


def find_idx(folder: Path, name: str) -> Path | None:
    """`folder/name` or `folder/name.gz`, whichever exists, else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_checked(path: Path, dataset: str) -> bytes:
    """The uncompressed bytes of an official IDX file; DataError if its md5 differs."""
    data = _read_bytes(path)
    check_md5(path, dataset, path.name.removesuffix(".gz"), data)
    return data


def check_md5(where: Path | str, dataset: str, name: str, data: bytes) -> None:
    """DataError naming `where` unless `data` is the official content of `name`."""
    digest = hashlib.md5(data).hexdigest()
    if digest != KNOWN_MD5[dataset][name]:
        raise DataError(
            f"{where}: md5 of the uncompressed content is {digest}, expected "
            f"{KNOWN_MD5[dataset][name]} ({dataset} {name})"
        )


def _load_checked(path: Path, dataset: str, split: str, images: bool) -> np.ndarray:
    data = read_checked(path, dataset)
    array = _parse_idx(path, data)
    expected = (_COUNTS[split], 28, 28) if images else (_COUNTS[split],)
    if array.dtype != np.uint8 or array.shape != expected:
        raise DataError(
            f"{path}: expected uint8 {expected}, got {array.dtype} {array.shape}"
        )
    if not images and array.max(initial=0) > 9:
        raise DataError(f"{path}: labels must be in 0..9, found {int(array.max())}")
    return array


def _load_folder(folder: Path, dataset: str) -> tuple[tuple[np.ndarray, ...], ...]:
    paths = {key: find_idx(folder, name) for key, name in IDX_NAMES.items()}
    missing = [IDX_NAMES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DataError(
            f"{folder}: missing {dataset} IDX files {missing} (or their .gz)"
        )
    arrays = {
        key: _load_checked(path, dataset, key.split("_")[0], key.endswith("images"))
        for key, path in paths.items()
        if path is not None
    }
    return (
        (arrays["train_images"], arrays["train_labels"]),
        (arrays["test_images"], arrays["test_labels"]),
    )


def load_raw(
    dataset: str, folder: str | Path
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train images [60000, 28, 28], labels [60000]), (test ..., [10000])), checked.

    Reads the four official IDX files (each gzipped or not) from `folder`; any file
    whose uncompressed md5 differs from the published one is rejected.
    """
    if dataset not in KNOWN_MD5:
        raise DataError(f"unknown IDX dataset {dataset!r}; known: {sorted(KNOWN_MD5)}")
    return _load_folder(Path(folder), dataset)


def carve_validation(
    images: np.ndarray,
    labels: np.ndarray,
    val_size: int,
    seed: int,
    stratify: bool = False,
) -> tuple[Split, Split]:
    """Split [N, ...] into (train, val) of N - val_size and val_size, order kept."""
    n = len(labels)
    if not 0 <= val_size < n:
        raise DataError(
            f"val_size {val_size} must be in [0, {n}) for {n} training images"
        )
    rng = np.random.Generator(np.random.PCG64(seed))
    if stratify:
        classes, counts = np.unique(labels, return_counts=True)
        quota = counts * val_size / n
        take = np.floor(quota).astype(int)
        # largest remainders get the leftover places so the total is exactly val_size
        take[np.argsort(take - quota, kind="stable")[: val_size - take.sum()]] += 1
        val_idx = np.concatenate(
            [
                rng.permutation(np.flatnonzero(labels == c))[:k]
                for c, k in zip(classes, take)
            ]
        )
    else:
        val_idx = rng.permutation(n)[:val_size]
    is_val = np.zeros(n, bool)
    is_val[val_idx] = True
    train = Split(images[~is_val], labels[~is_val])
    return train, Split(images[is_val], labels[is_val])


def check_split(
    name: str, images: Any, labels: Any, num_classes: int | None = None
) -> None:
    """Raise DataError unless images are uint8 [N, H, W], labels int64 [N] in range."""
    for what, array, dtype, dims in (
        ("images", images, np.uint8, "[N, H, W]"),
        ("labels", labels, np.int64, "[N]"),
    ):
        ok = isinstance(array, np.ndarray)
        if not ok or array.dtype != dtype or array.ndim != dims.count(",") + 1:
            got = f"{array.dtype} {array.shape}" if ok else type(array).__name__
            raise DataError(
                f"{name}: {what} must be {np.dtype(dtype)} {dims}, got {got}"
            )
    if len(images) != len(labels):
        raise DataError(f"{name}: {len(images)} images but {len(labels)} labels")
    low, high = (labels.min(), labels.max()) if len(labels) else (0, 0)
    if low < 0 or (num_classes is not None and high >= num_classes):
        limit = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        raise DataError(f"{name}: labels must be in {limit}, found {low}..{high}")


def save_split(path: str | Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images uint8 [N, H, W] and labels int64 [N] to `path` (.npz) atomically."""
    path = Path(path)
    check_split(str(path), images, labels)
    write_npz_atomic(path, {"images": images, "labels": labels}, compress=True)


def load_split(path: str | Path, num_classes: int | None = None) -> Split:
    """Read and check a split written by `save_split`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"images", "labels"} - set(npz.files)
            if missing:
                raise DataError(
                    f"{path}: missing arrays {sorted(missing)} (has {npz.files})"
                )
            split = Split(npz["images"], npz["labels"])
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or truncated .npz ({exc})") from exc
    check_split(str(path), split.images, split.labels, num_classes)
    return split


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_meta(data_dir: str | Path) -> dict[str, Any]:
    """The meta.json that `prepare` writes next to the splits."""
    path = Path(data_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DataError(f"{path}: not found; run `genreg prepare` first") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from exc
    for key in ("num_classes", "image_shape", "counts", "sha256"):
        if key not in meta:
            raise DataError(f"{path}: missing key {key!r}")
    return meta


def load_prepared(data_dir: str | Path) -> dict[str, Split]:
    """The train/val/test splits of a prepared folder, checked against meta.json."""
    data_dir = Path(data_dir)
    meta = load_meta(data_dir)
    splits = {}
    for name in SPLITS:
        path = data_dir / f"{name}.npz"
        split = load_split(path, meta["num_classes"])
        if split.images.shape != (meta["counts"][name], *meta["image_shape"]):
            raise DataError(
                f"{path}: shape {split.images.shape} differs from meta.json "
                f"({meta['counts'][name]}, {meta['image_shape']})"
            )
        digest = sha256_file(path)
        if digest != meta["sha256"][f"{name}.npz"]:
            raise DataError(
                f"{path}: sha256 {digest} differs from meta.json's; re-run prepare"
            )
        splits[name] = split
    return splits
