"""Config: presets, overrides, and errors that name the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from genreg.config import (
    PRESETS,
    Config,
    ConfigError,
    build_config,
    load_params,
    parse_override,
    with_overrides,
)


def test_paper_preset_is_the_published_constants() -> None:
    s = build_config({"preset": "genreg-paper"}).strategy
    assert (s.population_size, s.reward_correct, s.reward_wrong) == (200, 10.0, -1.5)
    assert (s.trust_decay, s.decay_mode, s.trust_clamp, s.top_fraction) == (
        0.2,
        "generation",
        1e5,
        0.2,
    )
    assert (s.mutation_prob, s.mutation_scale, s.child_trust_factor) == (
        0.07,
        0.1,
        0.03,
    )
    assert (s.crossover, s.elitism, s.predictions) == ("none", 0, "sample")
    assert build_config({}).train.images_per_class == 20


def test_code_preset_and_overrides_win_over_preset() -> None:
    cfg = build_config({"preset": "genreg-code", "strategy": {"mutation_prob": 0.2}})
    assert cfg.strategy.reward_wrong == -2.5
    assert cfg.strategy.crossover == "uniform"
    assert cfg.strategy.mutation_prob == 0.2


def test_round_trip_through_dict() -> None:
    cfg = with_overrides(
        Config(), {"model.hidden": 32, "data.alphabet.train_fonts": ["a"]}
    )
    assert build_config(cfg.to_dict()) == cfg
    assert cfg.flat()["model.hidden"] == 32


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"strategy": {"mutation_scal": 0.1}},
            r"strategy\.mutation_scal: unknown key.*mutation_scale",
        ),
        ({"bogus": 1}, r"bogus: unknown key"),
        (
            {"strategy": {"population_size": "many"}},
            r"strategy\.population_size: expected an integer",
        ),
        (
            {"strategy": {"population_size": 1}},
            r"strategy\.population_size: 1 is out of range",
        ),
        (
            {"strategy": {"mutation_prob": 1.5}},
            r"strategy\.mutation_prob: 1\.5 is out of range; allowed: \[0, 1\]",
        ),
        (
            {"strategy": {"decay_mode": "daily"}},
            r"strategy\.decay_mode: 'daily' is not allowed; "
            r"allowed: \['generation', 'image'\]",
        ),
        (
            {"strategy": {"mutate_crossovers": "yes"}},
            r"strategy\.mutate_crossovers: expected true or false",
        ),
        (
            {"strategy": {"crossover": True}},
            r"strategy\.crossover: True is not allowed; "
            r"allowed: \['none', 'uniform', 'unit'\]",
        ),
        (
            {"strategy": {"crossover_fraction": 1.5}},
            r"strategy\.crossover_fraction: 1\.5 is out of range; allowed: \[0, 1\]",
        ),
        ({"model": 3}, r"model: expected a section"),
        ({"preset": "nope"}, r"preset: unknown preset 'nope'"),
        (
            {"strategy": {"elitism": 200}},
            r"strategy\.elitism: 200 must be below population_size",
        ),
    ],
)
def test_bad_params_name_the_key(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(params)


def test_load_params_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("model:\n  hidden: 32\n")
    assert load_params(bad, {"train.num_generations": 7}).train.num_generations == 7


def test_parse_override() -> None:
    assert parse_override("strategy.mutation_scale=0.05") == (
        "strategy.mutation_scale",
        0.05,
    )
    assert parse_override("strategy.crossover=unit") == ("strategy.crossover", "unit")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("strategy.crossover")


def test_every_preset_builds() -> None:
    for name in PRESETS:
        assert isinstance(build_config({"preset": name}), Config)
