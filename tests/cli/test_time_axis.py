"""The time axis is checked: frequencies are inferred (business days, half-hourly, every k months),
a gap is refused with its first missing timestamp unless data.missing fills it, forecasts follow
the calendar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.data.dates import continue_dates, gaps, infer_frequency
from tests.conftest import one_line_error, write_config

runner = CliRunner()


def _csv(path: Path, dates: np.ndarray, header: str = "date,y") -> Path:
    lines = [header] + [f"{d},{10 + np.sin(i / 3) + 0.01 * i:.4f}" for i, d in enumerate(dates)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _months(n: int, start: str = "2000-01") -> np.ndarray:
    return np.array([f"{np.datetime64(start, 'M') + np.timedelta64(t, 'M')}-01" for t in range(n)])


def _business_days(start: str, end: str) -> np.ndarray:
    days = np.arange(np.datetime64(start), np.datetime64(end))
    return days[np.is_busday(days)]


def test_frequencies_are_inferred_and_continued() -> None:
    b = _business_days("2024-01-01", "2024-03-01").astype("datetime64[s]")
    assert infer_frequency(b) == "B"
    assert [str(d)[:10] for d in continue_dates(np.datetime64("2024-03-01"), "B", 3)] == [
        "2024-03-04",  # Friday -> Monday
        "2024-03-05",
        "2024-03-06",
    ]
    half_hours = np.datetime64("2024-01-01T00:00") + np.arange(100) * np.timedelta64(30, "m")
    assert infer_frequency(half_hours.astype("datetime64[s]")) == "1800s"
    every_two = np.array(_months(24)[::2], dtype="datetime64[s]")
    assert infer_frequency(every_two) == "2MS"
    assert str(continue_dates(every_two[-1], "2MS", 1)[0])[:10] == "2002-01-01"


def test_gaps_finds_missing_and_off_step_dates() -> None:
    months = np.array(_months(24), dtype="datetime64[s]")
    absent, off = gaps(np.delete(months, [5, 6, 9]), "MS")
    assert [str(d)[:10] for d in absent] == ["2000-06-01", "2000-07-01", "2000-10-01"] and off.size == 0
    shifted = months.copy()
    shifted[3] += np.timedelta64(1, "D")
    absent, off = gaps(shifted, "MS")
    assert [str(d)[:10] for d in off] == ["2000-04-02"]


@pytest.fixture
def gappy(tmp_path: Path) -> Path:
    _csv(tmp_path / "series.csv", np.delete(_months(120), [40, 41, 42, 70]))
    return write_config(tmp_path / "c.yaml")


def test_a_gap_is_refused_with_its_first_missing_date_and_how_many(gappy: Path, tmp_path: Path) -> None:
    text = one_line_error(runner.invoke(app, ["train", str(gappy)]))
    assert "series.csv: 4 monthly timestamp(s) are missing, the first 2003-05-01" in text
    assert "data.missing: interpolate, ffill or zero" in text
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("how", ["interpolate", "ffill", "zero"])
def test_data_missing_fills_a_gap_and_the_summary_counts_it(gappy: Path, tmp_path: Path, how: str) -> None:
    result = runner.invoke(app, ["train", str(gappy), "--set", f"data.missing={how}"])
    assert result.exit_code == 0, result.output
    assert "4 missing timestamp(s) were inserted and filled" in " ".join(result.output.split())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["filled_timestamps"] == 4
    from lstmcli.data.reader import read_table

    table = read_table(tmp_path / "series.csv", ["y"], "date", how)
    assert table.n_rows == 120 and table.filled == 4
    row = 40  # 2003-05-01, the first inserted
    before, after = table.values[39, 0], table.values[43, 0]
    expected = {"interpolate": before + (after - before) / 4, "ffill": before, "zero": 0.0}[how]
    assert table.values[row, 0] == pytest.approx(expected)


def test_a_date_off_the_steps_is_refused(tmp_path: Path) -> None:
    dates = _months(60)
    dates[30] = "2002-07-09"
    _csv(tmp_path / "series.csv", dates)
    text = one_line_error(runner.invoke(app, ["train", str(write_config(tmp_path / "c.yaml"))]))
    assert "date 2002-07-09 is off the monthly steps" in text


def test_business_day_data_forecasts_no_weekend(tmp_path: Path) -> None:
    _csv(tmp_path / "series.csv", _business_days("2022-01-03", "2022-09-01"))
    cfg = write_config(tmp_path / "c.yaml", data={"season": 5, "lookback": 10, "horizon": 5})
    assert runner.invoke(app, ["train", str(cfg), "-q"]).exit_code == 0
    result = runner.invoke(app, ["predict", str(tmp_path / "run"), "--data", str(tmp_path / "series.csv"), "--json"])
    assert result.exit_code == 0, result.output
    index = json.loads(result.output)["index"]
    assert index == ["2022-09-01", "2022-09-02", "2022-09-05", "2022-09-06", "2022-09-07"]
    assert all(np.is_busday(np.array(index, dtype="datetime64[D]")))


def _init_half_hourly(tmp_path: Path, days: int) -> tuple[Path, str]:
    """``lstm init`` on ``days`` of half-hourly data: the config written and what init printed."""
    stamps = np.datetime64("2024-01-01T00:00") + np.arange(days * 48) * np.timedelta64(30, "m")
    _csv(tmp_path / "hh.csv", np.array([str(s) for s in stamps]), header="time,load")
    out = tmp_path / "hh.yaml"
    result = runner.invoke(app, ["init", str(tmp_path / "hh.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_init_gives_half_hourly_data_a_daily_season_of_48(tmp_path: Path) -> None:
    out, output = _init_half_hourly(tmp_path, 12)
    assert "season: 48 " in out.read_text() and "half-hourly" in output
    assert "fewer than two of them" in output  # 12 days: too short for the weekly season


def test_init_adds_the_weekly_season_of_half_hourly_data_when_two_weeks_fit_the_training_rows(tmp_path: Path) -> None:
    out, _ = _init_half_hourly(tmp_path, 24)
    assert "season: [48, 336]" in out.read_text()
    trained = runner.invoke(
        app, ["train", str(out), "--set", "train.epochs=1", "--set", f"output.dir={tmp_path / 'run'}"]
    )
    assert trained.exit_code == 0, trained.output
    assert "seasonal naive (s = 336)" in trained.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    longer = metrics["test"]["longer_seasons"]["336"]
    assert longer["MAE"] > 0 and longer["relMAE"] == pytest.approx(
        longer["MAE"] / metrics["test"]["seasonal_naive"]["MAE"]
    )


def test_init_fills_timestamps_missing_from_a_daylight_saving_change_and_says_so(tmp_path: Path) -> None:
    stamps = np.datetime64("2010-03-01T00:00") + np.arange(20 * 24) * np.timedelta64(1, "h")
    stamps = stamps[stamps != np.datetime64("2010-03-14T02:00")]  # local time skips 2 a.m.
    _csv(tmp_path / "h.csv", np.array([str(s) for s in stamps]), header="time,temp")
    out = tmp_path / "h.yaml"
    result = runner.invoke(app, ["init", str(tmp_path / "h.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "missing: interpolate" in out.read_text()
    assert "skip 1 timestamp(s) (the first 2010-03-14 02:00:00)" in " ".join(result.output.split())


def test_a_gap_in_one_series_of_a_long_file_names_the_series(tmp_path: Path) -> None:
    lines = ["id,date,y"]
    for sid in ("a", "b"):
        for t, d in enumerate(_months(60)):
            if sid == "b" and t == 20:
                continue
            lines.append(f"{sid},{d},{10 + t % 12}")
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    cfg = write_config(tmp_path / "c.yaml", csv="long.csv", data={"series_column": "id"})
    text = one_line_error(runner.invoke(app, ["train", str(cfg)]))
    assert "long.csv: series 'b': 1 monthly timestamp(s) are missing, the first 2001-09-01" in text


def _us_dates(path: Path, rows: int = 60, day: int = 15) -> Path:
    months = _months(rows)
    lines = ["Month,y"] + [f"{m[5:7]}/{day:02d}/{m[:4]},{10 + i % 12}" for i, m in enumerate(months)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_non_iso_dates_are_read_with_data_date_format(tmp_path: Path) -> None:
    data = _us_dates(tmp_path / "series.csv")
    cfg = write_config(tmp_path / "c.yaml", data={"date_column": "Month", "date_format": "%m/%d/%Y"})
    assert runner.invoke(app, ["train", str(cfg), "-q"]).exit_code == 0
    result = runner.invoke(app, ["predict", str(tmp_path / "run"), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["index"][0] == "2005-01-15"
    lines = data.read_text().splitlines()
    lines[7] = "2000-07-15,3"  # one cell in another format
    data.write_text("\n".join(lines) + "\n")
    text = one_line_error(runner.invoke(app, ["train", str(cfg)]))
    assert "row 7 (line 8), column 'Month': '2000-07-15' does not match data.date_format '%m/%d/%Y'" in text
    bad = write_config(tmp_path / "z.yaml", data={"date_column": "Month", "date_format": "%Y-%m-%d %z"})
    assert "without a time zone" in one_line_error(runner.invoke(app, ["train", str(bad)]))


def test_init_finds_an_unambiguous_date_format_and_names_an_ambiguous_one(tmp_path: Path) -> None:
    out = tmp_path / "c.yaml"
    result = runner.invoke(app, ["init", str(_us_dates(tmp_path / "us.csv")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert 'date_format: "%m/%d/%Y"' in out.read_text() and "season: 12 " in out.read_text()
    first = runner.invoke(
        app, ["init", str(_us_dates(tmp_path / "first.csv", day=1)), "--out", str(tmp_path / "d.yaml")]
    )
    assert "Month holds dates that read as %d/%m/%Y or as %m/%d/%Y" in " ".join(first.output.split())


def test_hourly_timestamps_keep_their_time_and_the_input_style_everywhere(tmp_path: Path) -> None:
    """An hourly series that ends at 23:00 forecasts from midnight: the midnight reads
    ``2024-01-05 00:00:00`` like the input rows, in the table, the CSV and the backtest header."""
    hours = np.datetime64("2024-01-01T00:00") + np.arange(96) * np.timedelta64(1, "h")
    data = _csv(tmp_path / "series.csv", np.array([str(h).replace("T", " ") + ":00" for h in hours]))
    cfg = write_config(tmp_path / "c.yaml", data={"season": 24, "lookback": 24, "horizon": 3})
    assert runner.invoke(app, ["train", str(cfg), "-q"]).exit_code == 0
    out = tmp_path / "f.csv"
    result = runner.invoke(app, ["predict", str(tmp_path / "run"), "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "after 2024-01-04 23:00:00" in result.stdout and "2024-01-05 00:00:00" in result.stdout
    assert [line.split(",")[0] for line in out.read_text().splitlines()[1:]] == [
        "2024-01-05 00:00:00",
        "2024-01-05 01:00:00",
        "2024-01-05 02:00:00",
    ]
    backtest = runner.invoke(
        app, ["predict", str(tmp_path / "run"), "--data", str(data), "--backtest", "--split", "all"]
    )
    assert backtest.exit_code == 0, backtest.output
    assert "origins 2024-01-02 00:00:00 … 2024-01-04 21:00:00" in backtest.stdout  # the first origin is row L
    # A run written before dates were spelled with a space still knows its own training data.
    meta_path = tmp_path / "run" / "meta.json"
    meta = json.loads(meta_path.read_text())
    for record in (meta["data"], *meta["series"]):
        record["first_date"] = record["first_date"].replace(" ", "T")
        record["last_date"] = record["last_date"].replace(" ", "T")
    meta_path.write_text(json.dumps(meta))
    old = runner.invoke(app, ["predict", str(tmp_path / "run"), "--data", str(data), "--backtest"])
    assert old.exit_code == 0, old.output
    assert "the run's stored test split" in old.stdout


def test_init_feeds_the_weekly_season_to_the_model_when_copying_last_week_beats_copying_yesterday(
    tmp_path: Path,
) -> None:
    stamps = np.datetime64("2024-01-01T00:00") + np.arange(28 * 48) * np.timedelta64(30, "m")
    day = np.sin(2 * np.pi * np.arange(len(stamps)) / 48)
    weekend = np.isin((stamps.astype("datetime64[D]").astype(int) + 3) % 7, [5, 6])  # 1970-01-01 was a Thursday
    load = 10 + day - 3 * weekend
    (tmp_path / "w.csv").write_text(
        "time,load\n" + "".join(f"{s},{v:.4f}\n" for s, v in zip(stamps, load, strict=True))
    )
    out = tmp_path / "w.yaml"
    result = runner.invoke(app, ["init", str(tmp_path / "w.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "lags: [336]" in text and "  n: 2 " in text
    trained = runner.invoke(
        app, ["train", str(out), "--set", "train.epochs=1", "--set", f"output.dir={tmp_path / 'run'}", "-q"]
    )
    assert trained.exit_code == 0, trained.output


def test_init_leaves_the_longer_season_out_when_one_series_of_a_long_file_is_too_short_for_it(tmp_path: Path) -> None:
    lines = ["id,time,load"]
    for sid, rows in (("a", 1008), ("b", 1008), ("c", 200)):
        stamps = np.datetime64("2024-01-01T00:00") + np.arange(rows) * np.timedelta64(1, "h")
        lines += [f"{sid},{s},{10 + np.sin(i / 4):.4f}" for i, s in enumerate(stamps)]
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "long.yaml"
    result = runner.invoke(app, ["init", str(tmp_path / "long.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "season: 24 " in out.read_text() and "fewer than two of them" in result.output
