"""Features computed from the dates: calendar phases (each a sin/cos pair) and public holidays
(through the ``holidays`` package), known for any future date by construction. The same function
makes them for training and for predict's forecast dates, so the two can never disagree."""

from __future__ import annotations

from typing import get_args

import numpy as np

from lstmcli.config import CalendarFeature, DataConfig, calendar_columns
from lstmcli.errors import ConfigError

CALENDAR_FEATURES: tuple[str, ...] = get_args(CalendarFeature)
__all__ = ["CALENDAR_FEATURES", "calendar_columns", "calendar_values", "generated_column", "holiday_counts", "phase"]


def phase(dates: np.ndarray, feature: str) -> np.ndarray:
    """Where each date lies in the feature's cycle, in [0, 1): the month of the year, the weekday
    (Monday 0), the day of the month or year, the hour of the day, the minute of the hour."""
    secs = dates.astype("datetime64[s]")
    days = secs.astype("datetime64[D]")
    if feature == "month":
        return (secs.astype("datetime64[M]").astype(np.int64) % 12) / 12.0
    if feature == "weekday":
        return ((days.astype(np.int64) + 3) % 7) / 7.0  # 1970-01-01 was a Thursday
    if feature == "dayofmonth":
        return (days - secs.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) / 31.0
    if feature == "dayofyear":
        return (days - secs.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) / 366.0
    if feature == "hour":
        return (secs - days.astype("datetime64[s]")).astype(np.int64) / 86400.0
    if feature == "minute":
        return ((secs - days.astype("datetime64[s]")).astype(np.int64) % 3600) / 3600.0
    raise ValueError(f"unknown calendar feature {feature!r}; known: {', '.join(CALENDAR_FEATURES)}")


def calendar_values(dates: np.ndarray, features: list[str]) -> np.ndarray:
    """(N, 2F) float64: sin and cos of 2π × the phase of each feature, in ``calendar_columns`` order."""
    out = np.empty((len(dates), 2 * len(features)))
    for j, feature in enumerate(features):
        angle = 2 * np.pi * phase(dates, feature)
        out[:, 2 * j], out[:, 2 * j + 1] = np.sin(angle), np.cos(angle)
    return out


def holiday_counts(dates: np.ndarray, country: str, frequency: str | None) -> np.ndarray:
    """(N,) float64: the public holidays of ``country`` in each date's period, from it to the next
    date at ``frequency`` (for daily data, 1 on a holiday and 0 otherwise; for monthly, the
    month's holidays)."""
    from lstmcli.data.dates import continue_dates

    try:
        import holidays
    except ImportError:
        raise ConfigError("data.holidays needs the holidays package: pip install 'lstmcli[holidays]'") from None
    days = dates.astype("datetime64[D]")
    if not len(days):
        return np.zeros(0)
    after = continue_dates(dates[-1], frequency, 1)[0] if frequency else dates[-1] + np.timedelta64(1, "D")
    ends = np.concatenate([days[1:], [np.datetime64(after, "D")]])
    years = range(int(str(days[0])[:4]), int(str(ends[-1])[:4]) + 1)
    try:
        known = holidays.country_holidays(country, years=years)
    except NotImplementedError:
        raise ConfigError(
            f"data.holidays: {country!r} is not a country the holidays package knows (e.g. US, GB, DE, FR)"
        ) from None
    marked = np.array(sorted(np.datetime64(d, "D") for d in known), dtype="datetime64[D]")
    return (np.searchsorted(marked, ends) - np.searchsorted(marked, days)).astype(np.float64)


def generated_column(
    cfg: DataConfig, dates: np.ndarray, j: int, parts: list[tuple[str | None, int, int]], frequency: str | None = None
) -> np.ndarray:
    """Generated column ``j`` (0-based after the file's columns: the calendar's sin/cos pairs, then
    the holiday count) for ``dates``, series by series (``parts``); ``frequency`` the series' step,
    or inferred from each series' dates."""
    from lstmcli.data.dates import infer_frequency

    n_calendar = 2 * len(cfg.calendar)
    if j < n_calendar:
        feature, part = divmod(j, 2)
        return calendar_values(dates, [cfg.calendar[feature]])[:, part]
    assert cfg.holidays is not None
    out = np.empty(len(dates))
    for _, start, stop in parts:
        d = dates[start:stop]
        out[start:stop] = holiday_counts(d, cfg.holidays, frequency or infer_frequency(d))
    return out
