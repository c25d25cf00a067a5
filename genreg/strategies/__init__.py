"""Strategies behind one ask/tell interface; `strategy.name` picks one."""

from genreg.config import StrategyConfig
from genreg.model import BatchedMLP
from genreg.strategies.base import Strategy
from genreg.strategies.lowrank_es import LowRankES
from genreg.strategies.open_es import OpenES
from genreg.strategies.pgpe import PGPE
from genreg.strategies.simple_ga import SimpleGA
from genreg.strategies.trust_ga import TrustGA
from genreg.strategies.unit_es import UnitES

STRATEGIES: dict[str, type] = {
    "trust_ga": TrustGA,
    "open_es": OpenES,
    "lowrank_es": LowRankES,
    "unit_es": UnitES,
    "pgpe": PGPE,
    "simple_ga": SimpleGA,
}


def make_strategy(
    cfg: StrategyConfig,
    num_params: int,
    images_per_generation: int,
    model: BatchedMLP | None = None,
) -> Strategy:
    """The strategy named by `cfg.name`.

    Each takes (config, num_params, images_per_generation, model).
    """
    return STRATEGIES[cfg.name](cfg, num_params, images_per_generation, model)


__all__ = [
    "STRATEGIES",
    "LowRankES",
    "OpenES",
    "PGPE",
    "SimpleGA",
    "Strategy",
    "TrustGA",
    "UnitES",
    "make_strategy",
]
