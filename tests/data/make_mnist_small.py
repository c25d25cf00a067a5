"""Write tests/data/mnist-small.npz: 600 real MNIST images for fast unit tests.

The first 50 training images of each digit (500, in file order) and the first 10 test
images of each digit (100), from the official IDX files, as uint8 [N, 28, 28] images
and int64 [N] labels. Run from the repo root once MNIST is reachable (data/raw/mnist,
or GENREG_DATA_DIR):

    .venv/bin/python tests/data/make_mnist_small.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genreg.atomic import write_npz_atomic
from genreg.config import DataConfig
from genreg.datasets import load_raw
from genreg.fetch import fetch

OUT = Path(__file__).with_name("mnist-small.npz")
PER_CLASS = {"train": 50, "test": 10}


def first_per_class(
    images: np.ndarray, labels: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` images of each class, in file order."""
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:n] for c in range(10)]))
    return images[keep], labels[keep].astype(np.int64)


def main() -> None:
    root = Path(__file__).resolve().parents[2] / "data" / "raw"
    train, test = load_raw("mnist", fetch(DataConfig(), root))
    arrays = {}
    for name, (images, labels) in (("train", train), ("test", test)):
        x, y = first_per_class(images, labels, PER_CLASS[name])
        arrays[f"{name}_images"], arrays[f"{name}_labels"] = x, y
    write_npz_atomic(OUT, arrays, compress=True)
    print(f"{OUT}: {', '.join(f'{k} {v.shape}' for k, v in arrays.items())}")


if __name__ == "__main__":
    main()
