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
from typing import Any, ClassVar, Literal

import yaml


class ConfigError(ValueError):
    """A params.yaml key, type or value is not allowed; the message names the key."""


@dataclass(frozen=True)
class AugmentConfig:
    """How many renderings of each font's A-Z, and how they are distorted.

    Rendering 0 is plain; every other one draws, per letter, a shift of up to
    `shift` x the image side along x and y, a rotation of up to `rotation` degrees
    either way, a scale in [1 - scale, 1 + scale] and 0..`thickness` 3x3 dilations.
    """

    renders_per_font: int = 1
    shift: float = 0.0
    rotation: float = 0.0
    scale: float = 0.0
    thickness: int = 0


@dataclass(frozen=True)
class AlphabetConfig:
    """A-Z rendered from TTF fonts; fonts are split by name so test fonts are unseen.

    `renders_per_font` .. `thickness` are the training fonts' renderings, and the
    held-out (val and test) fonts' too unless `heldout` gives theirs.
    """

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
    heldout: AugmentConfig | None = None

    def augment(self, split: str) -> AugmentConfig:
        """The renderings of `split`'s fonts: `heldout` for val and test, if set."""
        if split != "train" and self.heldout is not None:
            return self.heldout
        return AugmentConfig(
            self.renders_per_font, self.shift, self.rotation, self.scale, self.thickness
        )


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
    """The MLP's hidden width and its initial genome (genreg.init).

    Weights are U(-init_weight, init_weight), biases U(-init_bias, init_bias), unless
    a data init (distribution strategies only) sets the first layer from the training
    images' principal directions (`init: pca`) or the readout by ridge regression
    (`readout: ridge`), both from `init_images` training images (0: all).
    """

    hidden: int = 64
    init_weight: float = 0.5
    init_bias: float = 0.1
    init: Literal["uniform", "pca"] = "uniform"
    # pca: std of each unit's pre-activation on the training images (whiten), or the
    # root mean variance over the units (no whitening: the eigenvalue spread kept)
    pca_std: float = 0.5
    pca_whiten: bool = True
    readout: Literal["uniform", "ridge"] = "uniform"
    ridge_alpha: float = 1.0
    init_images: int = 10000

    @property
    def data_init(self) -> bool:
        """Whether the initial genome depends on the training images."""
        return self.init != "uniform" or self.readout != "uniform"


# (low, high, low inclusive, high inclusive) of a numeric knob
Range = tuple[float, float, bool, bool]
INF = float("inf")


@dataclass(frozen=True, kw_only=True)
class StrategyConfig:
    """What every strategy has: its name, the population size and the fitness.

    Each strategy's config subclasses this with that strategy's knobs only
    (`STRATEGY_CONFIGS`); `strategy.name` picks which. Knob values are checked on
    construction (`ranges`), so a config that exists is a valid one.
    """

    name: str
    population_size: int = 200
    fitness: Literal["accuracy", "neg_cross_entropy", "margin"] = "neg_cross_entropy"

    # members come in +/- noise pairs, so the population size must be even
    mirrored: ClassVar[bool] = False
    ranges: ClassVar[dict[str, Range]] = {"population_size": (2, 1_000_000, True, True)}

    def __post_init__(self) -> None:
        if type(self) is StrategyConfig:
            raise TypeError(
                "StrategyConfig is the base of the per-strategy configs; build one of "
                f"{sorted(c.__name__ for c in STRATEGY_CONFIGS.values())}"
            )
        for knob, bounds in self.ranges.items():
            _check_range(f"strategy.{knob}", getattr(self, knob), bounds)
        pop = self.population_size
        if self.mirrored and pop % 2:
            raise ConfigError(
                f"strategy.population_size: {pop} must be even for {self.name} "
                "(mirrored noise pairs)"
            )
        elitism = getattr(self, "elitism", 0)
        if elitism >= pop:
            raise ConfigError(
                f"strategy.elitism: {elitism} must be below population_size ({pop})"
            )

    @classmethod
    def knobs(cls) -> list[str]:
        """This strategy's keys under `strategy:` (name included), in order."""
        return [f.name for f in dataclasses.fields(cls)]


