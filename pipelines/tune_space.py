"""Settings and search space of the Optuna study: the `tune:` section of params.yaml.

`genreg.config` does not read this section; `load_tune` pops it before building the
Config, and every error names the `tune.<key>` at fault. Searched keys are dotted
params keys, applied with `genreg.config.with_overrides`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from genreg.config import (
    Config,
    ConfigError,
    params_file_config,
    strategy_knobs,
    with_overrides,
)

PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random")
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "strategy.population_size": {"type": "int", "low": 50, "high": 400, "step": 50},
    "strategy.mutation_scale": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
    "strategy.mutation_prob": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
    "model.hidden": {"type": "int", "low": 16, "high": 256, "log": True},
    "strategy.top_fraction": {"type": "float", "low": 0.05, "high": 0.5},
    "strategy.child_trust_factor": {"type": "float", "low": 0.0, "high": 1.0},
    "train.images_per_class": {"type": "int", "low": 5, "high": 50, "log": True},
    "strategy.predictions": {"type": "categorical", "choices": ["sample", "argmax"]},
}


@dataclass(frozen=True)
class ParamSpec:
    """One searched knob: a float/int range (optionally log or stepped) or choices."""

    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class TuneSettings:
    """The `tune:` section of params.yaml, validated."""

    study_name: str = "genreg"
    storage: str = "optuna_journal.log"
    n_trials: int = 30
    timeout_s: float | None = 3000.0
    num_generations: int = 300
    target: float = 0.90
    pruner: str = "median"
    pruner_startup_trials: int = 5
    pruner_warmup_steps: int = 50
    sampler: str = "tpe"
    sampler_seed: int | None = None
    # database storages: a worker beats every heartbeat_s seconds; a RUNNING trial
    # silent for grace_period_s (default 2 * heartbeat_s) is failed and re-queued
    heartbeat_s: int | None = 60
    grace_period_s: int | None = None
    max_retry: int = 1
    space: dict[str, ParamSpec] = field(default_factory=dict)


def load_tune(
    params_path: Path, overrides: Mapping[str, Any] | None = None
) -> tuple[Config, TuneSettings]:
    """Config (without the `tune:` section) and the study settings of a params file."""
    params = _read_params(params_path)
    section = params.pop("tune", None) or {}
    cfg = params_file_config(params, overrides)
    return cfg, parse_settings(section, cfg)


def read_tune_section(params_path: Path) -> dict[str, Any]:
    """The raw `tune:` mapping of a params file ({} if file or section is absent)."""
    return _read_params(params_path).get("tune") or {}


def _read_params(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    return params


def parse_settings(section: Mapping[str, Any], cfg: Config) -> TuneSettings:
    """Validate a `tune:` mapping; errors name the `tune.<key>` at fault."""
    if not isinstance(section, Mapping):
        raise ConfigError(f"tune: expected a section (mapping), got {section!r}")
    allowed = {f for f in TuneSettings.__dataclass_fields__ if f != "space"} | {"space"}
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(f"tune.{unknown[0]}: unknown key; allowed: {sorted(allowed)}")
    values = {k: v for k, v in section.items() if k != "space"}
    checks = {
        "study_name": (str,),
        "storage": (str,),
        "n_trials": (int,),
        "timeout_s": (int, float, type(None)),
        "num_generations": (int,),
        "target": (int, float),
        "pruner": (str,),
        "pruner_startup_trials": (int,),
        "pruner_warmup_steps": (int,),
        "sampler": (str,),
        "sampler_seed": (int, type(None)),
        "heartbeat_s": (int, type(None)),
        "grace_period_s": (int, type(None)),
        "max_retry": (int,),
    }
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, checks[key]):
            raise ConfigError(f"tune.{key}: {value!r} has the wrong type")
    settings = TuneSettings(**values)
    _check_settings(settings)
    raw_space = section.get("space", DEFAULT_SPACE)
    if not isinstance(raw_space, Mapping) or not raw_space:
        raise ConfigError(
            "tune.space: expected a non-empty mapping of dotted keys to specs"
        )
    space = {key: _parse_spec(key, spec, cfg) for key, spec in raw_space.items()}
    return replace(settings, space=space)


def _check_settings(s: TuneSettings) -> None:
    if s.n_trials < 1 or s.num_generations < 1:
        raise ConfigError("tune.n_trials and tune.num_generations: must be at least 1")
    if s.timeout_s is not None and s.timeout_s <= 0:
        raise ConfigError(f"tune.timeout_s: {s.timeout_s!r} must be positive (or null)")
    if s.pruner not in PRUNERS:
        raise ConfigError(
            f"tune.pruner: {s.pruner!r} is not allowed; allowed: {PRUNERS}"
        )
    if s.sampler not in SAMPLERS:
        raise ConfigError(
            f"tune.sampler: {s.sampler!r} is not allowed; allowed: {SAMPLERS}"
        )
    if s.pruner_startup_trials < 0 or s.pruner_warmup_steps < 0:
        raise ConfigError(
            "tune.pruner_startup_trials/pruner_warmup_steps: must be >= 0"
        )
    for key in ("heartbeat_s", "grace_period_s"):
        value = getattr(s, key)
        if value is not None and value < 1:
            raise ConfigError(f"tune.{key}: {value!r} must be at least 1 (or null)")
    if s.grace_period_s is not None and (
        s.heartbeat_s is None or s.grace_period_s <= s.heartbeat_s
    ):
        raise ConfigError(
            f"tune.grace_period_s: {s.grace_period_s!r} must exceed tune.heartbeat_s "
            f"({s.heartbeat_s!r}), or a live trial would be failed between two beats"
        )
    if s.max_retry < 0:
        raise ConfigError(f"tune.max_retry: {s.max_retry!r} must be >= 0")


def _parse_spec(key: str, spec: Any, cfg: Config) -> ParamSpec:
    where = f"tune.space.{key}"
    if key.startswith("strategy.") and key not in cfg.flat():
        name = cfg.strategy.name
        raise ConfigError(
            f"{where}: not a knob of {name}; its knobs: {strategy_knobs(name)}"
        )
    if key not in cfg.flat():
        raise ConfigError(f"{where}: not a params key (e.g. strategy.mutation_scale)")
    if not isinstance(spec, Mapping) or spec.get("type") not in (
        "float",
        "int",
        "categorical",
    ):
        raise ConfigError(f"{where}: expected {{type: float | int | categorical, ...}}")
    extra = sorted(set(spec) - set(ParamSpec.__dataclass_fields__))
    if extra:
        raise ConfigError(f"{where}.{extra[0]}: unknown key")
    if spec["type"] == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices: expected a non-empty list")
        parsed = ParamSpec("categorical", choices=tuple(choices))
        probes = list(choices)
    else:
        low, high = spec.get("low"), spec.get("high")
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)
        ):
            raise ConfigError(f"{where}: low and high must be numbers")
        if low >= high:
            raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
        log, step = bool(spec.get("log", False)), spec.get("step")
        if log and (step is not None or low <= 0):
            raise ConfigError(f"{where}: log needs low > 0 and no step")
        parsed = ParamSpec(spec["type"], low, high, log, step)
        probes = [int(low), int(high)] if spec["type"] == "int" else [low, high]
    for value in probes:  # the ends of the range must be valid configs themselves
        try:
            with_overrides(cfg, {key: value})
        except ConfigError as exc:
            raise ConfigError(
                f"{where}: {value!r} is not a valid value: {exc}"
            ) from exc
    return parsed
