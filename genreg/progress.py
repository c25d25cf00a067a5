"""A tqdm progress bar as a runner callback.

Shows the generation, best/mean trust (or fitness) and what the task reports: its
best training-batch score and its last validation score, whatever their names.
"""

from __future__ import annotations

from collections.abc import Mapping

from tqdm.auto import tqdm

from genreg.metric_names import (
    BEST_SUFFIX,
    FITNESS_MAX,
    FITNESS_MEAN,
    TRAIN_PREFIX,
    TRUST_MAX,
    TRUST_MEAN,
    VAL_PREFIX,
)


class ProgressBar:
    """Best/mean trust (or fitness), the task's train_*_best and last val_* scores."""

    def __init__(self, total: int, desc: str = "evolving") -> None:
        self.bar = tqdm(total=total, desc=desc, unit="gen", dynamic_ncols=True)
        self.shown: dict[str, str] = {}

    def on_generation(self, generation: int, metrics: Mapping[str, float]) -> None:
        best = metrics.get(TRUST_MAX, metrics.get(FITNESS_MAX, float("nan")))
        mean = metrics.get(TRUST_MEAN, metrics.get(FITNESS_MEAN, float("nan")))
        self.shown.update(best=f"{best:.4g}", mean=f"{mean:.4g}")
        for key, value in metrics.items():  # validation values stay until the next
            if key.startswith(VAL_PREFIX) or (
                key.startswith(TRAIN_PREFIX) and key.endswith(BEST_SUFFIX)
            ):
                self.shown[key] = f"{value:.4g}"
        self.bar.set_postfix(self.shown, refresh=False)
        self.bar.update(generation + 1 - self.bar.n)  # a resumed run starts part-way
        if generation + 1 >= (self.bar.total or 0):
            self.bar.close()
