"""Typed configuration: frozen dataclasses built from params.yaml, presets, overrides.

Every value is checked on construction; a bad key, type or value raises `ConfigError`
naming the dotted key and what is allowed, before any work starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A params.yaml key, type or value is not allowed; the message names the key."""


@dataclass(frozen=True)
class AlphabetConfig:
    """A-Z rendered from TTF fonts; fonts are split by name so test fonts are unseen."""

    image_size: int = 28
    fonts_dir: str | None = None
    train_fonts: tuple[str, ...] = ()
    val_fonts: tuple[str, ...] = ()
    test_fonts: tuple[str, ...] = ()
    renders_per_font: int = 1
    shift: float = 0.0
    rotation: float = 0.0
    scale: float = 0.0
    thickness: int = 0


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where its raw files come from, and the validation split.

    The raw files are copied from `source_dir` (the GENREG_DATA_DIR environment
    variable wins over it) or, with neither set, downloaded when `download` is true.
    """

    dataset: Literal["mnist", "fashion-mnist", "alphabet"] = "mnist"
    source_dir: str | None = None
    download: bool = True
    val_size: int = 5000
    split_seed: int = 0
    alphabet: AlphabetConfig = field(default_factory=AlphabetConfig)


@dataclass(frozen=True)
class ModelConfig:
    hidden: int = 64
    init_weight: float = 0.5
    init_bias: float = 0.1


@dataclass(frozen=True)
class StrategyConfig:
    """The strategy's name and every knob; each strategy reads the knobs it uses."""

    name: Literal["trust_ga", "open_es", "lowrank_es", "pgpe", "simple_ga"] = "trust_ga"
    population_size: int = 200
    fitness: Literal["trust_reward", "accuracy", "neg_cross_entropy", "margin"] = (
        "trust_reward"
    )
    # trust GA (docs/algorithm.md); the first published value of each
    reward_correct: float = 10.0
    reward_wrong: float = -1.5
    trust_decay: float = 0.2
    decay_mode: Literal["generation", "image"] = "generation"
    trust_clamp: float = 1e5
    top_fraction: float = 0.2
    parent_selection: Literal["trust", "uniform", "rank"] = "trust"
    crossover: Literal["none", "uniform", "unit"] = "none"
    # share of children made by crossover (the rest copy one parent), and whether
    # crossed children are mutated too
    crossover_fraction: float = 1.0
    mutate_crossovers: bool = True
    mutation: Literal["sparse", "dense", "lowrank"] = "sparse"
    mutation_prob: float = 0.07  # sparse mutation only
    mutation_scale: float = 0.1
    # > 0: each genome's mutation scale is inherited and multiplied by exp(tau N(0,1))
    self_adapt_tau: float = 0.0
    child_trust: Literal["factor", "parent_mean"] = "factor"
    child_trust_factor: float = 0.03
    elitism: int = 0
    mutate_survivors: bool = False
    predictions: Literal["sample", "argmax"] = "sample"
    # distribution strategies (OpenES, PGPE)
    stdev_init: float = 0.02
    center_learning_rate: float = 0.01
    stdev_learning_rate: float = 0.1
    stdev_max_change: float = 0.2
    weight_decay: float = 0.0
    optimizer: Literal["adam", "clipup", "sgd"] = "adam"
    # the ES center starts as the first initial genome times this
    # (tanh saturates at 1.0)
    center_init_scale: float = 0.1
    # OpenES/PGPE center learning rate at generation t: lr * decay**t
    learning_rate_decay: float = 1.0
    # OpenES/PGPE noise: 0 = fresh normals each generation, else slices of a fixed table
    noise_table_size: int = 0
    # lowrank_es and the trust GA's lowrank mutation: rank of first-layer noise A B^T
    noise_rank: int = 1
    # fitness shaping of OpenES and PGPE (the GAs only use the order of fitness)
    shaping: Literal["centered_ranks", "normalized"] = "centered_ranks"


@dataclass(frozen=True)
class TrainConfig:
    num_generations: int = 600
    images_per_class: int = 20
    eval_every: int = 10
    val_images: int = 5000
    checkpoint_every: int = 50
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0
    # wall-clock budget in seconds (0: none): the run stops at the end of the
    # generation that reaches it, checkpointed, with stop_reason max_seconds
    max_seconds: float = 0.0


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = 1000


