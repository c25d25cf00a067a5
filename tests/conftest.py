"""Shared fixtures: tiny configs, and real MNIST.

MNIST is found the way `genreg fetch` finds it: the repo's data/raw/mnist if it holds
the official files, else copied there from GENREG_DATA_DIR, else downloaded there. If
none of these works the MNIST tests fail with one line naming the ways out. Tests that
need only a few images use `small_mnist`: 600 real MNIST images committed in
tests/data/mnist-small.npz (made by tests/data/make_mnist_small.py).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAW_ROOT = ROOT / "data" / "raw"  # where `make run` (the fetch stage) keeps raw data
SMALL_MNIST = ROOT / "tests" / "data" / "mnist-small.npz"

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session", autouse=True)
def _mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Runs tracked by tests go to a throwaway SQLite store, never the project's."""
    if "MLFLOW_TRACKING_URI" not in os.environ:
        store = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder of the four official MNIST IDX files: the repo's data/raw/mnist."""
    from genreg.config import DataConfig
    from genreg.datasets import DataError
    from genreg.fetch import fetch

    try:
        return fetch(DataConfig(), RAW_ROOT)
    except DataError as exc:
        pytest.fail(f"MNIST for the tests: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def prepared_mnist(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNIST prepared once per session (train/val/test .npz + meta.json)."""
    from genreg.config import DataConfig
    from genreg.stages.prepare import prepare

    out = tmp_path_factory.mktemp("prepared")
    prepare(DataConfig(), out, raw_dir=mnist_dir.parent)
    return out


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared folder of real MNIST in miniature: 400 train, 100 val, 100 test.

    Built from the committed tests/data/mnist-small.npz, so it needs no download.
    """
    import numpy as np

    from genreg.datasets import CLASS_NAMES, Split, carve_validation
    from genreg.stages.prepare import write_prepared

    with np.load(SMALL_MNIST) as npz:
        arrays = {key: npz[key] for key in npz.files}
    train, val = carve_validation(
        arrays["train_images"], arrays["train_labels"], 100, seed=0, stratify=True
    )
    splits = {
        "train": train,
        "val": val,
        "test": Split(arrays["test_images"], arrays["test_labels"]),
    }
    info = {"dataset": "mnist", "class_names": CLASS_NAMES["mnist"], "val_size": 100}
    out = tmp_path_factory.mktemp("small_mnist")
    write_prepared(out, splits, {**info, "split_seed": 0, "sources": {}})
    return out


def _load_benchmark(name: str) -> types.ModuleType:
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # strategies.py imports peers
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_benchmark() -> Callable[[str], types.ModuleType]:
    """Imports benchmarks/<name>.py by path (they are scripts, not a package)."""
    return _load_benchmark


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory):
    """One real Prefect server (temporary database, result storage) for the session."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}),
    ):
        yield
