"""The Theta method (Assimakopoulos & Nikolopoulos 2000; Hyndman & Billah 2003), batched in numpy.

The statistical forecast that the LSTM's forecast is averaged with (``model.combine``): the best
of the M3 competition on monthly data and hard to beat on short series, where a network has
little to learn from. It follows statsmodels' ``ThetaModel`` (theta = 2, deseasonalised when the
seasonality test passes, multiplicative for a positive series, additive otherwise): a 90%
autocorrelation test at lag s, a classical decomposition, the OLS slope b0 of the deseasonalised
series and simple exponential smoothing (SES) of it; the forecast h steps ahead is
SES's level + b0 / 2 · (h − 1 + 1/α − (1 − α)^n / α), reseasonalised.

Written here rather than called from statsmodels because a backtest fits it once per window
origin (thousands of windows, each a different history): one numpy pass over a batch of
histories of equal length fits them all, where statsmodels fits one per Python call (about 5 ms
each). SES starts from the first value, as statsmodels' does, and its α is the best of a grid of
``ALPHAS`` (statsmodels optimises it), which agrees with statsmodels' forecasts to well within
1% of the series' level on real series (``tests/model/test_theta.py`` holds some beside ours).
"""

from __future__ import annotations

import numpy as np

ALPHAS = np.linspace(0.01, 1.0, 100)  # SES smoothing levels tried
SEASONALITY_CRITICAL = 2.705543454095404  # chi-square(1) at 90%, statsmodels' test (forecast::thetaf's level too)


def theta_forecast(y: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Forecasts (B, horizon) of B histories ``y`` (B, n) of equal length, each finite.

    A history shorter than 3 rows is forecast by its last value (naive); one with fewer than
    2·``season`` rows, or whose autocorrelation at lag ``season`` is not significant, is not
    deseasonalised."""
    y = np.asarray(y, dtype=np.float64)
    b, n = y.shape
    if n < 3:
        return np.repeat(y[:, -1:], horizon, axis=1)
    mult, add = np.ones((b, season)), np.zeros((b, season))  # seasonal indices by phase t mod s
    seasonal = _seasonal(y, season) if season > 1 and n >= 2 * season else np.zeros(b, dtype=bool)
    if seasonal.any():
        mult[seasonal], add[seasonal] = _decompose(y[seasonal], season)
    phase, ahead = np.arange(n) % season, (n + np.arange(horizon)) % season
    d = y / mult[:, phase] - add[:, phase]  # deseasonalised
    level, alpha = _ses(d)
    t = np.arange(n, dtype=np.float64)
    slope = ((t - t.mean()) * (d - d.mean(axis=1, keepdims=True))).sum(axis=1) / ((t - t.mean()) ** 2).sum()
    h = np.arange(horizon, dtype=np.float64)
    decay = (1.0 - alpha) ** n
    trend = slope[:, None] * (h[None, :] + 1.0 / alpha[:, None] - decay[:, None] / alpha[:, None])
    return (level[:, None] + 0.5 * trend) * mult[:, ahead] + add[:, ahead]


def _seasonal(y: np.ndarray, season: int) -> np.ndarray:
    """(B,) whether each history's autocorrelation at lag ``season`` is significant at 90%:
    n·r_s² / Σ_{k<s} r_k² (r_0 = 1) above chi-square(1)'s 90% point, as statsmodels tests it."""
    n = y.shape[1]
    x = y - y.mean(axis=1, keepdims=True)
    denom = (x**2).sum(axis=1)
    r = np.stack([(x[:, k:] * x[:, : n - k]).sum(axis=1) for k in range(1, season + 1)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = r / denom[:, None]
        stat = n * r[:, -1] ** 2 / (1.0 + (r[:, :-1] ** 2).sum(axis=1))
    return np.isfinite(stat) & (stat > SEASONALITY_CRITICAL)


def _decompose(y: np.ndarray, season: int) -> tuple[np.ndarray, np.ndarray]:
    """Classical decomposition's seasonal indices (B, season) by phase t mod s, multiplicative
    and additive (one of them neutral: 1 or 0): multiplicative for a positive history."""
    n = y.shape[1]
    weights = np.full(season, 1.0 / season) if season % 2 else np.r_[0.5, np.ones(season - 1), 0.5] / season
    half = len(weights) // 2
    trend = np.stack([np.convolve(row, weights, mode="valid") for row in y])  # the centred moving average
    core = y[:, half : n - half]  # the rows it covers
    mul: np.ndarray = np.all(y > 0, axis=1)
    detrended = np.where(mul[:, None], core / np.where(mul[:, None], trend, 1.0), core - trend)
    phase = np.arange(half, n - half) % season
    index = np.stack([detrended[:, phase == p].mean(axis=1) for p in range(season)], axis=1)
    centre = index.mean(axis=1, keepdims=True)
    mult = np.where(mul[:, None], index / np.where(mul[:, None], centre, 1.0), 1.0)  # an additive centre may be 0
    add = np.where(mul[:, None], 0.0, index - centre)
    return mult, add


def _ses(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Simple exponential smoothing of each row of ``d`` (B, n) from the initial level d_0 (as
    statsmodels' Theta starts it): the final level and the α of the grid ``ALPHAS`` with the least
    one-step squared error, all α at once."""
    a = ALPHAS[None, :]
    level = np.repeat(d[:, :1], len(ALPHAS), axis=1)  # (B, A)
    sse = np.zeros_like(level)
    for t in range(1, d.shape[1]):
        err = d[:, t : t + 1] - level
        sse += err * err
        level += a * err
    best = np.argmin(sse, axis=1)
    return level[np.arange(len(d)), best], ALPHAS[best]
