"""A tqdm progress bar as a runner callback.

Shows generation, trust, training and validation accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping

from tqdm.auto import tqdm


class ProgressBar:
    """Shows best/mean trust (or fitness), best training accuracy, last validation."""

    def __init__(self, total: int, desc: str = "evolving") -> None:
        self.bar = tqdm(total=total, desc=desc, unit="gen", dynamic_ncols=True)
        self.val = float("nan")

    def on_generation(self, generation: int, metrics: Mapping[str, float]) -> None:
        self.val = metrics.get("val_accuracy", self.val)
        best = metrics.get("trust_max", metrics.get("fitness_max", float("nan")))
        mean = metrics.get("trust_mean", metrics.get("fitness_mean", float("nan")))
        self.bar.set_postfix(
            best=f"{best:.4g}",
            mean=f"{mean:.4g}",
            train=f"{metrics['train_accuracy_best']:.3f}",
            val=f"{self.val:.3f}",
            refresh=False,
        )
        self.bar.update(generation + 1 - self.bar.n)  # a resumed run starts part-way
        if generation + 1 >= (self.bar.total or 0):
            self.bar.close()
