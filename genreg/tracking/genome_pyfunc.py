"""MLflow pyfunc model from code: a genome file in, class indices out (numpy, CPU).

MLflow runs this file when it loads the model (models-from-code), so no pickled
Python object is ever stored or loaded; the genome itself is the run's .npz artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel

from genreg.checkpoint import Genome, load_genome


class GenomeModel(PythonModel):
    """A genome as a pyfunc: a DataFrame of pixels 0..255 -> class indices [N]."""

    genome: Genome

    def load_context(self, context: Any) -> None:
        """Read the genome artifact (an .npz, never a pickle)."""
        self.genome = load_genome(Path(context.artifacts["genome"]))

    # no type hints here: MLflow would read them as a second, conflicting schema
    def predict(self, context, model_input, params=None):
        """Class index of each row of `model_input` ([N, pixels] in 0..255)."""
        from genreg.tracking.model import predict_classes

        return predict_classes(self.genome, model_input)


mlflow.models.set_model(GenomeModel())
