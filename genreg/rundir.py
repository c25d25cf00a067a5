"""The layout of a training run's folder (what `genreg train --out` holds).

Its files, named here and nowhere else:

    checkpoints/last.npz           run checkpoint (resume state)
    checkpoints/best.npz           best genome by validation score (genome file)
    metrics.csv                    one row per generation
    val_curve.csv                  one row per validation
    summary.json                   headline numbers (DVC metrics)
    mlflow_run_id                  the MLflow run a tracked run logs to
    mlflow_pending_metrics.jsonl   metric points MLflow did not take yet
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, init=False)
class RunDir:
    """The paths of one run folder `root`; every other module asks this for them."""

    root: Path
    checkpoints: Path
    last: Path
    best: Path
    metrics: Path
    val_curve: Path
    summary: Path
    mlflow_run_id: Path
    mlflow_pending: Path

    def __init__(self, root: Path) -> None:
        root = Path(root)
        checkpoints = root / "checkpoints"
        paths = {
            "root": root,
            "checkpoints": checkpoints,
            "last": checkpoints / "last.npz",
            "best": checkpoints / "best.npz",
            "metrics": root / "metrics.csv",
            "val_curve": root / "val_curve.csv",
            "summary": root / "summary.json",
            "mlflow_run_id": root / "mlflow_run_id",
            "mlflow_pending": root / "mlflow_pending_metrics.jsonl",
        }
        for name, path in paths.items():  # frozen: set once, here
            object.__setattr__(self, name, path)

    @classmethod
    def of_genome(cls, genome: Path) -> RunDir:
        """The run folder whose checkpoints/ holds the genome file `genome`."""
        return cls(Path(genome).parent.parent)

    @property
    def artifacts(self) -> tuple[Path, ...]:
        """The small result files a tracker keeps beside the best genome."""
        return (self.summary, self.metrics, self.val_curve)
