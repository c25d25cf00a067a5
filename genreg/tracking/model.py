"""The best genome as an MLflow pyfunc model: pixel rows in, class indices out.

The model is logged from code (genome_pyfunc.py) with the genome .npz as its artifact,
so `mlflow models predict -m runs:/<run id>/model -i pixels.csv -t csv
--env-manager local` works and nothing is pickled.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking._tracking_service import utils as tracking_utils

from genreg.checkpoint import Genome
from genreg.datasets import load_split
from genreg.evaluation import logits_numpy

MODEL_CODE = Path(__file__).with_name("genome_pyfunc.py")


def pixels_frame(images: np.ndarray) -> pd.DataFrame:
    """uint8 images [N, H, W] as N rows of columns pixel_0..pixel_{H*W-1}."""
    flat = images.reshape(len(images), -1).astype(np.int64)
    return pd.DataFrame(flat, columns=[f"pixel_{i}" for i in range(flat.shape[1])])


def predict_classes(genome: Genome, frame: Any) -> np.ndarray:
    """Class indices [N] of pixel rows [N, I] in 0..255, by the numpy forward pass."""
    x = np.asarray(frame, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != genome.model.num_inputs:
        raise ValueError(
            f"model input: expected {genome.model.num_inputs} pixel columns (0..255), "
            f"got shape {list(x.shape)}"
        )
    return logits_numpy(genome.model, genome.weights, x / np.float32(255.0)).argmax(1)


def log_genome_model(uri: str, run_id: str, genome_path: Path, examples: Path) -> None:
    """Log the genome as the pyfunc model "model" of `run_id`."""
    from mlflow.models import infer_signature

    from genreg.checkpoint import load_genome

    example = pixels_frame(load_split(examples).images[:5])
    with warnings.catch_warnings():  # integer pixels cannot be missing: no hint needed
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer")
        signature = infer_signature(
            example, predict_classes(load_genome(genome_path), example)
        )
    # the fluent API below needs the process-wide URI; put back exactly what was set
    # before (None when only the environment named a store): set_tracking_uri(None)
    # unsets both the global and the MLFLOW_TRACKING_URI it exports
    previous = tracking_utils._tracking_uri
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE),
                artifacts={"genome": str(genome_path)},
                signature=signature,
                input_example=example,
                pip_requirements=[
                    f"mlflow=={mlflow.__version__}",
                    "numpy",
                    "pandas",
                    "genreg",
                ],
            )
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env
