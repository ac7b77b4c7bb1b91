"""The Theta method beside statsmodels' ThetaModel on real series, and its defining properties."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from lstmcli.model.theta import theta_forecast

DATA = Path(__file__).resolve().parents[2] / "data"


def _column(name: str, column: str) -> np.ndarray:
    with open(DATA / name, newline="") as fh:
        return np.array([float(row[column]) for row in csv.DictReader(fh)])


# statsmodels 0.14 ThetaModel(y, period=s).fit().forecast(h), printed to 3 decimals
STATSMODELS = {
    "airpassengers, multiplicative": (
        lambda: _column("airpassengers.csv", "passengers")[:120],
        12,
        [341.615, 335.571, 385.395, 370.125, 371.182, 423.493],
    ),
    "airpassengers less 300, additive": (
        lambda: _column("airpassengers.csv", "passengers")[:120] - 300,
        12,
        [40.16, 33.389, 66.855, 58.418, 60.934, 98.992],
    ),
    "seatbelts drivers": (
        lambda: _column("seatbelts.csv", "drivers")[:150],
        12,
        [1505.786, 1520.346, 1545.514, 1657.827, 1880.769, 2025.736],
    ),
    "airpassengers yearly, not seasonal": (
        lambda: _column("airpassengers.csv", "passengers")[::12][:10],
        1,
        [353.235, 366.471, 379.708, 392.944],
    ),
}


@pytest.mark.parametrize("case", list(STATSMODELS))
def test_forecasts_agree_with_statsmodels_theta_on_real_series(case: str) -> None:
    history, season, expected = STATSMODELS[case]
    y = history()
    ours = theta_forecast(y[None], len(expected), season)[0]
    # statsmodels optimises SES's alpha; ours is the best of a grid of 0.01 steps
    assert np.abs(ours - expected).max() < 1e-3 * np.abs(y).mean(), ours


def test_a_straight_line_is_continued_with_half_its_slope() -> None:
    # SES follows a line exactly (alpha = 1, level = the last value); theta = 2 halves the drift
    y = 5.0 + 2.0 * np.arange(30)
    forecast = theta_forecast(y[None], 4, 1)[0]
    assert np.allclose(forecast, y[-1] + 0.5 * 2.0 * np.arange(1, 5))


def test_a_constant_series_is_forecast_as_itself() -> None:
    assert np.allclose(theta_forecast(np.full((1, 40), 7.0), 5, 12), 7.0)


def test_a_batch_is_forecast_as_each_history_alone() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(60)
    batch = 50 + np.cumsum(rng.normal(size=(5, 60)), axis=1) + 8 * np.sin(2 * np.pi * t / 12)
    batch[1] -= 200  # negative: additive
    together = theta_forecast(batch, 7, 12)
    alone = np.concatenate([theta_forecast(row[None], 7, 12) for row in batch])
    assert np.allclose(together, alone)


def test_a_history_of_fewer_than_three_rows_is_forecast_by_its_last_value() -> None:
    assert theta_forecast(np.array([[1.0, 4.0]]), 3, 12).tolist() == [[4.0, 4.0, 4.0]]


def test_an_additive_series_whose_seasonal_index_averages_zero_forecasts_without_a_warning() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        forecast = theta_forecast(np.tile([0.0, 1.0], 25)[None], 4, 2)
    assert np.allclose(forecast, [[0.0, 1.0, 0.0, 1.0]], atol=1e-6)
