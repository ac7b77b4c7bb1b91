"""Interval scores against hand-computed values, and split-conformal coverage on synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lstmcli.intervals import conformal_radius, coverage, interval_score, msis, pinball_loss


def test_pinball_loss_by_hand() -> None:
    y = np.array([10.0, 10.0])
    q = np.array([8.0, 13.0])  # 2 below the value, 3 above it
    # tau 0.9: 0.9 * 2 for the first, 0.1 * 3 for the second
    assert pinball_loss(y, q, 0.9) == pytest.approx((1.8 + 0.3) / 2)
    assert pinball_loss(y, q, 0.5) == pytest.approx((1.0 + 1.5) / 2)  # half the absolute error


def test_interval_score_by_hand() -> None:
    y = np.array([5.0, 0.0, 12.0])
    lo, hi = np.full(3, 2.0), np.full(3, 8.0)  # width 6; the 2nd is 2 below, the 3rd 4 above
    alpha = 0.2  # an 80% interval: a miss costs 2 / 0.2 = 10 per unit
    assert interval_score(y, lo, hi, alpha) == pytest.approx((6 + (6 + 10 * 2) + (6 + 10 * 4)) / 3)
    assert msis(y, lo, hi, alpha, scale=2.0) == pytest.approx(interval_score(y, lo, hi, alpha) / 2)
    assert math.isnan(msis(y, lo, hi, alpha, scale=0.0))
    assert coverage(y, lo, hi) == pytest.approx(1 / 3)


def test_conformal_radius_is_the_finite_sample_rank() -> None:
    res = np.arange(1.0, 10.0).reshape(9, 1, 1)  # residuals 1..9
    # level 0.8 with n = 9: rank ceil(10 * 0.8) = 8, the 8th smallest
    assert conformal_radius(res, 0.8).item() == 8.0
    # level 0.95 needs rank ceil(10 * 0.95) = 10 > 9: no finite radius can promise it
    assert conformal_radius(res, 0.95).item() == math.inf
    with pytest.raises(ValueError):
        conformal_radius(res, 1.0)


def _calibrated_coverage(shrink: float, level: float, seed: int = 0) -> np.ndarray:
    """Coverage per step on fresh windows of intervals calibrated on 400 windows whose error
    spread grows with the step (sd 1, 2, 4), the radius multiplied by ``shrink``."""
    rng = np.random.default_rng(seed)
    sd = np.array([1.0, 2.0, 4.0]).reshape(1, 3, 1)
    calib = np.abs(rng.normal(0.0, 1.0, (400, 3, 1)) * sd)
    radius = conformal_radius(calib, level) * shrink
    fresh = rng.normal(0.0, 1.0, (20_000, 3, 1)) * sd  # errors of the forecasts on new windows
    return np.array([coverage(fresh[:, h], -radius[h], radius[h]) for h in range(3)])


@pytest.mark.parametrize("level", [0.8, 0.95])
def test_split_conformal_covers_at_the_nominal_level_at_every_step(level: float) -> None:
    cov = _calibrated_coverage(1.0, level)
    # Conformal coverage given 400 calibration windows is Beta-distributed around the level with a
    # standard deviation of about sqrt(level (1 - level) / 400): 0.020 at 80%, 0.011 at 95%.
    tol = 3 * math.sqrt(level * (1 - level) / 400) + 0.005
    assert np.all(np.abs(cov - level) < tol), cov


def test_a_deliberately_narrow_interval_fails_the_coverage_check() -> None:
    cov = _calibrated_coverage(0.7, 0.8)  # radius shrunk by 30%: about 64% coverage
    tol = 3 * math.sqrt(0.8 * 0.2 / 400) + 0.005
    assert np.all(np.abs(cov - 0.8) > tol), cov


def test_too_few_windows_clamp_to_the_largest_error_and_say_how_many_are_needed() -> None:
    from lstmcli.intervals import windows_needed

    res = np.arange(1.0, 10.0).reshape(9, 1, 1)
    assert conformal_radius(res, 0.95, clamp=True).item() == 9.0
    assert windows_needed(0.8) == 4 and windows_needed(0.95) == 19 and windows_needed(0.5) == 1
    big = np.arange(1.0, 20.0).reshape(19, 1, 1)  # 19 windows: rank ceil(20 * 0.95) = 19, finite
    assert conformal_radius(big, 0.95).item() == 19.0


def test_calibration_thins_a_huge_validation_split_evenly() -> None:
    from lstmcli.evaluate import _spread

    origins = np.arange(100, 1_000_100)
    kept = _spread(origins, 20_000)
    assert len(kept) == 20_000 and kept[0] == 100 and kept[-1] == 1_000_099 and np.all(np.diff(kept) > 0)
    assert _spread(origins[:50], 20_000) is not None and len(_spread(origins[:50], 20_000)) == 50


def test_the_band_of_a_level_is_the_symmetric_quantile_pair_nearest_it() -> None:
    from lstmcli.intervals import band

    qs = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)
    assert band(qs, 0.8) == (0.1, 0.9)
    assert band(qs, 0.95) == (0.025, 0.975)
    assert band(qs, 0.5) == (0.25, 0.75)
    assert band(qs, 0.65) == (0.1, 0.9)  # 0.5 and 0.8 are equally near: the wider
    assert band((0.05, 0.5, 0.8), 0.8) == (0.5, 0.5)  # no symmetric pair: the point forecast
    assert band((), 0.9) == (0.5, 0.5)


def test_conformity_is_the_signed_distance_outside_the_band() -> None:
    from lstmcli.intervals import conformity

    y = np.array([0.0, 5.0, 12.0])
    assert conformity(y, np.full(3, 2.0), np.full(3, 8.0)).tolist() == [2.0, -3.0, 4.0]
    assert conformity(y, np.full(3, 5.0), np.full(3, 5.0)).tolist() == [5.0, 0.0, 7.0]  # |residual|


def _cqr_coverage(shrink: float, level: float = 0.8, seed: int = 1) -> float:
    """Coverage on fresh data of conformalized quantile bands: the noise's sd varies 10× across
    windows and a model's band tracks it, but 40% too narrow; the radius (in window scales,
    times ``shrink``) must correct that."""
    from lstmcli.intervals import conformity

    rng = np.random.default_rng(seed)
    z = 1.2816  # the standard normal's 90% quantile

    def draw(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sd = rng.uniform(0.2, 2.0, (n, 1, 1))
        return rng.normal(0.0, 1.0, (n, 1, 1)) * sd, -0.6 * z * sd, 0.6 * z * sd

    y, lo, hi = draw(500)
    scale = np.ones_like(y)
    radius = conformal_radius(conformity(y, lo, hi) / scale, level) * shrink
    y, lo, hi = draw(20_000)
    return coverage(y, lo - radius, hi + radius)


def test_conformalized_quantile_bands_cover_at_the_nominal_level() -> None:
    tol = 3 * math.sqrt(0.8 * 0.2 / 500) + 0.005
    assert abs(_cqr_coverage(1.0) - 0.8) < tol
    assert abs(_cqr_coverage(0.0) - 0.8) > tol  # the uncorrected band: about 55%
