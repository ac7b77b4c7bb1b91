"""Prediction intervals end to end: train calibrates and scores them, predict --level writes them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmcli.cli import app
from tests.conftest import ROOT, one_line_error, write_config, write_csv

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("iv")
    write_csv(d / "series.csv", rows=120)
    cfg = write_config(d / "tiny.yaml")
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "Prediction intervals on the test split" in result.output
    return d / "run"


def test_train_writes_the_calibration_and_the_test_coverage(run_dir: Path) -> None:
    m = json.loads((run_dir / "metrics.json").read_text())
    cal = m["calibration"]["model"]
    assert cal["windows"] == m["windows"]["val"] and cal["levels"] == list(range(50, 100))
    radius = np.array(cal["radius"], dtype=float)  # (levels, H, k)
    assert radius.shape[1:] == (3, 1) and np.all(np.diff(radius, axis=0) >= 0)  # wider for a higher level
    for level in ("80", "95"):
        for forecast in ("model", "seasonal_naive"):
            row = m["intervals"][level][forecast]
            assert 0.0 <= row["coverage"] <= 1.0 and row["width"] > 0 and row["interval_score"] >= row["width"]
    assert m["intervals"]["95"]["model"]["width"] >= m["intervals"]["80"]["model"]["width"]


def test_predict_level_writes_bounds_around_the_forecast(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.csv"
    data = run_dir.parent / "series.csv"
    result = runner.invoke(
        app, ["predict", str(run_dir), "--data", str(data), "--level", "95", "--level", "80", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["date", "y", "lower_80", "upper_80", "lower_95", "upper_95"] and len(rows) == 4
    v = np.array([[float(c) for c in r[1:]] for r in rows[1:]])
    y, lo80, hi80, lo95, hi95 = v.T
    assert np.all(lo95 <= lo80) and np.all(lo80 < y) and np.all(y < hi80) and np.all(hi80 <= hi95)
    js = json.loads(
        runner.invoke(app, ["predict", str(run_dir), "--data", str(data), "--level", "80", "--json"]).output
    )
    assert js["intervals"]["80"]["lower"]["y"] == pytest.approx(lo80.tolist())


def test_level_beyond_h_steps_or_out_of_range_is_refused(run_dir: Path) -> None:
    data = str(run_dir.parent / "series.csv")
    text = one_line_error(
        runner.invoke(app, ["predict", str(run_dir), "--data", data, "--level", "80", "--steps", "7"])
    )
    assert "--level" in text and "H = 3" in text
    assert runner.invoke(app, ["predict", str(run_dir), "--data", data, "--level", "100"]).exit_code == 2


def test_a_backtest_of_the_test_split_reproduces_the_interval_scores_of_metrics_json(run_dir: Path) -> None:
    data = str(run_dir.parent / "series.csv")
    args = ["predict", str(run_dir), "--data", data, "--backtest", "--split", "test", "--level", "80", "--level", "95"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    saved = json.loads((run_dir / "metrics.json").read_text())["intervals"]
    assert json.loads(result.output)["intervals"] == saved
    shown = runner.invoke(app, args)
    assert shown.exit_code == 0 and "Prediction intervals from each origin" in shown.output


def test_a_run_written_by_0_1_0_has_no_intervals_and_says_so(tmp_path: Path) -> None:
    fixture = ROOT / "tests" / "fixtures" / "v0_1_0"
    text = one_line_error(
        runner.invoke(app, ["predict", str(fixture / "run"), "--data", str(fixture / "series.csv"), "--level", "80"])
    )
    assert "no interval calibration" in text and "train it again" in text


def test_the_forecast_plot_draws_a_band_per_level(run_dir: Path) -> None:
    from lstmcli import plots
    from lstmcli.commands.predict import forecast

    data = run_dir.parent / "series.csv"
    plain = forecast(run_dir, data).items[0]
    banded = forecast(run_dir, data, levels=[80, 95]).items[0]
    assert sorted(banded.intervals) == [80, 95] and not plain.intervals
    assert plots.forecast_plot([banded]) != plots.forecast_plot([plain])


def test_inspect_run_names_the_loss_and_the_interval_calibration(run_dir: Path) -> None:
    result = runner.invoke(app, ["inspect", str(run_dir)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "loss mae, each window divided by its mean absolute step" in text
    assert "forecast: each window's last value, plus the network's correction" in text
    assert "prediction intervals: split conformal on" in text and "predict --level 50…99" in text
    js = json.loads(runner.invoke(app, ["inspect", str(run_dir), "--json"]).output)
    assert js["run"]["loss"] == "mae" and js["run"]["interval_levels"][0] == 50


def test_a_multi_series_forecast_writes_the_bounds_in_long_format(tmp_path: Path) -> None:
    lines = ["series,date,y"]
    for sid, level in (("a", 10), ("b", 100)):
        for t in range(60):
            month = np.datetime64("2000-01", "M") + np.timedelta64(t, "M")
            lines.append(f"{sid},{month}-01,{level + (t % 12) * level / 10}")
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    cfg = write_config(tmp_path / "c.yaml", csv="long.csv", data={"series_column": "series"})
    assert runner.invoke(app, ["train", str(cfg), "-q"]).exit_code == 0
    out = tmp_path / "f.csv"
    args = ["predict", str(tmp_path / "run"), "--data", str(tmp_path / "long.csv"), "--level", "80", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["series", "date", "y", "lower_80", "upper_80"] and {r[0] for r in rows[1:]} == {"a", "b"}
    width = {r[0]: float(r[4]) - float(r[3]) for r in rows[1:]}
    assert width["b"] > width["a"] > 0  # one radius in window scales: wider for the series that moves more


def test_a_series_with_enough_validation_windows_gets_its_own_calibration(tmp_path: Path) -> None:
    lines = ["series,date,y"]
    for sid, rows in (("long", 200), ("short", 60)):
        for t in range(rows):
            month = np.datetime64("1990-01", "M") + np.timedelta64(t, "M")
            lines.append(f"{sid},{month}-01,{50 + 10 * np.sin(t / 2) + (t % 5)}")
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    cfg = write_config(tmp_path / "c.yaml", csv="long.csv", data={"series_column": "series"})
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "1 of 2 series on their own windows" in " ".join(result.output.split())
    cal = json.loads((tmp_path / "run" / "metrics.json").read_text())["calibration"]["model"]
    # 200 rows: 30 validation rows, 28 windows of H = 3 (>= 19); 60 rows: 7 windows, pooled
    assert list(cal["per_series"]) == ["long"] and cal["per_series"]["long"]["windows"] == 28
    assert cal["windows"] == 28 + 7

    from lstmcli.commands.predict import forecast
    from lstmcli.evaluate import Calibration

    c = Calibration.model_validate(cal)
    assert c.for_series("long").windows == 28 and c.for_series("short") is c and c.for_series(None) is c
    fc = {f.series: f for f in forecast(tmp_path / "run", tmp_path / "long.csv", levels=[80]).items}
    assert set(fc) == {"long", "short"} and all(np.all(f.intervals[80][0] < f.values) for f in fc.values())
    # a backtest of the test split pools the series' interval scores as training did
    bt = runner.invoke(
        app,
        ["predict", str(tmp_path / "run"), "--data", str(tmp_path / "long.csv"), "--backtest", "--split", "test"]
        + ["--level", "80", "--level", "95", "--json"],
    )
    assert bt.exit_code == 0, bt.output
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())["intervals"]
    got = json.loads(bt.output)["intervals"]
    for level, row in saved.items():
        for forecast_name, scores in row.items():
            assert got[level][forecast_name] == pytest.approx(scores), (level, forecast_name)


@pytest.fixture(scope="module")
def quantile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("qr")
    write_csv(d / "series.csv", rows=120)
    cfg = write_config(d / "q.yaml", train={"loss": "quantile"})
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Quantile forecasts on the test split" in text and "CQR: conformalized quantile bands" in text
    return d / "run"


def test_a_quantile_run_scores_each_quantile_and_calibrates_bands_around_them(quantile_run: Path) -> None:
    m = json.loads((quantile_run / "metrics.json").read_text())
    assert list(m["quantiles"]) == ["0.1", "0.5", "0.9"]  # the default quantiles
    below = [m["quantiles"][q]["below"] for q in ("0.1", "0.5", "0.9")]
    assert below == sorted(below) and all(m["quantiles"][q]["pinball"] > 0 for q in m["quantiles"])
    cal = m["calibration"]["model"]
    assert cal["bands"][cal["levels"].index(80)] == [0.1, 0.9]
    assert "bands" not in m["calibration"]["seasonal_naive"] or m["calibration"]["seasonal_naive"]["bands"] is None
    config = (quantile_run / "config.yaml").read_text()
    assert "quantiles:" in config and "- 0.9" in config  # the defaults chosen are written into the run


def test_predict_writes_a_quantile_runs_quantiles_beside_its_intervals(quantile_run: Path, tmp_path: Path) -> None:
    data = quantile_run.parent / "series.csv"
    out = tmp_path / "f.csv"
    result = runner.invoke(app, ["predict", str(quantile_run), "--data", str(data), "--level", "80", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["date", "y", "q10", "q90", "lower_80", "upper_80"]
    y, q10, q90, lo, hi = np.array([[float(c) for c in r[1:]] for r in rows[1:]]).T
    assert np.all(q10 < y) and np.all(y < q90) and np.all(lo <= y) and np.all(y <= hi)
    js = json.loads(runner.invoke(app, ["predict", str(quantile_run), "--data", str(data), "--json"]).output)
    assert js["quantiles"]["0.1"]["y"] == pytest.approx(q10.tolist())
    assert js["quantiles"]["0.5"]["y"] == pytest.approx(y.tolist())  # the point forecast is the median
    # fed-back forecasts beyond H are medians, not quantiles: none are written for them
    long = runner.invoke(app, ["predict", str(quantile_run), "--data", str(data), "--steps", "7", "--json"])
    assert long.exit_code == 0 and "quantiles" not in json.loads(long.output)


def test_a_backtest_of_a_quantile_run_reproduces_its_interval_scores(quantile_run: Path) -> None:
    data = str(quantile_run.parent / "series.csv")
    args = [
        "predict",
        str(quantile_run),
        "--data",
        data,
        "--backtest",
        "--split",
        "test",
        "--level",
        "80",
        "--level",
        "95",
    ]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert (
        json.loads(result.output)["intervals"] == json.loads((quantile_run / "metrics.json").read_text())["intervals"]
    )


def test_inspect_shows_a_quantile_runs_loss_and_quantiles(quantile_run: Path) -> None:
    text = " ".join(runner.invoke(app, ["inspect", str(quantile_run)]).output.split())
    assert "loss quantile (pinball, averaged over 0.1, 0.5, 0.9; the point is 0.5)" in text
    assert "CQR: conformalized quantile bands on" in text
    js = json.loads(runner.invoke(app, ["inspect", str(quantile_run), "--json"]).output)
    assert js["run"]["quantiles"] == [0.1, 0.5, 0.9] and js["quantiles"] == [0.1, 0.5, 0.9]
    assert js["head"]["output"] == [3 * 1 * 3]  # H × k × Q


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["train.loss=quantile", "model.quantiles=[0.1, 0.9]"], "model.quantiles: include 0.5"),
        (["model.quantiles=[0.1, 0.5, 0.9]"], "train.loss is 'mae'"),
        (["train.loss=quantile", "model.quantiles=[0.9, 0.5, 0.1]"], "in increasing order"),
        (["train.loss=quantile", "model.quantiles=[0, 0.5]"], "strictly between 0 and 1"),
    ],
)
def test_bad_quantiles_are_refused_in_one_line(tmp_path: Path, sets: list[str], expected: str) -> None:
    write_csv(tmp_path / "series.csv", rows=60)
    cfg = write_config(tmp_path / "c.yaml")
    args = ["train", str(cfg)] + [a for s in sets for a in ("--set", s)]
    text = one_line_error(runner.invoke(app, args))
    assert expected in text and "c.yaml" in text
    assert not (tmp_path / "run").exists()


def test_too_few_validation_windows_say_what_they_promise_rounded_down(tmp_path: Path) -> None:
    write_csv(tmp_path / "series.csv", rows=120)  # 18 validation rows: 16 windows of H = 3
    result = runner.invoke(app, ["train", str(write_config(tmp_path / "tiny.yaml"))], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "16 validation windows are too few to promise 95% (95% needs 19)" in text
    assert "which promises 94.1%" in text  # 16 / 17 = 0.9412, never rounded up to the level it misses
