"""Long-format files: one global model over several series, split and scaled per series."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.config import load_config
from lstmcli.data.dataset import load_dataset
from lstmcli.data.reader import read_table
from lstmcli.errors import DataError
from tests.conftest import write_config


def write_long(path: Path, lengths: dict[str, int], interleave: bool = False) -> Path:
    """Series with very different levels, so per-series scaling is visible."""
    rows = []
    for j, (sid, n) in enumerate(lengths.items()):
        for t in range(n):
            month = np.datetime64("2000-01", "M") + np.timedelta64(t, "M")
            rows.append((t, sid, f"{month}-01", 100.0 * (j + 1) ** 3 + 10 * np.sin(t / 2) + t))
    if interleave:
        rows.sort(key=lambda r: (r[0], r[1]))
    path.write_text("series,date,y\n" + "".join(f"{s},{d},{v:.4f}\n" for _, s, d, v in rows))
    return path


def long_config(tmp_path: Path, **data: object) -> Path:
    return write_config(tmp_path / "long.yaml", csv="long.csv", data={"series_column": "series", **data})


def test_interleaved_rows_are_grouped_by_series_in_order(tmp_path: Path) -> None:
    path = write_long(tmp_path / "long.csv", {"a": 50, "b": 40}, interleave=True)
    table = read_table(path, ["y"], "date", series_column="series")
    assert table.parts == (("a", 0, 50), ("b", 50, 90))
    assert np.all(np.diff(table.dates[:50]) > np.timedelta64(0, "s"))
    assert table.values[50, 0] == pytest.approx(800.0)  # series b starts at its own level


def test_windows_never_cross_series_and_scaling_is_per_series(tmp_path: Path) -> None:
    write_long(tmp_path / "long.csv", {"a": 60, "b": 80, "c": 70})
    cfg = load_config(long_config(tmp_path))
    ds = load_dataset(cfg.data)
    L, H = cfg.data.lookback, cfg.data.horizon
    assert [s.id for s in ds.series] == ["a", "b", "c"]
    for s in ds.series:
        for name in ("train", "val", "test"):
            o = s.origins(name)
            assert o.size and (o - L).min() >= s.start and (o + H).max() <= s.stop
        train = ds.table.values[s.start : s.start + s.split.train_end, 0]
        assert s.scaler.mean[0] == pytest.approx(train.mean())
        assert abs(ds.scaled[s.start : s.start + s.split.train_end, 0].mean()) < 1e-4
    assert ds.counts()["train"] == sum(s.split.counts()["train"] for s in ds.series)


def test_dates_must_increase_within_each_series(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("series,date,y\na,2000-01-01,1\nb,2000-01-01,2\na,2000-03-01,3\na,2000-02-01,4\n")
    with pytest.raises(DataError, match=r"row 4 \(line 5\), column 'date': date 2000-02-01 goes back .* in series 'a'"):
        read_table(path, ["y"], "date", series_column="series")


def test_multi_series_training_reports_per_series_metrics(tmp_path: Path) -> None:
    write_long(tmp_path / "long.csv", {"a": 60, "b": 80})
    cfg = long_config(tmp_path)
    result = CliRunner().invoke(app, ["train", str(cfg), "-q"])
    assert result.exit_code == 0, result.output
    assert "per series" in result.output
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]["per_series"]) == {"a", "b"}
    # test rows start at floor(0.85 N): a 51..59 gives origins 51..57 (7), b 68..79 gives 68..77 (10)
    assert metrics["windows"]["test"] == 7 + 10
    meta = json.loads((run / "meta.json").read_text())
    assert [s["id"] for s in meta["series"]] == ["a", "b"]
    # MASE as the competitions average it: the mean of the per-series MASE (and sMAPE)
    per = metrics["test"]["per_series"]
    means = metrics["test"]["series_means"]["model"]
    assert means["MASE"] == pytest.approx((per["a"]["model"]["MASE"] + per["b"]["model"]["MASE"]) / 2)
    assert means["sMAPE"] == pytest.approx((per["a"]["model"]["sMAPE"] + per["b"]["model"]["sMAPE"]) / 2)
    assert metrics["test"]["model"]["MASE"] == pytest.approx(means["MASE"])
    assert "mean over series (MASE / sMAPE)" in result.output

    shown = CliRunner().invoke(app, ["inspect", str(run)])  # the run's series and how each did
    assert shown.exit_code == 0, shown.output
    assert "2 series in column series, 60 to 80 rows, 2000-01-01 … 2006-08-01: a, b" in shown.output
    assert "Test split per series" in shown.output and "mean over series" in shown.output
    facts = json.loads(CliRunner().invoke(app, ["inspect", str(run), "--json"]).output)
    assert [(s["id"], s["rows"]) for s in facts["run"]["series"]] == [("a", 60), ("b", 80)]
    assert set(facts["metrics"]["test"]["per_series"]) == {"a", "b"}


def test_predict_forecasts_every_series_in_long_format_and_backtest_matches_metrics(tmp_path: Path) -> None:
    data = write_long(tmp_path / "long.csv", {"a": 60, "b": 80})
    cfg = long_config(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(cfg), "-q"]).exit_code == 0
    run = tmp_path / "run"
    out = tmp_path / "f.csv"
    result = runner.invoke(app, ["predict", str(run), "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "series,date,y"
    assert [line.split(",")[0] for line in lines[1:]] == ["a"] * 3 + ["b"] * 3  # H = 3 per series
    assert (
        lines[1].split(",")[1] == "2005-01-01" and lines[4].split(",")[1] == "2006-09-01"
    )  # each continues its own dates

    bt = runner.invoke(app, ["predict", str(run), "--data", str(data), "--backtest", "--split", "test", "--json"])
    assert bt.exit_code == 0, bt.output
    got = json.loads(bt.output)
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    for name in ("model", "naive", "seasonal_naive"):
        for key in ("MAE", "RMSE", "sMAPE", "MASE", "relMAE"):
            assert got["metrics"][name][key] == pytest.approx(metrics[name][key], abs=1e-6)
    for sid in ("a", "b"):
        assert got["series"][sid]["metrics"]["model"]["MAE"] == pytest.approx(
            metrics["per_series"][sid]["model"]["MAE"], abs=1e-6
        )

    one = runner.invoke(app, ["predict", str(run), "--data", str(data), "--series", "b", "--json"])
    assert one.exit_code == 0, one.output
    assert list(json.loads(one.output)["series"]) == ["b"]
    unknown = runner.invoke(app, ["predict", str(run), "--data", str(data), "--series", "zz"])
    assert unknown.exit_code == 2 and "has no rows of series 'zz'" in unknown.output

    for mode in ([], ["--backtest"]):  # a plot of every series, and the CSV asked for beside it
        png, csv = tmp_path / f"p{len(mode)}.png", tmp_path / f"p{len(mode)}.csv"
        both = runner.invoke(
            app, ["predict", str(run), "--data", str(data), "--plot", str(png), "--out", str(csv), *mode]
        )
        assert both.exit_code == 0, both.output
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and csv.read_text().startswith("series,")


def test_a_count_split_holds_out_the_last_h_rows_of_every_series(tmp_path: Path) -> None:
    # The competitions' protocol: test = the last H rows of each series, one test window each.
    write_long(tmp_path / "long.csv", {"a": 60, "b": 80, "c": 45})
    cfg = load_config(long_config(tmp_path, split={"val": 3, "test": 3}))  # H = 3
    ds = load_dataset(cfg.data)
    for s in ds.series:
        n = s.stop - s.start
        assert (s.split.train_end, s.split.val_end) == (n - 6, n - 3)
        assert s.split.origins("test").tolist() == [n - 3]
        assert s.split.origins("val").tolist() == [n - 6]
    assert ds.counts()["test"] == 3
    result = CliRunner().invoke(app, ["train", str(long_config(tmp_path, split={"val": 3, "test": 3})), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["windows"]["test"] == 3


def test_series_too_short_for_the_split_are_named_in_one_line(tmp_path: Path) -> None:
    write_long(tmp_path / "long.csv", {"a": 60, "b": 9, "c": 80, "d": 7})
    result = CliRunner().invoke(app, ["train", str(long_config(tmp_path)), "-q"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert len(line.splitlines()) == 1
    assert "2 of 4 series are too short to be forecast" in line and "'b' (9 rows), 'd' (7 rows)" in line


def test_a_series_too_short_for_a_full_lookback_is_padded_trained_and_forecast(tmp_path: Path) -> None:
    # L = 12, H = 3, s = 12, count split 3 + 3: series c has 20 rows, so 14 training rows < L + H.
    write_long(tmp_path / "long.csv", {"a": 60, "b": 80, "c": 20})
    config = long_config(tmp_path, split={"val": 3, "test": 3})
    ds = load_dataset(load_config(config).data)
    c = ds.series[2]
    assert c.split.padded and c.split.origins("train").tolist() == list(range(1, 12))  # from one real row on
    assert c.split.origins("test").tolist() == [17] and ds.padded_series == 1
    starts = ds.row_starts()
    assert starts is not None and starts[c.start :].tolist() == [c.start] * 20
    result = CliRunner().invoke(app, ["train", str(config), "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["test"]["per_series"]) == {"a", "b", "c"} and metrics["padded_series"] == 1
    assert "1 series were too short for a full lookback" in result.output
    forecast = CliRunner().invoke(
        app, ["predict", str(tmp_path / "run"), "--data", str(tmp_path / "long.csv"), "--series", "c", "--json"]
    )
    assert forecast.exit_code == 0, forecast.output
    assert len(json.loads(forecast.output)["series"]["c"]["forecast"]["y"]) == 3
    backtest = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "run"),
            "--data",
            str(tmp_path / "long.csv"),
            "--backtest",
            "--split",
            "test",
            "--json",
        ],
    )
    assert backtest.exit_code == 0, backtest.output
    pooled = {k: v for k, v in metrics["test"].items() if k != "per_series"}
    assert json.loads(backtest.output)["metrics"] == pooled  # padded windows scored as training scored them


def test_padded_windows_repeat_the_first_row_of_their_own_series() -> None:
    import torch

    from lstmcli.data.windows import Windows

    series = torch.arange(10.0)[:, None]  # rows 0..4 are series A, 5..9 series B
    starts = torch.tensor([0] * 5 + [5] * 5)
    w = Windows(series, lookback=4, horizon=1, n_targets=1, starts=starts)
    assert w.inputs(torch.tensor([7]))[0, :, 0].tolist() == [5.0, 5.0, 5.0, 6.0]  # never B's row 4 (A)
    assert w.inputs(torch.tensor([4]))[0, :, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
