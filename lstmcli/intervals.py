"""Prediction intervals: split-conformal calibration, and the scores forecasters judge them by.

Pure NumPy on arrays shaped like the forecasts, (windows, H, k): step h of every window is scored
and calibrated on its own, because the spread of a forecast grows with the step.

- Split conformal (Vovk et al. 2005; Lei et al. 2018): on n calibration windows, the radius at
  level 1 - α is the ⌈(n + 1)(1 - α)⌉-th smallest conformity score. For a point forecast the score
  is the absolute residual, and a new window's interval forecast ± radius covers its value with
  probability at least 1 - α when the windows are exchangeable; with fewer than 1/α - 1 windows no
  finite radius can promise that (inf). For a band of two quantile forecasts [lo, hi] (conformalized
  quantile regression, Romano et al. 2019) the score is max(lo - y, y - hi), negative inside the
  band, and [lo - radius, hi + radius] carries the same promise: the band's width follows the
  model's learned uncertainty, the radius corrects its calibration.
- The interval score of Gneiting & Raftery (2007): width, plus 2/α times the distance by which the
  value falls outside the interval. MSIS (the M4 competition) divides it by the in-sample MAE of
  the seasonal naive forecast, as MASE does.
- The pinball (quantile) loss of a quantile forecast.
"""

from __future__ import annotations

import math

import numpy as np


def conformal_radius(scores: np.ndarray, level: float, clamp: bool = False) -> np.ndarray:
    """(H, k) radius per step and target from (n, H, k) conformity scores of n calibration
    windows (absolute residuals, or :func:`conformity` to a band), for coverage ``level``
    (0 < level < 1). Where n is too small for the level (:func:`windows_needed`): inf, or with
    ``clamp`` the largest score, which promises only n / (n + 1)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    n = scores.shape[0]
    rank = math.ceil((n + 1) * level)  # 1-based rank among the n scores
    if rank > n and not (clamp and n):
        return np.full(scores.shape[1:], np.inf)
    return np.sort(scores, axis=0)[min(rank, n) - 1]


def conformity(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """How far each value lies outside [lower, upper] (negative inside): CQR's conformity score,
    the absolute residual when lower = upper is a point forecast."""
    return np.maximum(lower - y, y - upper)


def band(quantiles: tuple[float, ...] | list[float], level: float) -> tuple[float, float]:
    """The two forecast quantiles (τ, 1 - τ) a central interval at ``level`` is built around: of
    the symmetric pairs in ``quantiles``, the one whose nominal coverage 1 - 2τ is nearest
    ``level`` (the wider on a tie); (0.5, 0.5), the point forecast, without such a pair."""
    pairs = [(t, u) for t in quantiles for u in quantiles if t < 0.5 and math.isclose(t + u, 1.0)]
    if not pairs:
        return (0.5, 0.5)
    return min(pairs, key=lambda p: (abs((p[1] - p[0]) - level), p[0]))


def windows_needed(level: float) -> int:
    """The fewest calibration windows whose split-conformal interval can promise ``level``."""
    return math.ceil(level / (1.0 - level) - 1e-9)


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Fraction of values inside [lower, upper]."""
    return float(np.mean((y >= lower) & (y <= upper)))


def interval_score(y: np.ndarray, lower: np.ndarray, upper: np.ndarray, alpha: float) -> float:
    """Mean interval score of central (1 - α) intervals (Gneiting & Raftery 2007, eq. 43): lower
    is better; a perfectly sharp interval that always covers scores its width."""
    below = np.clip(lower - y, 0.0, None)
    above = np.clip(y - upper, 0.0, None)
    return float(np.mean((upper - lower) + (2.0 / alpha) * (below + above)))


def msis(y: np.ndarray, lower: np.ndarray, upper: np.ndarray, alpha: float, scale: float) -> float:
    """The M4 competition's mean scaled interval score: the interval score over ``scale``, the
    in-sample MAE of the seasonal naive forecast (MASE's denominator); nan when that is 0."""
    if not scale > 0:
        return math.nan
    return interval_score(y, lower, upper, alpha) / scale


def pinball_loss(y: np.ndarray, q: np.ndarray, tau: float) -> float:
    """Mean pinball loss of the τ-quantile forecast ``q``: τ·(y − q) above it, (1 − τ)·(q − y) below."""
    d = y - q
    return float(np.mean(np.maximum(tau * d, (tau - 1.0) * d)))
