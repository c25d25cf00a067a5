"""Shared fixtures: tiny configs, and real MNIST.

MNIST comes from ../shared/data/mnist (or GENREG_DATA_DIR).
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
    """The folder of the four official MNIST IDX files (gzipped)."""
    path = Path(
        os.environ.get("GENREG_DATA_DIR", ROOT.parent / "shared" / "data" / "mnist")
    )
    if (
        not (path / "train-images-idx3-ubyte.gz").exists()
        and not (path / "train-images-idx3-ubyte").exists()
    ):
        pytest.fail(f"MNIST IDX files not found in {path}; set GENREG_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def prepared_mnist(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNIST prepared once per session (train/val/test .npz + meta.json)."""
    from genreg.config import DataConfig
    from genreg.stages.prepare import prepare

    out = tmp_path_factory.mktemp("prepared")
    prepare(DataConfig(source_dir=str(mnist_dir)), out)
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
