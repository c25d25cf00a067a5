"""The names of the per-generation metrics, written once.

Strategies report fitness (and their own state), tasks report the shared batch with
names starting `TRAIN_PREFIX` and validation with names starting `VAL_PREFIX`; the
runner adds the best validation score so far (`best_metric`) and the wall time.
"""

from __future__ import annotations

from torch import Tensor

FITNESS_MAX = "fitness_max"
FITNESS_MEAN = "fitness_mean"
TRUST_MAX = "trust_max"
TRUST_MEAN = "trust_mean"
TRUST_MEDIAN = "trust_median"
TRUST_STD = "trust_std"
TRUST_MEDIAN = "trust_median"
TRUST_STD = "trust_std"
STDEV_MEAN = "stdev_mean"
CENTER_NORM = "center_norm"
GRAD_NORM = "grad_norm"
STEP_NORM = "step_norm"
MUTATION_SCALE = "mutation_scale"
SECONDS_PER_GENERATION = "seconds_per_generation"

TRAIN_PREFIX = "train_"
VAL_PREFIX = "val_"
BEST_SUFFIX = "_best"
TRAIN_ACCURACY_BEST = "train_accuracy_best"
TRAIN_ACCURACY_MEAN = "train_accuracy_mean"
TRAIN_MSE_BEST = "train_mse_best"
TRAIN_MSE_MEAN = "train_mse_mean"
VAL_ACCURACY = "val_accuracy"
VAL_MSE = "val_mse"


def best_metric(name: str) -> str:
    """The runner's best-so-far key of validation metric `name` (best_val_accuracy)."""
    return f"best_{name}"


BEST_VAL_ACCURACY = best_metric(VAL_ACCURACY)


def fitness_metrics(fitness: Tensor) -> dict[str, float]:
    """Best and mean fitness [P] of one generation."""
    return {FITNESS_MAX: fitness.max().item(), FITNESS_MEAN: fitness.mean().item()}