@dataclass(frozen=True)
class AnalyzeConfig:
    num_samples: int = 10000
    n_neighbors: int = 15
    min_dist: float = 0.1


@dataclass(frozen=True)
class TrackingConfig:
    experiment: str = "genreg"
    tracking_uri: str = "sqlite:///mlflow.db"


@dataclass(frozen=True)
class Config:
    seed: int = 0
    preset: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    analyze: AnalyzeConfig = field(default_factory=AnalyzeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        _check_ranges(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), the form params.yaml and JSON use."""
        return _plain(dataclasses.asdict(self))

    def flat(self) -> dict[str, Any]:
        """Dotted keys to scalar values, e.g. {"strategy.mutation_scale": 0.1}."""
        return flatten(self.to_dict())


PRESETS: dict[str, dict[str, Any]] = {
    # docs/algorithm.md as published in the post; the code's values are variants below.
    "genreg-paper": {"strategy": {"name": "trust_ga"}},
    "genreg-code": {
        "strategy": {
            "name": "trust_ga",
            "reward_wrong": -2.5,
            "trust_decay": 0.001,
            "decay_mode": "image",
            "mutation_prob": 0.15,
            "crossover": "uniform",
            "child_trust": "parent_mean",
        }
    },
    # the trust GA engineered for large populations (docs/genreg_plus.md): still
    # selection by trust and children of trusted parents, with the knobs that took it
    # past 90%: unit crossover for half the children, low-rank mutation with a
    # self-adaptive scale, cross-entropy as the trust signal, elites re-scored
    "genreg-plus": {
        "model": {"init_weight": 0.1},
        "strategy": {
            "name": "trust_ga",
            "population_size": 1000,
            "fitness": "neg_cross_entropy",
            "trust_decay": 0.5,
            "top_fraction": 0.2,
            "parent_selection": "uniform",
            "crossover": "unit",
            "crossover_fraction": 0.5,
            "mutate_crossovers": False,
            "mutation": "lowrank",
            "noise_rank": 1,
            "mutation_scale": 0.01,
            "self_adapt_tau": 0.05,
            "child_trust": "parent_mean",
            "elitism": 50,
        },
        "train": {"images_per_class": 10, "num_generations": 3000},
    },
    # fastest to 90% validation accuracy on a 2-core CPU (benchmarks/strategies.py)
    "fast": {
        "strategy": {
            "name": "lowrank_es",
            "population_size": 1000,
            "noise_rank": 1,
            "fitness": "neg_cross_entropy",
            "stdev_init": 0.02,
            "center_learning_rate": 0.01,
            "learning_rate_decay": 0.999,
            "center_init_scale": 0.1,
            "shaping": "normalized",
            "optimizer": "adam",
        },
        "train": {"images_per_class": 10, "num_generations": 3000, "eval_every": 10},
    },
}


def build_config(params: Mapping[str, Any] | None = None) -> Config:
    """Config from a params.yaml mapping: defaults, then its preset, then its keys."""
    params = dict(params or {})
    params.pop("tune", None)  # the Optuna study's section, read by pipelines.tune
    preset = params.get("preset")
    merged: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(
                f"preset: unknown preset {preset!r}; allowed: {sorted(PRESETS)}"
            )
        merged = _merge(merged, PRESETS[preset])
    merged = _merge(merged, params)
    return _build(Config, merged, "")


def load_params(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read params.yaml, apply dotted overrides, validate.

    Overrides are dotted keys, e.g. {"train.num_generations": 5}.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read params file ({exc.strerror})") from exc
    try:
        params = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections, got {type(params).__name__}"
        )
    return build_config(_merge(params, unflatten(overrides or {})))


def with_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """A copy of `cfg` with dotted keys replaced, validated like params.yaml."""
    return _build(Config, _merge(cfg.to_dict(), unflatten(overrides)), "")


def parse_override(text: str) -> tuple[str, Any]:
    """Parse 'key=value' (value as YAML, so 0.1, true and [a, b] work)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(
            f"override {text!r}: expected key=value, e.g. strategy.mutation_scale=0.05"
        )
    return key.strip(), yaml.safe_load(value)


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part} is a value, not a section")
        node[leaf] = value
    return nested


