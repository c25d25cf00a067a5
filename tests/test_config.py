"""Config: presets, overrides, and errors that name the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genreg.config import (
    PRESETS,
    STRATEGY_CONFIGS,
    Config,
    ConfigError,
    LowRankESConfig,
    OpenESConfig,
    TrustGAConfig,
    build_config,
    load_params,
    parse_override,
    strategy_knobs,
    with_overrides,
)

ROOT = Path(__file__).resolve().parents[1]


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
        (
            {"strategy": {"stdev_init": 0.1}},
            r"strategy\.stdev_init: not a knob of trust_ga \(a knob of lowrank_es, "
            r"open_es, pgpe, unit_es\); its knobs: \['name', 'population_size', "
            r".*'noise_rank'",
        ),
        (
            {"strategy": {"name": "open_es", "mutation_prob": 0.1}},
            r"strategy\.mutation_prob: not a knob of open_es .*'stdev_init'",
        ),
        (
            {"strategy": {"name": "open_es", "fitness": "trust_reward"}},
            r"strategy\.fitness: 'trust_reward' is not allowed",
        ),
        (
            {"strategy": {"name": "pgpe", "population_size": 7}},
            r"strategy\.population_size: 7 must be even for pgpe",
        ),
        (
            {"strategy": {"name": "es"}},
            r"strategy\.name: 'es' is not allowed; allowed: \['lowrank_es'",
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
        (
            {"strategy": {"name": "open_es", "learning_rate_schedule": "cosine"}},
            r"strategy\.learning_rate_schedule: 'cosine' needs "
            r"strategy\.schedule_generations > 0",
        ),
        (
            {
                "preset": "fast",
                "strategy": {
                    "learning_rate_schedule": "linear",
                    "schedule_generations": 100,
                },
            },
            r"strategy\.learning_rate_decay: 0\.999 applies to the exponential",
        ),
        (
            {"strategy": {"name": "lowrank_es", "stdev_schedule": "cosine"}},
            r"strategy\.stdev_schedule: 'cosine' needs strategy\.schedule_generations",
        ),
        (
            {"strategy": {"name": "pgpe", "stdev_schedule": "cosine"}},
            r"strategy\.stdev_schedule: not a knob of pgpe",
        ),
        (
            {"strategy": {"name": "lowrank_es", "stdev_floor": 0}},
            r"strategy\.stdev_floor: 0\.0 is out of range",
        ),
        (
            {"strategy": {"name": "lowrank_es", "noise_rank_final": 4}},
            r"strategy\.noise_rank_final: 4 needs strategy\.schedule_generations",
        ),
        (
            {
                "strategy": {
                    "name": "lowrank_es",
                    "population_final": 301,
                    "schedule_generations": 10,
                }
            },
            r"strategy\.population_final: 301 must be even",
        ),
        (
            {"strategy": {"name": "lowrank_es", "w2_noise": "sparse"}},
            r"strategy\.w2_noise: 'sparse' is not allowed",
        ),
        ({"model": {"init": "svd"}}, r"model\.init: 'svd' is not allowed"),
        ({"model": {"readout": "lasso"}}, r"model\.readout: 'lasso' is not allowed"),
        ({"model": {"pca_std": 0}}, r"model\.pca_std: 0\.0 is out of range"),
        ({"model": {"ridge_alpha": -1}}, r"model\.ridge_alpha: -1\.0 is out of range"),
        ({"model": {"init_images": -5}}, r"model\.init_images: -5 is out of range"),
        (
            {"model": {"init": "pca"}},
            r"model\.init: a data init sets the starting center of a distribution "
            r"strategy \(open_es, lowrank_es, unit_es, pgpe\), not trust_ga's "
            r"population",
        ),
        (
            {"preset": "fast", "model": {"readout": "ridge"}},
            r"strategy\.center_init_scale: 0\.1 would shrink the data init of "
            r"model\.readout; set it to 1\.0",
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


def test_each_strategy_config_holds_only_its_knobs() -> None:
    assert set(strategy_knobs("simple_ga")) == {
        "name",
        "population_size",
        "fitness",
        "top_fraction",
        "elitism",
        "mutation_prob",
        "mutation_scale",
        "center_init_scale",
    }
    assert "stdev_init" not in strategy_knobs("trust_ga")
    assert "reward_wrong" not in strategy_knobs("lowrank_es")
    assert set(strategy_knobs("pgpe")) - set(strategy_knobs("open_es")) == {
        "stdev_learning_rate",
        "stdev_max_change",
    }
    for name, cls in STRATEGY_CONFIGS.items():
        assert cls().name == name
        assert Config(strategy=cls()).flat()["strategy.name"] == name
    with pytest.raises(ConfigError, match=r"strategy\.mutation_prob: 2 is out"):
        TrustGAConfig(mutation_prob=2)


def test_params_yaml_then_preset_override_gives_the_preset(tmp_path: Path) -> None:
    # `dvc exp run -S preset=fast` writes preset: fast into params.yaml; its other
    # keys are the defaults written out, so the preset wins over them
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert load_params(ROOT / "params.yaml") == Config()
    for preset in PRESETS:
        path = tmp_path / f"{preset}.yaml"
        path.write_text(yaml.safe_dump({**params, "preset": preset}))
        assert load_params(path) == build_config({"preset": preset})
        assert load_params(ROOT / "params.yaml", {"preset": preset}) == build_config(
            {"preset": preset}
        )
    # a key that differs from its default wins over the preset
    params["train"]["num_generations"] = 5
    params["strategy"]["population_size"] = 8
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump({**params, "preset": "fast"}))
    cfg = load_params(path)
    assert isinstance(cfg.strategy, LowRankESConfig)
    assert (cfg.strategy.population_size, cfg.train.num_generations) == (8, 5)
    assert cfg.strategy.learning_rate_decay == 0.999  # the rest from the preset
    # a changed trust-GA knob does not fit the fast preset's strategy: an error
    params["strategy"]["mutation_prob"] = 0.1
    path.write_text(yaml.safe_dump({**params, "preset": "fast"}))
    with pytest.raises(ConfigError, match=r"mutation_prob: not a knob of lowrank_es"):
        load_params(path)
    # -S overrides win over everything, default values included
    cfg = load_params(path, {"preset": "genreg-code", "strategy.mutation_prob": 0.07})
    assert (cfg.strategy.reward_wrong, cfg.strategy.mutation_prob) == (-2.5, 0.07)


def test_a_mapping_keeps_keys_at_default_values_over_its_preset() -> None:
    cfg = build_config({"preset": "genreg-code", "strategy": {"trust_decay": 0.2}})
    assert (cfg.strategy.trust_decay, cfg.strategy.decay_mode) == (0.2, "image")


def test_naming_another_strategy_keeps_the_shared_knobs() -> None:
    fast = build_config({"preset": "fast"})
    cfg = with_overrides(fast, {"strategy.name": "open_es"})
    assert isinstance(cfg.strategy, OpenESConfig)
    assert cfg.strategy.population_size == fast.strategy.population_size == 1000
    assert cfg.strategy.fitness == "neg_cross_entropy"
    assert cfg.strategy.learning_rate_decay == 0.999
    trust = with_overrides(Config(), {"strategy.name": "open_es"}).strategy
    assert trust == OpenESConfig()  # trust_reward is no fitness of open_es: dropped
    cfg = build_config({"preset": "fast", "strategy": {"name": "trust_ga"}})
    assert cfg.strategy.population_size == 1000 and cfg.train.num_generations == 3000


@pytest.mark.parametrize(
    "path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda path: path.name
)
def test_every_example_params_file_builds(path: Path) -> None:
    """The README's example files stay valid as the keys change."""
    cfg = load_params(path)
    assert cfg.to_dict()["preset"] == yaml.safe_load(path.read_text()).get("preset")
