"""Known-future covariates (data.future_features): the model reads their values for the steps it
forecasts, never the future targets; predict takes those values from --future."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.data.windows import Windows
from tests.conftest import one_line_error, write_config

runner = CliRunner()
ROWS = 240


def _promo_csv(path: Path, rows: int = ROWS, series: tuple[str, ...] = ()) -> Path:
    """A monthly series whose value jumps by 4 in the months of a promotion, planned in advance
    (a random 0/1 flag): only a model that knows the flag for the forecast months can foresee it."""
    rng = np.random.default_rng(7)
    ids = series or ("",)
    lines = ["series,date,y,promo" if series else "date,y,promo"]
    for sid in ids:
        promo = (rng.random(rows) < 0.3).astype(int)
        for t in range(rows):
            month = np.datetime64("1990-01", "M") + np.timedelta64(t, "M")
            y = 10 + 2 * np.sin(2 * np.pi * t / 12) + 4 * promo[t] + rng.normal(0, 0.2)
            lines.append(f"{sid + ',' if series else ''}{month}-01,{y:.4f},{promo[t]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(tmp_path: Path, name: str, data: dict, n: int = 2, **sections: dict) -> Path:
    cfg = write_config(
        tmp_path / f"{name}.yaml",
        csv="promo.csv",
        model={"n": n, "m": 16, "layers": 1},
        data=data,
        train={"epochs": 40, "batch_size": 16, "patience": 40},
        output={"dir": str(tmp_path / name)},
        **sections,
    )
    result = runner.invoke(app, ["train", str(cfg), "-q"])
    assert result.exit_code == 0, result.output
    return tmp_path / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("future")
    _promo_csv(d / "promo.csv")
    return {
        "future": _train(d, "future", {"future_features": ["promo"]}),
        "past": _train(d, "past", {"features": ["promo"]}),
    }


def _mae(run: Path) -> float:
    return float(json.loads((run / "metrics.json").read_text())["test"]["model"]["MAE"])


def test_a_known_future_flag_is_foreseen_and_a_past_only_one_is_not(runs: dict[str, Path]) -> None:
    # by default the run with the flag known ahead is never averaged with Theta, which cannot see it
    assert "combination" not in json.loads((runs["future"] / "metrics.json").read_text())
    assert "combination" in json.loads((runs["past"] / "metrics.json").read_text())
    # the promotion's jump (4) dominates the error of a model that cannot see it coming
    assert _mae(runs["future"]) < 0.6 * _mae(runs["past"]), (_mae(runs["future"]), _mae(runs["past"]))


def test_windows_give_the_model_the_future_columns_and_never_the_future_targets() -> None:
    series = torch.arange(40, dtype=torch.float32).reshape(20, 2)  # column 0 the target, 1 known ahead
    w = Windows(series, lookback=4, horizon=3, n_targets=1, future=[1])
    x = w.inputs(torch.tensor([10]))[0]  # (L + H, n)
    assert x.shape == (7, 2)
    assert torch.equal(x[:4], series[6:10])  # the lookback: every column
    assert torch.all(x[4:, 0] == 0) and torch.equal(x[4:, 1], series[10:13, 1])  # ahead: the flag alone


def test_predict_needs_the_future_values_and_names_the_first_missing_row(runs: dict[str, Path], tmp_path: Path) -> None:
    run, data = runs["future"], str(runs["future"].parent / "promo.csv")
    text = one_line_error(runner.invoke(app, ["predict", str(run), "--data", data]))
    assert "known-future column(s) promo" in text and "--future" in text and "3 step(s)" in text
    future = tmp_path / "f.csv"
    future.write_text("date,promo\n2010-01-01,1\n2010-02-01,0\n")  # the data ends 2009-12: one row short
    text = one_line_error(runner.invoke(app, ["predict", str(run), "--data", data, "--future", str(future)]))
    assert "has 2 row(s) of promo" in text and "the first missing: 2010-03-01" in text
    forecasts = {}
    for flags in ("0,0,0", "1,1,1"):
        rows = "".join(f"2010-{m:02d}-01,{f}\n" for m, f in zip((1, 2, 3), flags.split(","), strict=True))
        future.write_text("date,promo\n" + rows)
        result = runner.invoke(app, ["predict", str(run), "--data", data, "--future", str(future), "--json"])
        assert result.exit_code == 0, result.output
        forecasts[flags] = np.array(json.loads(result.output)["forecast"]["y"])
    lift = forecasts["1,1,1"] - forecasts["0,0,0"]
    # the model learned most of the promotion's jump (4) at every step: 40 epochs on 40 windows learn
    # 2.0 to 3.1 of it, depending on the CPU's float rounding
    assert np.all(lift > 1) and lift.mean() > 2, lift


def test_future_values_beyond_h_feed_the_recursive_forecast(runs: dict[str, Path], tmp_path: Path) -> None:
    run, data = runs["future"], str(runs["future"].parent / "promo.csv")
    future = tmp_path / "f.csv"
    future.write_text("date,promo\n" + "".join(f"2010-{m:02d}-01,{m % 2}\n" for m in range(1, 7)))
    result = runner.invoke(
        app, ["predict", str(run), "--data", data, "--future", str(future), "--steps", "5", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["forecast"]["y"]) == 5


def test_a_backtest_of_the_test_split_reproduces_metrics_json(runs: dict[str, Path]) -> None:
    run = runs["future"]
    args = ["predict", str(run), "--data", str(run.parent / "promo.csv"), "--backtest", "--split", "test", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (
        json.loads(result.output)["metrics"]["model"] == json.loads((run / "metrics.json").read_text())["test"]["model"]
    )


def test_inspect_shows_what_the_head_reads(runs: dict[str, Path]) -> None:
    text = " ".join(runner.invoke(app, ["inspect", str(runs["future"])]).output.split())
    assert "known-future features promo" in text
    assert "Head: Linear [y_t (16), known-future values (3 steps × 1)] → 3" in text


def test_a_multi_series_run_reads_each_series_future_from_a_long_file(tmp_path: Path) -> None:
    _promo_csv(tmp_path / "promo.csv", rows=120, series=("a", "b"))
    run = _train(tmp_path, "multi", {"future_features": ["promo"], "series_column": "series"})
    future = tmp_path / "f.csv"
    future.write_text(
        "series,date,promo\n" + "".join(f"{s},2000-{m:02d}-01,{int(s == 'b')}\n" for s in "ab" for m in (1, 2, 3))
    )
    args = ["predict", str(run), "--data", str(tmp_path / "promo.csv"), "--future", str(future), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)["series"]
    assert set(got) == {"a", "b"}
    future.write_text("series,date,promo\n" + "".join(f"a,2000-{m:02d}-01,0\n" for m in (1, 2, 3)))
    text = one_line_error(runner.invoke(app, args[:-1]))
    assert "has no rows of series 'b'" in text


def test_calendar_phases_of_known_dates() -> None:
    from lstmcli.data.calendar_features import calendar_values, phase

    d = np.array(["2024-01-01", "2024-03-15T06:30", "2024-12-31"], dtype="datetime64[s]")
    assert phase(d, "weekday").tolist() == pytest.approx([0, 4 / 7, 1 / 7])  # Monday, Friday, Tuesday
    assert phase(d, "month").tolist() == pytest.approx([0, 2 / 12, 11 / 12])
    assert phase(d, "hour").tolist() == pytest.approx([0, 6.5 / 24, 0])
    assert phase(d, "minute").tolist() == pytest.approx([0, 0.5, 0])
    v = calendar_values(d, ["month"])
    assert v.shape == (3, 2) and np.allclose(v[:, 0] ** 2 + v[:, 1] ** 2, 1.0) and v[0].tolist() == [0.0, 1.0]


@pytest.fixture(scope="module")
def calendar_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cal")
    _promo_csv(d / "promo.csv")
    return _train(d, "cal", {"calendar": ["month", "dayofyear"]}, n=5)


def test_calendar_columns_in_predict_equal_those_of_training_for_the_same_dates(calendar_run: Path) -> None:
    from lstmcli.commands.predict import _future_values
    from lstmcli.config import load_config
    from lstmcli.data.dataset import load_dataset
    from lstmcli.runs.inputs import read_series
    from lstmcli.runs.run import load_run

    run = load_run(calendar_run)
    full = calendar_run.parent / "promo.csv"
    cut = calendar_run.parent / "cut.csv"  # the data without its last 3 months: predict forecasts those
    cut.write_text("\n".join(full.read_text().splitlines()[: 1 + ROWS - 3]) + "\n")
    series = read_series(run, cut, 12, "test")[0]
    ahead = _future_values(run, series, None, "MS", 3)  # (3, n - k): the calendar's 4 columns
    trained = load_dataset(load_config(calendar_run.parent / "cal.yaml").data).scaled
    assert ahead is not None and ahead.shape == (3, 4)
    assert np.array_equal(ahead, trained[-3:, 1:])  # bit for bit, for the dates after the data
    assert np.array_equal(series.scaled[:, 1:], trained[:-3, 1:])  # and for the data's own dates


def test_a_calendar_run_forecasts_without_a_future_file_and_refuses_one(calendar_run: Path) -> None:
    data = str(calendar_run.parent / "promo.csv")
    result = runner.invoke(app, ["predict", str(calendar_run), "--data", data, "--steps", "7", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["forecast"]["y"]) == 7
    text = one_line_error(runner.invoke(app, ["predict", str(calendar_run), "--data", data, "--future", data]))
    assert "calendar features come from the dates" in text
    shown = " ".join(runner.invoke(app, ["inspect", str(calendar_run)]).output.split())
    assert "calendar month, dayofyear (sin/cos from the dates)" in shown


def test_holiday_counts_per_period() -> None:
    from lstmcli.data.calendar_features import holiday_counts

    days = np.array(["2023-07-03", "2023-07-04", "2023-07-05"], dtype="datetime64[s]")
    assert holiday_counts(days, "US", "D").tolist() == [0, 1, 0]  # Independence Day
    months = np.array(["2023-11-01", "2023-12-01"], dtype="datetime64[s]")
    # November: Veterans Day (a Saturday, observed on Friday the 10th) and Thanksgiving; December (to
    # the next month at the monthly step): Christmas
    assert holiday_counts(months, "US", "MS").tolist() == [3, 1]


def test_a_holiday_run_forecasts_the_holiday_drop(tmp_path: Path) -> None:
    import holidays

    known = holidays.country_holidays("US", years=range(2021, 2025))
    days = np.arange(np.datetime64("2021-01-01"), np.datetime64("2023-12-22"))  # the forecast: Dec 22-28
    rng = np.random.default_rng(3)
    lines = ["date,y"] + [
        f"{d},{100 + 10 * np.sin(2 * np.pi * i / 7) - 40 * (d.astype(object) in known) + rng.normal(0, 1):.3f}"
        for i, d in enumerate(days)
    ]
    (tmp_path / "promo.csv").write_text("\n".join(lines) + "\n")
    data = {"holidays": "US", "lookback": 14, "horizon": 7, "season": 7}
    run = _train(tmp_path, "hol", data, n=2)
    result = runner.invoke(app, ["predict", str(run), "--data", str(tmp_path / "promo.csv"), "--json"])
    assert result.exit_code == 0, result.output
    forecast = json.loads(result.output)
    by_date = dict(zip(forecast["index"], forecast["forecast"]["y"], strict=True))
    assert by_date["2023-12-25"] < min(v for d, v in by_date.items() if d != "2023-12-25") - 8  # Christmas
    # never averaged with Theta by default: Theta cannot see the holiday, and would halve its drop
    assert "combination" not in json.loads((run / "metrics.json").read_text())
    assert "US public holidays" in runner.invoke(app, ["inspect", str(run)]).output
    bad = write_config(tmp_path / "bad.yaml", data={"holidays": "XX"})
    assert "data.holidays: is not a country code" in one_line_error(runner.invoke(app, ["train", str(bad)]))


def _sized_series(path: Path, change_at: int | None = None) -> Path:
    """Series whose level is 10 × their (static) size: a global model that knows the size can tell
    a series' level apart from the shape all series share."""
    lines = ["id,date,y,size"]
    for i, size in enumerate((1.0, 2.0, 3.0, 5.0)):
        for t in range(80):
            month = np.datetime64("2000-01", "M") + np.timedelta64(t, "M")
            s = size + (1 if change_at is not None and i == 1 and t >= change_at else 0)
            lines.append(f"s{i},{month}-01,{10 * size + size * np.sin(2 * np.pi * t / 12):.4f},{s}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_static_features_are_scaled_across_series_and_kept_when_forecasts_are_fed_back(tmp_path: Path) -> None:
    from lstmcli.config import load_config
    from lstmcli.data.dataset import load_dataset

    data = _sized_series(tmp_path / "promo.csv")
    run = _train(tmp_path, "st", {"series_column": "id", "static_features": ["size"]}, n=2)
    ds = load_dataset(load_config(tmp_path / "st.yaml").data)
    first_rows = [ds.scaled[s.start, 1] for s in ds.series]
    assert len(set(first_rows)) == 4 and first_rows == sorted(first_rows)  # per-series scaling would give 0s
    assert all(np.all(ds.scaled[s.start : s.stop, 1] == ds.scaled[s.start, 1]) for s in ds.series)
    result = runner.invoke(app, ["predict", str(run), "--data", str(data), "--steps", "7", "--json"])
    assert result.exit_code == 0, result.output  # no --future: static values are known
    _sized_series(data, change_at=40)
    text = one_line_error(runner.invoke(app, ["train", str(tmp_path / "st.yaml")]))
    assert "series 's1': static feature 'size' changes within the series (row 41 of it" in text


def _regional_series(path: Path, regions: dict[str, str]) -> Path:
    """Series whose seasonal swing has the sign of their region: north +, south −."""
    lines = ["id,region,date,y"]
    for i, (sid, region) in enumerate(regions.items()):
        sign = {"north": 1.0, "south": -1.0}.get(region, 0.0)
        for t in range(60):
            month = np.datetime64("2000-01", "M") + np.timedelta64(t, "M")
            lines.append(f"{sid},{region},{month}-01,{20 + i + 3 * sign * np.sin(2 * np.pi * t / 12):.4f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_text_category_is_one_hot_encoded_per_series_and_read_by_predict(tmp_path: Path) -> None:
    from lstmcli.config import load_config
    from lstmcli.data.dataset import load_dataset

    regions = {"a": "north", "b": "south", "c": "north"}
    data = _regional_series(tmp_path / "promo.csv", regions)
    spec = {"series_column": "id", "static_categories": {"region": ["north", "south"]}}
    run = _train(tmp_path, "cat", spec, n=3)
    cfg = load_config(tmp_path / "cat.yaml").data
    assert cfg.columns == ["y", "region=north", "region=south"] and cfg.static_columns == [1, 2]
    ds = load_dataset(cfg)
    for s in ds.series:  # constant within each series, and the north ones above the south one
        assert np.all(ds.scaled[s.start : s.stop, 1:] == ds.scaled[s.start, 1:])
    north = [ds.scaled[s.start, 1] for s in ds.series]
    assert north[0] == north[2] > north[1]
    inspect = runner.invoke(app, ["inspect", str(run)])
    assert "static category region (2 one-hot inputs: north, south)" in inspect.output

    def forecast() -> list[float]:
        result = runner.invoke(app, ["predict", str(run), "--data", str(data), "--series", "a", "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["series"]["a"]["forecast"]["y"]

    as_north = forecast()
    data.write_text(data.read_text().replace("a,north,", "a,south,"))  # the same values, labelled south
    assert forecast() != as_north  # the model reads the category
    data.write_text(data.read_text().replace("a,south,", "a,north,"))

    data.write_text(data.read_text().replace("c,north,2004-12-01", "c,south,2004-12-01"))
    text = one_line_error(runner.invoke(app, ["predict", str(run), "--data", str(data)]))
    assert "column 'region': series 'c' has 'south' here and 'north' before" in text
    _regional_series(data, {**regions, "c": "west"})
    text = one_line_error(runner.invoke(app, ["predict", str(run), "--data", str(data)]))
    assert "series 'c', column 'region': 'west' is not among the values data.static_categories lists" in text
    only_a = runner.invoke(app, ["predict", str(run), "--data", str(data), "--series", "a"])
    assert only_a.exit_code == 0, only_a.output  # the series asked for is checked, not every other one
    data.write_text(data.read_text().replace(",region,", ",zone,", 1))
    text = one_line_error(runner.invoke(app, ["predict", str(run), "--data", str(data)]))
    assert "lacks column(s) 'region'" in text and "static categories region" in text


def test_static_categories_are_checked_in_the_config(tmp_path: Path) -> None:
    _regional_series(tmp_path / "promo.csv", {"a": "north"})
    for spec, expected in (
        ({"static_categories": {"region": ["north"]}}, "set series_column too"),
        (
            {"series_column": "id", "static_categories": {"region": ["north", "north"]}},
            "list each of the column's values once",
        ),
        ({"series_column": "id", "static_categories": {"id": ["a"]}}, "already used as another input or key"),
        ({"series_column": "id", "static_categories": {"region": [True, "south"]}}, "True is not text; quote each"),
    ):
        cfg = write_config(tmp_path / "c.yaml", csv="promo.csv", model={"n": 2}, data=spec)
        assert expected in one_line_error(runner.invoke(app, ["train", str(cfg)]))
    cfg = write_config(
        tmp_path / "c.yaml",
        csv="promo.csv",
        data={"series_column": "id", "static_categories": {"region": ["north", "south"]}},
    )
    assert "one per data.static_categories value" in one_line_error(runner.invoke(app, ["train", str(cfg)]))