@dataclass(frozen=True, kw_only=True)
class TrustGAConfig(StrategyConfig):
    """GENREG's trust GA (docs/algorithm.md); the first published value of each."""

    name: Literal["trust_ga"] = "trust_ga"
    fitness: Literal["trust_reward", "accuracy", "neg_cross_entropy", "margin"] = (
        "trust_reward"
    )
    # the trust_reward fitness: reward per image, decay per generation or per image,
    # and whether a prediction is sampled from softmax or the argmax
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
    # lowrank mutation: rank of the first-layer noise A B^T
    noise_rank: int = 1

    ranges: ClassVar[dict[str, Range]] = {
        **StrategyConfig.ranges,
        "trust_decay": (0, 1, True, True),
        "trust_clamp": (0, INF, False, True),
        "top_fraction": (0, 1, False, True),
        "mutation_prob": (0, 1, True, True),
        "mutation_scale": (0, INF, True, True),
        "crossover_fraction": (0, 1, True, True),
        "self_adapt_tau": (0, 10, True, True),
        "child_trust_factor": (0, INF, True, True),
        "elitism": (0, INF, True, True),
        "noise_rank": (1, 4096, True, True),
    }


@dataclass(frozen=True, kw_only=True)
class SimpleGAConfig(StrategyConfig):
    """Truncation selection, elites and sparse mutation; only fitness order counts."""

    name: Literal["simple_ga"] = "simple_ga"
    top_fraction: float = 0.2
    elitism: int = 0
    mutation_prob: float = 0.07
    mutation_scale: float = 0.1
    # the initial genomes are multiplied by this (tanh saturates at 1.0)
    center_init_scale: float = 0.1

    ranges: ClassVar[dict[str, Range]] = {
        **StrategyConfig.ranges,
        "top_fraction": (0, 1, False, True),
        "elitism": (0, INF, True, True),
        "mutation_prob": (0, 1, True, True),
        "mutation_scale": (0, INF, True, True),
        "center_init_scale": (0, INF, True, True),
    }


