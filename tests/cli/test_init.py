"""`lstm init CSV`: a starter config that `lstm train` accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.config import load_config
from tests.conftest import ROOT, write_csv

runner = CliRunner()


def test_init_seatbelts_writes_a_config_that_train_accepts(tmp_path: Path) -> None:
    out = tmp_path / "cfg" / "seatbelts.yaml"
    result = runner.invoke(
        app, ["init", str(ROOT / "data" / "seatbelts.csv"), "--target", "drivers", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "monthly" in result.output and "features: none" in result.output and "lstm train" in result.output
    raw = yaml.safe_load(out.read_text())
    # data.path is relative to the config's own directory.
    assert not Path(raw["data"]["path"]).is_absolute()
    assert (out.parent / raw["data"]["path"]).resolve() == (ROOT / "data" / "seatbelts.csv").resolve()
    cfg = load_config(out)
    assert cfg.data.target == ["drivers"] and cfg.data.date_column == "date" and cfg.model.n == 1
    assert (cfg.data.season, cfg.data.lookback, cfg.data.horizon) == (12, 24, 12)
    run = tmp_path / "run"
    trained = runner.invoke(
        app, ["train", str(out), "-q", "--set", "train.epochs=1", "--set", "model.m=4", "--set", f"output.dir={run}"]
    )
    assert trained.exit_code == 0, trained.output
    assert (run / "metrics.json").exists()


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "s.csv")
    out = tmp_path / "s.yaml"
    out.write_text("keep me\n")
    result = runner.invoke(app, ["init", str(csv), "--out", str(out)])
    assert result.exit_code == 2 and "--force" in result.output and "Traceback" not in result.output
    assert out.read_text() == "keep me\n"
    assert runner.invoke(app, ["init", str(csv), "--out", str(out), "--force"]).exit_code == 0
    assert load_config(out).data.target == ["y"]


def test_init_features_and_default_target(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "m.csv", columns=("a", "b", "c"))
    out = tmp_path / "m.yaml"
    result = runner.invoke(app, ["init", str(csv), "--feature", "c", "--out", str(out)])
    assert result.exit_code == 0, result.output
    cfg = load_config(out)
    assert cfg.data.target == ["a"] and cfg.data.features == ["c"] and cfg.model.n == 2
    assert "the first numeric column" in result.output


def test_init_without_dates_uses_s1_defaults(tmp_path: Path) -> None:
    csv = tmp_path / "plain.csv"
    csv.write_text("value,label\n" + "".join(f"{i % 7 + 0.5 * i},row{i}\n" for i in range(120)))
    out = tmp_path / "plain.yaml"
    result = runner.invoke(app, ["init", str(csv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    cfg = load_config(out)
    assert cfg.data.date_column is None and cfg.data.target == ["value"]
    assert (cfg.data.season, cfg.data.lookback, cfg.data.horizon) == (1, 16, 4)
    assert "ignored (not numeric): label" in result.output


def test_init_weekly_and_daily_periods(tmp_path: Path) -> None:
    import numpy as np

    for step, days, s, lookback, horizon in (("weekly", 7, 52, 48, 24), ("daily", 1, 7, 14, 7)):
        dates = np.datetime64("2001-01-01") + np.arange(400) * np.timedelta64(days, "D")
        csv = tmp_path / f"{step}.csv"
        csv.write_text("day,v\n" + "".join(f"{d},{i % 5}\n" for i, d in enumerate(dates)))
        out = tmp_path / f"{step}.yaml"
        result = runner.invoke(app, ["init", str(csv), "--out", str(out)])
        assert result.exit_code == 0, result.output
        cfg = load_config(out)
        assert (cfg.data.season, cfg.data.lookback, cfg.data.horizon) == (s, lookback, horizon), step
        assert step in result.output


def test_init_bad_target_is_one_line(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "s.csv")
    result = runner.invoke(app, ["init", str(csv), "--target", "nope", "--out", str(tmp_path / "x.yaml")])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "--target 'nope'" in result.output
    assert not (tmp_path / "x.yaml").exists()


def test_init_quotes_column_names_yaml_would_reinterpret(tmp_path: Path) -> None:
    csv_path = tmp_path / "col.csv"  # a column named "on", which YAML 1.1 reads as true
    rows = [f"{y}-{m:02d}-01,{m + y % 7}" for y in range(2000, 2008) for m in range(1, 13)]
    csv_path.write_text("date,on\n" + "\n".join(rows) + "\n")
    out = tmp_path / "col.yaml"
    result = runner.invoke(app, ["init", str(csv_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    shown = runner.invoke(app, ["config", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "- 'on'" in shown.output or '- "on"' in shown.output


def test_init_models_a_seasonal_swing_that_grows_with_the_level_as_log(tmp_path: Path) -> None:
    # AirPassengers' swing grows with its level (multiplicative); CO2's does not.
    for name, target, log in (("airpassengers", "passengers", True), ("co2_weekly", "co2", False)):
        out = tmp_path / f"{name}.yaml"
        result = runner.invoke(app, ["init", str(ROOT / "data" / f"{name}.csv"), "--target", target, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert (load_config(out).data.transform == "log") is log, name
        assert ("transform: log" in result.output) is log


def test_init_sizes_the_model_to_a_short_series(tmp_path: Path) -> None:
    out = tmp_path / "air.yaml"
    result = runner.invoke(app, ["init", str(ROOT / "data" / "airpassengers.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    cfg = load_config(out)
    # 144 rows, L 24, H 12: about 65 training windows, so 16 units (the batch: auto, at training)
    assert (cfg.model.m, cfg.train.batch_size) == (16, "auto")
    assert "65 training windows" in result.output


def test_init_keeps_the_default_size_for_a_long_series(tmp_path: Path) -> None:
    out = tmp_path / "co2.yaml"
    result = runner.invoke(app, ["init", str(ROOT / "data" / "co2_weekly.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_config(out).model.m == 64
    assert "training windows" not in result.output


def _long_file(path: Path, series: int, rows: int, id_column: str = "item") -> Path:
    import numpy as np

    lines = [f"{id_column},month,sales"]
    for i in range(series):
        for t in range(rows + i):  # series of different lengths
            month = np.datetime64("2015-01", "M") + np.timedelta64(t, "M")
            lines.append(f"s{i},{month}-01,{100 + 10 * np.sin(2 * np.pi * t / 12) + i + (t * 7 % 5):.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_init_finds_the_series_column_of_a_long_file_and_it_goes_through_train_and_predict(tmp_path: Path) -> None:
    data = _long_file(tmp_path / "long.csv", series=6, rows=60)
    out = tmp_path / "long.yaml"
    result = runner.invoke(app, ["init", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "series column item: 6 series of 60 to 65 rows (median 62)" in said
    cfg = yaml.safe_load(out.read_text())["data"]
    assert cfg["series_column"] == "item" and cfg["target"] == "sales"
    # 62 rows: a 70/15/15 split would hold out 9, fewer than H = 12, so each series' last rows are held out
    assert cfg["split"] == {"val": 12, "test": 12} and cfg["horizon"] == 12
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(out), "-q", "--set", "train.epochs=2", "--set", f"output.dir={run}"])
    assert trained.exit_code == 0, trained.output
    forecast = runner.invoke(app, ["predict", str(run), "--data", str(data), "--series", "s3", "--json"])
    assert forecast.exit_code == 0, forecast.output
    assert "2020-04-01" in forecast.output  # s3 has 63 rows, to 2020-03: the forecast starts the month after


def test_init_takes_the_series_column_it_is_given_and_refuses_one_not_in_the_file(tmp_path: Path) -> None:
    data = _long_file(tmp_path / "long.csv", series=3, rows=200, id_column="code")
    out = tmp_path / "c.yaml"
    result = runner.invoke(app, ["init", str(data), "--series-column", "code", "--out", str(out)])
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load(out.read_text())["data"]
    assert cfg["series_column"] == "code" and "split" not in cfg  # long series keep the 70/15/15 split
    bad = runner.invoke(app, ["init", str(data), "--series-column", "nope", "--out", str(tmp_path / "d.yaml")])
    assert bad.exit_code == 2 and "--series-column 'nope' is not in the file" in bad.output


def test_init_proposes_calendar_features_that_train_accepts_once_uncommented(tmp_path: Path) -> None:
    import numpy as np

    days = np.arange(np.datetime64("2022-01-01"), np.datetime64("2023-06-01"))
    (tmp_path / "d.csv").write_text("date,y\n" + "".join(f"{d},{10 + i % 7}\n" for i, d in enumerate(days)))
    out = tmp_path / "d.yaml"
    assert runner.invoke(app, ["init", str(tmp_path / "d.csv"), "--out", str(out)]).exit_code == 0
    text = out.read_text()
    assert "# calendar: [weekday, dayofyear]" in text and "add 4 to n" in text
    text = text.replace("# calendar:", "calendar:").replace("  n: 1 ", "  n: 5 ")
    out.write_text(text)
    assert load_config(out).data.calendar == ["weekday", "dayofyear"]


def test_init_names_only_the_window_length_it_shortened(tmp_path: Path) -> None:
    write_csv(tmp_path / "s.csv", rows=60)  # monthly: L = 24 fits, H = 12 leaves 9 validation rows
    result = runner.invoke(app, ["init", str(tmp_path / "s.csv"), "--out", str(tmp_path / "s.yaml")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "shortened to H = 9:" in said and "L = 24," not in said.split("shortened to")[1][:20]


def test_counts_read_as_english() -> None:
    from lstmcli.cli.render import plural

    assert plural(1, "window") == "1 window" and plural(2, "window") == "2 windows"
    assert plural(1527, "training window") == "1,527 training windows"


def test_init_proposes_the_text_columns_constant_within_each_series_as_static_categories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.cli.test_future_features import _regional_series

    monkeypatch.chdir(tmp_path)  # the run directory goes under the working directory

    data = _regional_series(tmp_path / "long.csv", {"a": "north", "b": "south", "c": "north"})
    out = tmp_path / "long.yaml"
    result = CliRunner().invoke(app, ["init", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    line = "# static_categories: {region: [north, south]}   # text constant within each series, one-hot: add 2 to n"
    assert line in text
    enabled = text.replace("# static_categories:", "static_categories:").replace("  n: 1 ", "  n: 3 ")
    out.write_text(enabled)
    trained = CliRunner().invoke(app, ["train", str(out), "-q", "--set", "train.epochs=2"])
    assert trained.exit_code == 0, trained.output