def _merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"{prefix.rstrip('.')}: expected a section (mapping), got {values!r}"
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown key; allowed in "
            f"{prefix.rstrip('.') or 'the top level'}: {sorted(names)}"
        )
    kwargs = {
        name: _coerce(hints[name], value, f"{prefix}{name}")
        for name, value in values.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix.rstrip('.')}: {exc}") from exc


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint}")  # pragma: no cover


# (dotted key, low, high, low inclusive, high inclusive)
_RANGES: list[tuple[str, float, float, bool, bool]] = [
    ("data.val_size", 0, float("inf"), True, True),
    ("data.alphabet.image_size", 8, 256, True, True),
    ("data.alphabet.renders_per_font", 1, 1000, True, True),
    ("data.alphabet.shift", 0, 0.5, True, True),
    ("data.alphabet.rotation", 0, 90, True, True),
    ("data.alphabet.scale", 0, 0.9, True, True),
    ("data.alphabet.thickness", 0, 5, True, True),
    ("model.hidden", 1, 4096, True, True),
    ("model.init_weight", 0, float("inf"), False, True),
    ("model.init_bias", 0, float("inf"), True, True),
    ("strategy.population_size", 2, 1_000_000, True, True),
    ("strategy.trust_decay", 0, 1, True, True),
    ("strategy.trust_clamp", 0, float("inf"), False, True),
    ("strategy.top_fraction", 0, 1, False, True),
    ("strategy.mutation_prob", 0, 1, True, True),
    ("strategy.mutation_scale", 0, float("inf"), True, True),
    ("strategy.crossover_fraction", 0, 1, True, True),
    ("strategy.self_adapt_tau", 0, 10, True, True),
    ("strategy.child_trust_factor", 0, float("inf"), True, True),
    ("strategy.elitism", 0, float("inf"), True, True),
    ("strategy.stdev_init", 0, float("inf"), False, True),
    ("strategy.center_learning_rate", 0, float("inf"), False, True),
    ("strategy.stdev_learning_rate", 0, float("inf"), True, True),
    ("strategy.stdev_max_change", 0, 1, True, True),
    ("strategy.weight_decay", 0, 1, True, False),
    ("strategy.center_init_scale", 0, float("inf"), True, True),
    ("strategy.learning_rate_decay", 0, 1, False, True),
    ("strategy.noise_table_size", 0, 2**31, True, True),
    ("strategy.noise_rank", 1, 4096, True, True),
    ("train.num_generations", 1, float("inf"), True, True),
    ("train.images_per_class", 1, float("inf"), True, True),
    ("train.eval_every", 1, float("inf"), True, True),
    ("train.val_images", 1, float("inf"), True, True),
    ("train.checkpoint_every", 1, float("inf"), True, True),
    ("train.threads", 0, 1024, True, True),
    ("train.max_seconds", 0, float("inf"), True, True),
    ("evaluate.batch_size", 1, float("inf"), True, True),
    ("analyze.num_samples", 10, float("inf"), True, True),
    ("analyze.n_neighbors", 2, 200, True, True),
    ("analyze.min_dist", 0, 1, True, True),
]


def _check_ranges(cfg: Config) -> None:
    flat = flatten(_plain(dataclasses.asdict(cfg)))
    for key, low, high, low_inc, high_inc in _RANGES:
        value = flat[key]
        ok_low = value >= low if low_inc else value > low
        ok_high = value <= high if high_inc else value < high
        if not (ok_low and ok_high):
            lo = f"{'[' if low_inc else '('}{low:g}"
            hi = f"{high:g}{']' if high_inc else ')'}"
            raise ConfigError(f"{key}: {value!r} is out of range; allowed: {lo}, {hi}")
    pop, elitism = cfg.strategy.population_size, cfg.strategy.elitism
    if elitism >= pop:
        raise ConfigError(
            f"strategy.elitism: {elitism} must be below population_size ({pop})"
        )
    if cfg.strategy.name in ("open_es", "lowrank_es", "pgpe") and pop % 2:
        raise ConfigError(
            f"strategy.population_size: {pop} must be even for {cfg.strategy.name} "
            "(mirrored noise pairs)"
        )


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
