"""Calendar features computed from the dates: each a sin/cos pair of its phase, known for any
future date by construction. The same function makes them for training and for predict's
forecast dates, so the two can never disagree."""

from __future__ import annotations

from typing import get_args

import numpy as np

from lstmcli.config import CalendarFeature, calendar_columns

CALENDAR_FEATURES: tuple[str, ...] = get_args(CalendarFeature)
__all__ = ["CALENDAR_FEATURES", "calendar_columns", "calendar_values", "phase"]


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
