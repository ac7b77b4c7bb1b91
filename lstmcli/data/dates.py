"""Dates: parsing ISO cells, the frequency of a series, continuing it, formatting.

The one module of date rules, for the validating CSV reader, the polars path, ``init``, ``train``
and ``predict`` alike.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# A time of day followed by a zone: Z, +02, +0200 or +02:00. numpy would shift such dates to UTC
# (with a DeprecationWarning), which silently moves every date and breaks a daily or monthly
# frequency, so they are refused with the cell named.
_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?P<zone>[zZ]|[+-]\d{2}(?::?\d{2})?)$")


def offset_of(cell: str) -> str | None:
    """The time-zone offset a date cell ends with (``Z``, ``+02:00``), or None."""
    m = _OFFSET.search(cell.strip())
    return m.group("zone") if m else None


def parse_iso(cells: list[str]) -> np.ndarray | None:
    """The cells as datetime64[s], or None if any is not an ISO date (or carries an offset)."""
    if any(offset_of(c) for c in cells):
        return None
    try:
        dates = np.array([c.strip() for c in cells], dtype="datetime64[s]")
    except ValueError:
        return None
    return None if np.isnat(dates).any() else dates


def parse_formatted(cells: list[str], date_format: str) -> np.ndarray | None:
    """The cells as datetime64[s] read with a strptime format (``data.date_format``), or None if
    any does not match it. A format with a zone (%z) is refused by the config."""
    from datetime import datetime

    try:
        parsed = [datetime.strptime(c.strip(), date_format) for c in cells]
    except ValueError:
        return None
    return np.array([p.isoformat() for p in parsed], dtype="datetime64[s]")


# Formats init tries on a date column that is not ISO, unambiguous ones only (day first where a day
# exceeds 12 says so; a file whose every day is at most 12 is left to data.date_format).
COMMON_FORMATS = ("%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y", "%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M")

_MONTHS = {"MS": 1, "QS": 3, "YS": 12}


def _months(frequency: str) -> int | None:
    """Months per step of a calendar-month frequency ('MS', 'QS', 'YS', '<k>MS'), else None."""
    if frequency in _MONTHS:
        return _MONTHS[frequency]
    if frequency.endswith("MS") and frequency[:-2].isdigit():
        return int(frequency[:-2])
    return None


def infer_frequency(dates: np.ndarray | None) -> str | None:
    """'D', 'B' (business days: weekdays only, skipping weekends), 'W', 'MS' (monthly), 'QS', 'YS',
    or '<k>s' for another fixed step (1800s: half-hourly); None without dates. The typical (median)
    step decides, so a few missing dates do not change it (``gaps`` finds them)."""
    if dates is None or len(dates) < 2:
        return None
    steps = np.diff(dates.astype("datetime64[s]")).astype(np.int64)
    step = int(np.median(steps))
    day = 86400
    time_of_day = dates.astype("datetime64[s]").astype(np.int64) % day
    if bool(np.all(time_of_day == time_of_day[0])):  # calendar steps, at one time of day (midnight, noon...)
        if step == day:
            weekday = (dates.astype("datetime64[D]").astype(np.int64) + 3) % 7  # Monday 0
            if bool(np.all(weekday < 5)) and bool(np.any(steps == 3 * day)):  # never a weekend, Friday to Monday
                return "B"
            return "D"
        if step == 7 * day:
            return "W"
        for name, lo, hi in (("MS", 28, 31), ("QS", 89, 92), ("YS", 365, 366)):
            if lo * day <= step <= hi * day:
                return name
        if step > 31 * day:  # every k months (2, 4, 6...), on one day of the month
            month = dates.astype("datetime64[M]")
            day_of_month = (dates.astype("datetime64[D]") - month.astype("datetime64[D]")).astype(np.int64)
            k = int(np.median(np.diff(month.astype(np.int64))))
            if bool(np.all(day_of_month == day_of_month[0])) and 28 * k * day <= step <= 31 * k * day:
                return f"{k}MS"
    return f"{step}s"


def continue_dates(last: np.datetime64, frequency: str, steps: int) -> np.ndarray:
    """The ``steps`` dates after ``last`` at ``frequency`` (as from ``infer_frequency``)."""
    start = np.array(last).astype("datetime64[s]")[()]
    stride = _months(frequency)
    if stride is not None:
        # Explicit units throughout: numpy >= 2.5 deprecates adding bare integers to datetimes.
        one_month, one_day = np.timedelta64(1, "M"), np.timedelta64(1, "D")
        day = start.astype("datetime64[D]")
        time_of_day = start - day.astype("datetime64[s]")
        month = day.astype("datetime64[M]")
        months = month + np.arange(1, steps + 1) * stride * one_month
        ends = (months + one_month).astype("datetime64[D]") - one_day  # last day of each month
        if day == (month + one_month).astype("datetime64[D]") - one_day:
            days = ends  # month-end series stay at month ends (Jan 31 -> Feb 28 -> Mar 31)
        else:  # the same day of the month, clipped to short months
            days = np.minimum(months.astype("datetime64[D]") + (day - month.astype("datetime64[D]")), ends)
        return days.astype("datetime64[s]") + time_of_day
    if frequency == "B":  # the next business days (Monday to Friday), at the same time of day
        first_day = start.astype("datetime64[D]")
        business = np.busday_offset(first_day, np.arange(1, steps + 1), roll="forward")
        return business.astype("datetime64[s]") + (start - first_day.astype("datetime64[s]"))
    return start + np.arange(1, steps + 1) * np.timedelta64(_step_seconds(frequency), "s")


def _step_seconds(frequency: str) -> int:
    """The fixed step of 'D', 'W' or '<k>s', in seconds."""
    seconds = {"D": 86400, "W": 7 * 86400}.get(frequency)
    return int(frequency.rstrip("s")) if seconds is None else seconds


def gaps(dates: np.ndarray, frequency: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(missing, off_grid): the timestamps the series' steps at ``frequency`` pass through between
    its first and last date that it lacks, and its dates that lie off those steps."""
    none = np.array([], dtype="datetime64[s]")
    if frequency is None or len(dates) < 2:
        return none, none
    secs = dates.astype("datetime64[s]")
    if _months(frequency) is None and frequency != "B":
        step = np.timedelta64(_step_seconds(frequency), "s")
        if bool(np.all(np.diff(secs) == step)):  # the common case, in one pass
            return none, none
        count = int((secs[-1] - secs[0]) // step) + 1
        grid = secs[0] + np.arange(count) * step
    else:
        grid = secs[:1]
        while grid[-1] < secs[-1]:  # continue in blocks; a monthly grid of 10M rows is never asked for
            grid = np.concatenate([grid, continue_dates(grid[-1], frequency, max(len(secs) - len(grid), 1))])
        grid = grid[grid <= secs[-1]]
        if len(grid) == len(secs) and bool(np.all(grid == secs)):
            return none, none
    return np.setdiff1d(grid, secs), np.setdiff1d(secs, grid)


FREQUENCY_NAMES = {
    "D": "daily",
    "B": "business-day",
    "W": "weekly",
    "MS": "monthly",
    "QS": "quarterly",
    "YS": "yearly",
    "3600s": "hourly",
    "1800s": "half-hourly",
    "900s": "15-minute",
    "60s": "minutely",
}


def format_dates(dates: np.ndarray, like: np.ndarray | None = None) -> list[str]:
    """``YYYY-MM-DD``, or ``YYYY-MM-DD HH:MM:SS`` when any date of ``like`` (default: ``dates``)
    has a time of day. Pass the whole series as ``like`` when formatting a few of its dates, so that
    an hourly series' midnight reads ``2010-01-01 00:00:00`` like its other rows, not ``2010-01-01``."""
    secs = dates.astype("datetime64[s]")
    ref = secs if like is None else like.astype("datetime64[s]")
    if np.all(secs.astype(np.int64) % 86400 == 0) and np.all(ref.astype(np.int64) % 86400 == 0):
        return [str(d) for d in secs.astype("datetime64[D]")]
    return [str(d).replace("T", " ") for d in secs]


def describe_dates(dates: np.ndarray | None) -> dict[str, Any]:
    """First and last date and inferred frequency, for a run's metadata."""
    if dates is None:
        return {"first_date": None, "last_date": None, "frequency": None}
    first, last = format_dates(dates[[0, -1]], like=dates)
    return {"first_date": first, "last_date": last, "frequency": infer_frequency(dates)}
