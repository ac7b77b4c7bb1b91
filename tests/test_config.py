"""The one config schema: defaults, bounds, overrides, unknown keys, YAML errors named by line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.config import Config, apply_overrides, load_config
from lstmcli.errors import ConfigError
from tests.conftest import ROOT, write_config

runner = CliRunner()


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates_and_points_at_real_data(path: Path) -> None:
    cfg = load_config(path)
    assert Path(cfg.data.path).is_file()
    assert cfg.model.n == len(cfg.data.columns)


def test_defaults_and_relative_data_path(tiny_config: Path) -> None:
    cfg = load_config(tiny_config)
    assert cfg.data.path == str(tiny_config.parent / "series.csv")
    assert cfg.data.target == ["y"]
    assert (cfg.data.split.train, cfg.data.split.val) == (0.70, 0.15)
    assert cfg.train.optimizer == "adamw"


def test_config_is_frozen(tiny_config: Path) -> None:
    cfg = load_config(tiny_config)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.model.m = 3  # type: ignore[misc]


def test_yaml_scientific_notation_string_is_accepted(tmp_path: Path) -> None:
    # PyYAML reads 1e-3 as a string; lax mode must still turn it into a float.
    cfg = load_config(write_config(tmp_path / "c.yaml", train={"lr": "1e-3"}))
    assert cfg.train.lr == pytest.approx(1e-3)


def test_overrides_parse_yaml_values_and_nest(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, ["train.lr=5e-4", "model.m=16", "data.target=[y]", "output.dir=elsewhere"])
    assert cfg.train.lr == pytest.approx(5e-4)
    assert cfg.model.m == 16
    assert cfg.output.dir == "elsewhere"


def test_apply_overrides_does_not_mutate_input() -> None:
    raw = {"train": {"lr": 1}}
    new = apply_overrides(raw, ["train.lr=2"])
    assert raw == {"train": {"lr": 1}} and new == {"train": {"lr": 2}}


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.lr", "expected KEY.PATH=VALUE"),
        ("=3", "expected KEY.PATH=VALUE"),
        ("model.m.x=3", "model.m is a value, not a section"),
        ("model.mm=3", "unknown key 'model.mm' (did you mean 'model.m'?)"),
        ("train.lr=[1", "not valid YAML"),
    ],
)
def test_bad_overrides(tiny_config: Path, override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_config(tiny_config, [override])
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("sections", "needle"),
    [
        ({"model": {"mm": 4}}, "unknown key 'model.mm' (did you mean 'model.m'?)"),
        ({"train": {"epoch": 4}}, "unknown key 'train.epoch' (did you mean 'train.epochs'?)"),
        ({"model": {"m": -3}}, "model.m: input should be greater than 0, got -3"),
        ({"model": {"m": "big"}}, "model.m: input should be a valid integer"),
        ({"model": {"layers": 0}}, "model.layers: input should be greater than 0"),
        ({"model": {"n": 2}}, "model.n is 2 but data.target + data.features name 1 column(s) (y)"),
        ({"model": {"dropout": 1.5}}, "model.dropout: input should be less than 1"),
        ({"data": {"lookback": None}}, "missing required key 'data.lookback'"),
        (
            {"data": {"split": {"train": 0.9, "val": 0.2}}},
            "train + val must be below 1 to leave a test split, got 0.9 + 0.2",
        ),
        ({"data": {"features": ["y"]}}, "column 'y' is listed twice"),
        ({"train": {"device": "tpu"}}, "train.device: input should be 'auto', 'cpu', 'cuda' or 'mps'"),
        ({"train": {"ensemble": 0}}, "train.ensemble: input should be greater than or equal to 1, got 0"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, sections: dict, needle: str) -> None:
    path = write_config(tmp_path / "bad.yaml", **sections)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(str(path)), msg
    assert needle in msg, msg
    assert "\n" not in msg and "got a mapping" not in msg, msg  # a section's check names its values


def test_unknown_top_level_section(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml")
    raw = yaml.safe_load(path.read_text())
    raw["trian"] = {}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"unknown key 'trian' \(did you mean 'train'\?\)"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model: {n: 1\n", "malformed YAML at line"),
        ("", "config is empty"),
        ("- a\n- b\n", "expected a mapping"),
        ("model:\n  n: 1\n\tm: 2\n", "malformed YAML"),
    ],
)
def test_malformed_yaml(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_round_trip_through_yaml(tiny_config: Path) -> None:
    cfg = load_config(tiny_config)
    again = Config.model_validate(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_a_tilde_in_output_dir_and_data_path_means_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lstmcli.config import default_run_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    config = write_config(tmp_path / "c.yaml", csv="~/series.csv", output={"dir": "~/runs/x"})
    cfg = load_config(config)
    assert cfg.data.path == str(tmp_path / "series.csv")
    assert default_run_dir(config, cfg) == tmp_path / "runs" / "x"


def test_seed_out_of_range_is_a_config_error(tiny_config: Path) -> None:
    result = runner.invoke(app, ["config", str(tiny_config), "--set", "train.seed=99999999999999999999999"])
    assert result.exit_code == 2 and "train.seed" in result.output


@pytest.mark.parametrize(
    ("season", "problem"),
    [
        ([168, 24], "shortest first"),
        ([24, 24], "once"),
        ([], "1 or more"),
        (0, "1 or more"),
        ("abc", "whole number of steps"),
        ([12, "x"], "the list holds 'x'"),
        (True, "whole number of steps"),
    ],
)
def test_seasons_are_listed_once_shortest_first(tmp_path: Path, season: object, problem: str) -> None:
    path = write_config(tmp_path / "c.yaml", data={"season": season})
    with pytest.raises(ConfigError, match=problem):
        load_config(path)


def test_a_list_of_seasons_gives_s_and_the_longer_ones(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"season": [24, 168]})).data
    assert (cfg.s, cfg.seasons) == (24, (24, 168))
    one = load_config(write_config(tmp_path / "d.yaml", data={"season": [12]})).data
    assert one.season == 12 and one.seasons == (12,)


@pytest.mark.parametrize(
    ("model", "data", "problem"),
    [
        (
            {"normalize": "mean"},
            {"lookback": 24},
            "model.drift continues model.normalize's base, so it needs normalize last or season, got 'mean'",
        ),
        (
            {"normalize": "season"},
            {"lookback": 12},
            "model.drift reads the trend as the change over a whole season (s = 12), so it needs data.lookback "
            "longer than 12, got 12",
        ),
    ],
)
def test_drift_without_a_trend_to_read_is_refused_naming_the_keys(
    tmp_path: Path, model: dict, data: dict, problem: str
) -> None:
    path = write_config(tmp_path / "c.yaml", model={**model, "drift": True}, data=data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {problem}"
