"""Strategies behind one ask/tell interface; `strategy.name` picks one."""

from genreg.strategies.base import Strategy, make_strategy
from genreg.strategies.lowrank_es import LowRankES
from genreg.strategies.open_es import OpenES
from genreg.strategies.pgpe import PGPE
from genreg.strategies.simple_ga import SimpleGA
from genreg.strategies.trust_ga import TrustGA

STRATEGIES: dict[str, type] = {
    "trust_ga": TrustGA,
    "open_es": OpenES,
    "lowrank_es": LowRankES,
    "pgpe": PGPE,
    "simple_ga": SimpleGA,
}

__all__ = [
    "STRATEGIES",
    "LowRankES",
    "OpenES",
    "PGPE",
    "SimpleGA",
    "Strategy",
    "TrustGA",
    "make_strategy",
]