@dataclass(frozen=True, kw_only=True)
class DistributionConfig(StrategyConfig):
    """What the distribution strategies (open_es, lowrank_es, unit_es, pgpe) share."""

    stdev_init: float = 0.02
    center_learning_rate: float = 0.01
    weight_decay: float = 0.0
    optimizer: Literal["adam", "clipup", "sgd"] = "adam"
    # the center starts as the first initial genome times this (tanh saturates at 1.0)
    center_init_scale: float = 0.1
    # "exponential": lr * learning_rate_decay**t at generation t; "cosine" / "linear":
    # from lr down to lr * learning_rate_floor at generation schedule_generations
    learning_rate_schedule: Literal["exponential", "cosine", "linear"] = "exponential"
    learning_rate_decay: float = 1.0
    learning_rate_floor: float = 0.0
    # length in generations of every cosine / linear schedule (0: none scheduled)
    schedule_generations: int = 0
    shaping: Literal["centered_ranks", "normalized"] = "centered_ranks"

    mirrored: ClassVar[bool] = True
    ranges: ClassVar[dict[str, Range]] = {
        **StrategyConfig.ranges,
        "stdev_init": (0, INF, False, True),
        "center_learning_rate": (0, INF, False, True),
        "weight_decay": (0, 1, True, False),
        "center_init_scale": (0, INF, True, True),
        "learning_rate_decay": (0, 1, False, True),
        "learning_rate_floor": (0, 1, True, True),
        "schedule_generations": (0, INF, True, True),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.learning_rate_schedule == "exponential":
            return
        self._needs_schedule_length("learning_rate_schedule")
        if self.learning_rate_decay != 1.0:
            raise ConfigError(
                f"strategy.learning_rate_decay: {self.learning_rate_decay} applies "
                "to the exponential schedule only; set it to 1.0 with "
                f"learning_rate_schedule {self.learning_rate_schedule!r}"
            )

    def _needs_schedule_length(self, knob: str) -> None:
        if self.schedule_generations == 0:
            raise ConfigError(
                f"strategy.{knob}: {getattr(self, knob)!r} needs "
                "strategy.schedule_generations > 0 (the schedule's length)"
            )


@dataclass(frozen=True, kw_only=True)
class IsotropicESConfig(DistributionConfig):
    """OpenAI-ES and its low-rank variant: one sampling stdev, optionally scheduled."""

    # "cosine" / "linear": from stdev_init down to stdev_init * stdev_floor at
    # generation schedule_generations
    stdev_schedule: Literal["constant", "cosine", "linear"] = "constant"
    stdev_floor: float = 1.0

    ranges: ClassVar[dict[str, Range]] = {
        **DistributionConfig.ranges,
        "stdev_floor": (0, 1, False, True),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stdev_schedule != "constant":
            self._needs_schedule_length("stdev_schedule")


@dataclass(frozen=True, kw_only=True)
class OpenESConfig(IsotropicESConfig):
    """OpenAI-ES: isotropic Gaussian noise of stdev `stdev_init`."""

    name: Literal["open_es"] = "open_es"
    # 0: fresh normals each generation, else slices of a fixed table of this size
    noise_table_size: int = 0

    ranges: ClassVar[dict[str, Range]] = {
        **IsotropicESConfig.ranges,
        "noise_table_size": (0, 2**31, True, True),
    }


@dataclass(frozen=True, kw_only=True)
class LowRankESConfig(IsotropicESConfig):
    """OpenAI-ES whose first-layer noise is low-rank."""

    name: Literal["lowrank_es"] = "lowrank_es"
    # rank of the first-layer noise A B^T
    noise_rank: int = 1
    # > 0: the rank moves linearly to this by generation schedule_generations
    noise_rank_final: int = 0
    # > 0: the population moves linearly to this by generation schedule_generations
    population_final: int = 0
    # noise on W2 (the hidden -> output matrix): dense normals, or a product u v^T of
    # the current noise rank, like W1's
    w2_noise: Literal["dense", "lowrank"] = "dense"

    ranges: ClassVar[dict[str, Range]] = {
        **IsotropicESConfig.ranges,
        "noise_rank": (1, 4096, True, True),
        "noise_rank_final": (0, 4096, True, True),
        "population_final": (0, 1_000_000, True, True),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.noise_rank_final:
            self._needs_schedule_length("noise_rank_final")
        if self.population_final:
            self._needs_schedule_length("population_final")
            if self.population_final < 2 or self.population_final % 2:
                raise ConfigError(
                    f"strategy.population_final: {self.population_final} must be "
                    "even and at least 2 (mirrored noise pairs)"
                )


@dataclass(frozen=True, kw_only=True)
class UnitESConfig(IsotropicESConfig):
    """OpenAI-ES whose every mirrored pair perturbs one hidden unit (cheap members)."""

    name: Literal["unit_es"] = "unit_es"


@dataclass(frozen=True, kw_only=True)
class PGPEConfig(DistributionConfig):
    """PGPE: one stdev per weight, learnt too, each step's change bounded."""

    name: Literal["pgpe"] = "pgpe"
    stdev_learning_rate: float = 0.1
    stdev_max_change: float = 0.2
    # 0: fresh normals each generation, else slices of a fixed table of this size
    noise_table_size: int = 0

    ranges: ClassVar[dict[str, Range]] = {
        **DistributionConfig.ranges,
        "stdev_learning_rate": (0, INF, True, True),
        "stdev_max_change": (0, 1, True, True),
        "noise_table_size": (0, 2**31, True, True),
    }


# strategy.name -> its config class (genreg.strategies.STRATEGIES has the same names)
STRATEGY_CONFIGS: dict[str, type[StrategyConfig]] = {
    "trust_ga": TrustGAConfig,
    "open_es": OpenESConfig,
    "lowrank_es": LowRankESConfig,
    "unit_es": UnitESConfig,
    "pgpe": PGPEConfig,
    "simple_ga": SimpleGAConfig,
}
DEFAULT_STRATEGY = "trust_ga"


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
    strategy: StrategyConfig = field(default_factory=TrustGAConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    analyze: AnalyzeConfig = field(default_factory=AnalyzeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        _check_ranges(self)
        _check_data_init(self)

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
    # the post's constants plus the uniform crossover of the author's code, for 1,500
    # generations: the one documented variant whose median over seeds reaches the
    # published 81.47% (docs/reproduction.md)
    "genreg-repro": {
        "strategy": {"name": "trust_ga", "crossover": "uniform"},
        "train": {"num_generations": 1500},
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
    # the Optuna study's winner over GENREG's knobs (examples/tune-genreg.yaml, 12
    # trials of 300 generations; docs/genreg_plus.md): genreg-plus with more crossover,
    # a wider hidden layer (784-128-10) and a faster-adapting mutation scale
    "genreg-tuned": {
        "model": {"init_weight": 0.1, "hidden": 128},
        "strategy": {
            "name": "trust_ga",
            "population_size": 1200,
            "fitness": "neg_cross_entropy",
            "trust_decay": 0.6,
            "top_fraction": 0.2,
            "parent_selection": "uniform",
            "crossover": "unit",
            "crossover_fraction": 0.77,
            "mutate_crossovers": True,
            "mutation": "lowrank",
            "noise_rank": 1,
            "mutation_scale": 0.0117,
            "self_adapt_tau": 0.116,
            "child_trust": "parent_mean",
            "elitism": 40,
        },
        "train": {"images_per_class": 11, "num_generations": 3000},
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


def build_config(
    params: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Config from a params mapping: defaults, then its preset, then its keys.

    `overrides` (dotted keys, e.g. {"train.num_generations": 5}) come last; their
    `preset`, if any, replaces the mapping's. A layer that names another strategy
    than the layers below keeps only the knobs the two strategies share.
    """
    params = dict(params or {})
    params.pop("tune", None)  # the Optuna study's section, read by pipelines.tune
    return _layered(params, params, unflatten(overrides or {}))


def params_file_config(
    params: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> Config:
    """Config from the mapping of a params file: a preset wins over written defaults.

    params.yaml writes every key out, most at its default value. Such a key is the
    default written out, not a choice: the preset's value wins over it. A key whose
    value differs from its default wins over the preset, and `overrides` over both.
    So `dvc exp run -S preset=fast` on the stock params.yaml runs the `fast` preset.
    """
    params = dict(params)
    params.pop("tune", None)
    return _layered(params, _without_defaults(params), unflatten(overrides or {}))


def load_params(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read a params file, apply dotted overrides, validate (`params_file_config`).

    Overrides are dotted keys, e.g. {"train.num_generations": 5}.
    """
    return params_file_config(read_params(path), overrides)


def read_params(path: str | Path) -> dict[str, Any]:
    """The mapping of a params file; ConfigError naming the file if it is not one."""
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
    return params


def with_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """A copy of `cfg` with dotted keys replaced, validated like params.yaml.

    Overriding `strategy.name` keeps the knobs the two strategies share.
    """
    return _build(Config, _layer(cfg.to_dict(), unflatten(overrides)), "")


def strategy_knobs(name: str) -> list[str]:
    """The keys of strategy `name` under `strategy:` (ConfigError if unknown)."""
    return _strategy_class(name, "strategy.name").knobs()


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


def _layered(
    params: Mapping[str, Any], kept: Mapping[str, Any], overrides: Mapping[str, Any]
) -> Config:
    """Preset (of `overrides`, else of `params`), then `kept`, then `overrides`."""
    preset = overrides.get("preset", params.get("preset"))
    merged: dict[str, Any] = {}
    if preset is not None:
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ConfigError(
                f"preset: unknown preset {preset!r}; allowed: {sorted(PRESETS)}"
            )
        merged = _layer(merged, PRESETS[preset])
    merged = _layer(_layer(merged, kept), overrides)
    return _build(Config, merged, "")


def _layer(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`update` merged over `base`; naming another strategy keeps the shared knobs."""
    new = update.get("strategy")
    old = base.get("strategy")
    if isinstance(new, Mapping) and isinstance(old, Mapping) and "name" in new:
        old_name = old.get("name", DEFAULT_STRATEGY)
        if new["name"] != old_name and new["name"] in STRATEGY_CONFIGS:
            base = {**base, "strategy": _shared_knobs(old, new["name"])}
    return _merge(base, update)


def _shared_knobs(section: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The knobs of `section` that strategy `name` has too, at values it accepts."""
    cls = STRATEGY_CONFIGS[name]
    hints = typing.get_type_hints(cls)
    kept = {}
    for knob, value in section.items():
        if knob == "name" or knob not in hints:
            continue
        try:
            _coerce(hints[knob], value, f"strategy.{knob}")
        except ConfigError:
            continue
        kept[knob] = value
    return kept


def _without_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a params mapping whose values differ from the defaults.

    A strategy knob is compared with the default of the strategy the mapping names.
    """
    section = params.get("strategy")
    name = section.get("name") if isinstance(section, Mapping) else None
    defaults = Config().to_dict()
    if name in STRATEGY_CONFIGS:
        defaults["strategy"] = {
            **_plain(dataclasses.asdict(STRATEGY_CONFIGS[name]())),
            "name": DEFAULT_STRATEGY,
        }
    return _differing(params, defaults)


def _differing(
    values: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        default = defaults.get(key, _MISSING)
        if isinstance(value, Mapping) and isinstance(default, Mapping):
            inner = _differing(value, default)
            if inner:
                out[key] = inner
        elif not _same(value, default):
            out[key] = value
    return out


_MISSING = object()


def _same(value: Any, default: Any) -> bool:
    """Equal and of the same kind (true is not 1; 1 and 1.0 are the same number)."""
    if isinstance(value, bool) or isinstance(default, bool):
        return type(value) is type(default) and value == default
    if isinstance(value, str | None) or isinstance(default, str | None):
        return type(value) is type(default) and value == default
    return bool(value == default)


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
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
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


def _strategy_class(name: Any, key: str) -> type[StrategyConfig]:
    if name not in STRATEGY_CONFIGS:
        raise ConfigError(
            f"{key}: {name!r} is not allowed; allowed: {sorted(STRATEGY_CONFIGS)}"
        )
    return STRATEGY_CONFIGS[name]


def _build_strategy(values: Any, key: str) -> StrategyConfig:
    """The config of the strategy `values["name"]` names; a foreign knob is an error."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{key}: expected a section (mapping), got {values!r}")
    name = values.get("name", DEFAULT_STRATEGY)
    cls = _strategy_class(name, f"{key}.name")
    knobs = cls.knobs()
    foreign = [k for k in values if k not in knobs]
    if foreign:
        knob = foreign[0]
        owners = sorted(n for n, c in STRATEGY_CONFIGS.items() if knob in c.knobs())
        if not owners:
            raise ConfigError(
                f"{key}.{knob}: unknown key (no strategy has it); "
                f"{name}'s knobs: {knobs}"
            )
        raise ConfigError(
            f"{key}.{knob}: not a knob of {name} (a knob of {', '.join(owners)}); "
            f"its knobs: {knobs}"
        )
    return _build(cls, values, key + ".")


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is StrategyConfig:
        return _build_strategy(value, key)
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


_AUGMENT_RANGES: dict[str, Range] = {
    "renders_per_font": (1, 1000, True, True),
    "shift": (0, 0.5, True, True),
    "rotation": (0, 90, True, True),
    "scale": (0, 0.9, True, True),
    "thickness": (0, 5, True, True),
}
# dotted key -> (low, high, low inclusive, high inclusive); strategy knobs are checked
# by their own config class (`StrategyConfig.ranges`)
_RANGES: dict[str, Range] = {
    "data.val_size": (0, INF, True, True),
    "data.alphabet.image_size": (8, 256, True, True),
    **{f"data.alphabet.{knob}": r for knob, r in _AUGMENT_RANGES.items()},
    **{f"data.alphabet.heldout.{knob}": r for knob, r in _AUGMENT_RANGES.items()},
    "model.hidden": (1, 4096, True, True),
    "model.init_weight": (0, INF, False, True),
    "model.init_bias": (0, INF, True, True),
    "model.pca_std": (0, 100, False, True),
    "model.ridge_alpha": (0, INF, True, True),
    "model.init_images": (0, INF, True, True),
    "train.num_generations": (1, INF, True, True),
    "train.images_per_class": (1, INF, True, True),
    "train.eval_every": (1, INF, True, True),
    "train.val_images": (1, INF, True, True),
    "train.checkpoint_every": (1, INF, True, True),
    "train.threads": (0, 1024, True, True),
    "train.max_seconds": (0, INF, True, True),
    "evaluate.batch_size": (1, INF, True, True),
    "analyze.num_samples": (10, INF, True, True),
    "analyze.n_neighbors": (2, 200, True, True),
    "analyze.min_dist": (0, 1, True, True),
}


def _check_ranges(cfg: Config) -> None:
    if not isinstance(cfg.strategy, StrategyConfig):
        raise ConfigError(f"strategy: expected a strategy config, got {cfg.strategy!r}")
    flat = flatten(_plain(dataclasses.asdict(cfg)))
    for key, bounds in _RANGES.items():
        section = key.rsplit(".", 1)[0]
        if section in flat and flat[section] is None:
            continue  # an optional section left null: data.alphabet.heldout
        _check_range(key, flat[key], bounds)


def _check_data_init(cfg: Config) -> None:
    """A data init sets a distribution strategy's starting center, unshrunk."""
    model, strategy = cfg.model, cfg.strategy
    if not model.data_init:
        return
    key = "model.init" if model.init != "uniform" else "model.readout"
    if not isinstance(strategy, DistributionConfig):
        raise ConfigError(
            f"{key}: a data init sets the starting center of a distribution strategy "
            f"(open_es, lowrank_es, unit_es, pgpe), not {strategy.name}'s population"
        )
    if strategy.center_init_scale != 1.0:
        raise ConfigError(
            f"strategy.center_init_scale: {strategy.center_init_scale} would shrink "
            f"the data init of {key}; set it to 1.0 (model.init_weight and init_bias "
            "scale the random part)"
        )


def _check_range(key: str, value: float, bounds: Range) -> None:
    low, high, low_inc, high_inc = bounds
    ok_low = value >= low if low_inc else value > low
    ok_high = value <= high if high_inc else value < high
    if not (ok_low and ok_high):
        lo = f"{'[' if low_inc else '('}{low:g}"
        hi = f"{high:g}{']' if high_inc else ')'}"
        raise ConfigError(f"{key}: {value!r} is out of range; allowed: {lo}, {hi}")


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
