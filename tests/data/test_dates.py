"""Dates: the frequency of a series and how it continues (month ends, short months, a time of day)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lstmcli.data.dates import continue_dates, format_dates, infer_frequency
from lstmcli.data.reader import read_table
from tests.conftest import write_csv


@pytest.mark.parametrize(
    ("last", "freq", "expected"),
    [
        ("2004-12-31", "MS", ["2005-01-31", "2005-02-28", "2005-03-31"]),  # month ends stay month ends
        ("2004-01-30", "MS", ["2004-02-29", "2004-03-30", "2004-04-30"]),  # day clipped to short months
        ("2004-12-01", "MS", ["2005-01-01", "2005-02-01", "2005-03-01"]),
        ("2004-12-31", "QS", ["2005-03-31", "2005-06-30", "2005-09-30"]),
    ],
)
def test_dates_continue_at_month_ends_and_short_months(last: str, freq: str, expected: list[str]) -> None:
    assert format_dates(continue_dates(np.datetime64(last), freq, 3)) == expected


def test_frequency_inference_and_continuation(tmp_path: Path) -> None:
    table = read_table(write_csv(tmp_path / "m.csv", rows=24), ["y"], "date")
    assert infer_frequency(table.dates) == "MS"
    nxt = continue_dates(table.dates[-1], "MS", 3)
    assert [str(d)[:10] for d in nxt] == ["2002-01-01", "2002-02-01", "2002-03-01"]
    weekly = np.array(["2001-12-15", "2001-12-22", "2001-12-29"], dtype="datetime64[s]")
    assert infer_frequency(weekly) == "W"
    assert str(continue_dates(weekly[-1], "W", 1)[0])[:10] == "2002-01-05"


def test_monthly_dates_at_noon_are_monthly(tmp_path: Path) -> None:
    dates = np.array([f"2000-{m:02d}-01T12:00:00" for m in range(1, 13)], dtype="datetime64[s]")
    assert infer_frequency(dates) == "MS"
    assert str(continue_dates(dates[-1], "MS", 1)[0]) == "2001-01-01T12:00:00"


def test_formatted_dates_show_the_time_when_the_series_has_one() -> None:
    hourly = np.datetime64("2024-01-01T22:00") + np.arange(4) * np.timedelta64(1, "h")
    midnight = hourly[2:3]
    assert format_dates(midnight) == ["2024-01-02"]  # alone, a midnight is a date
    assert format_dates(midnight, like=hourly) == ["2024-01-02 00:00:00"]  # in an hourly series, a time
    assert format_dates(hourly[:1]) == ["2024-01-01 22:00:00"]
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-04"))
    assert format_dates(days[:1], like=days) == ["2024-01-01"]
