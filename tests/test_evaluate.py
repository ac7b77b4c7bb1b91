"""Scores against hand computations; forecasts in bounded chunks equal one big batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lstmcli.config import load_config
from lstmcli.data.windows import Windows
from lstmcli.evaluate import forecast_scaled
from lstmcli.model.forecaster import LSTMForecaster


def test_chunked_forecasts_equal_one_big_batch(tiny_config: Path) -> None:
    cfg = load_config(tiny_config)
    torch.manual_seed(0)
    model = LSTMForecaster.from_config(cfg)
    series = torch.randn(200, 1)
    w = Windows(series, cfg.data.lookback, cfg.data.horizon, 1)
    origins = np.arange(cfg.data.lookback, 200 - cfg.data.horizon)
    chunked = forecast_scaled(model, w, origins, batch_size=7)
    whole = forecast_scaled(model, w, origins, batch_size=len(origins))
    assert chunked.shape == (len(origins), cfg.data.horizon, 1)
    assert np.allclose(chunked, whole, atol=1e-6)


def test_evaluation_metrics_match_a_hand_computation() -> None:
    import numpy as np

    from lstmcli.evaluate import Scores, forecast_set, mase_scale

    values = np.arange(1.0, 21.0)[:, None]  # y_t = t + 1
    origins = np.array([10, 11])
    forecast = values[origins[:, None] + np.arange(2)] + 1.0  # off by one everywhere
    scale = mase_scale(values[:10], 4)  # |y_t - y_(t-4)| = 4 on every training row
    assert scale.tolist() == [4.0]
    res = Scores(1, scale).add(*forecast_set(values, origins, 2, (4,), forecast)).summary(["y"])
    assert res.model.MAE == pytest.approx(1.0)
    assert res.naive.MAE == pytest.approx(1.5)  # steps 1, 2 behind: (1+2)/2
    assert res.seasonal_naive.MAE == pytest.approx(4.0)  # one season of 4 back
    assert res.model.relMAE == pytest.approx(0.25)  # against seasonal naive on these windows
    assert res.model.MASE == pytest.approx(0.25)  # against the in-sample scale 4
    assert res.naive.MASE == pytest.approx(1.5 / 4)
    assert res.model.sMAPE == pytest.approx(np.mean(200 / (2 * values[origins[:, None] + np.arange(2)] + 1)))


def test_a_longer_season_is_scored_as_a_seasonal_naive_baseline_of_its_own() -> None:
    from lstmcli.evaluate import Scores, forecast_set, mase_scale

    values = np.arange(1.0, 31.0)[:, None]  # y_t = t + 1: seasonal naive with period p is p behind
    origins = np.array([12, 13])
    forecast = values[origins[:, None] + np.arange(2)]
    parts = [Scores(1, mase_scale(values[:12], 2), (6,)).add(*forecast_set(values, origins, 2, (2, 6), forecast))]
    res = Scores.pooled(parts * 2).summary(["y"])
    assert res.seasonal_naive.MAE == pytest.approx(2.0)
    assert res.longer_seasons is not None and list(res.longer_seasons) == ["6"]
    longer = res.longer_seasons["6"]
    assert longer.MAE == pytest.approx(6.0) and longer.relMAE == pytest.approx(3.0)  # against s = 2's
    assert longer.MASE == pytest.approx(3.0)  # the in-sample scale is s = 2's: 2
    assert res.series_means is not None and res.series_means["seasonal_naive_6"].MASE == pytest.approx(3.0)
    assert [label for label, _ in res.baselines()] == ["seasonal naive", "seasonal naive (s = 6)", "naive"]
    assert (
        "longer_seasons"
        not in Scores(1).add(*forecast_set(values, origins, 2, (2,), forecast)).summary(["y"]).to_dict()
    )


def test_smape_counts_zero_over_zero_as_zero() -> None:
    import numpy as np

    from lstmcli.evaluate import Scores, forecast_set

    values = np.zeros((12, 1))
    origins = np.array([8, 9])
    res = Scores(1).add(*forecast_set(values, origins, 2, (4,), np.zeros((2, 2, 1)))).summary(["y"])
    assert res.model.sMAPE == 0.0 and res.model.MAE == 0.0 and res.model.relMAE is None and res.model.MASE is None


def test_theta_is_fitted_once_per_origin_to_its_own_series_recent_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import lstmcli.evaluate as ev
    from lstmcli.data.dataset import Scaler
    from lstmcli.model.theta import theta_forecast

    rng = np.random.default_rng(0)
    values = (50 + np.cumsum(rng.normal(size=1500)))[:, None]  # series A: rows 0..1199, B: 1200..1499
    scaler = Scaler(mean=np.zeros(1), std=np.ones(1), log=np.zeros(1, dtype=bool))
    theta = ev.ThetaCombination(values, np.array([0, 1200]), [scaler, scaler], horizon=3, season=12)
    fits: list[int] = []

    def counted(y: np.ndarray, horizon: int, season: int) -> np.ndarray:
        fits.append(len(y))
        return theta_forecast(y, horizon, season)

    monkeypatch.setattr(ev, "theta_forecast", counted)
    origins = np.array([1100, 1250, 1210])
    got = theta.forecast(origins)
    rows = ev.theta_rows(12)  # 120 rows of A before 1100; B's 50 and 10 rows, never A's
    for i, (o, first) in enumerate(((1100, 1100 - rows), (1250, 1200), (1210, 1200))):
        assert np.allclose(got[i, :, 0], theta_forecast(values[None, first:o, 0], 3, 12)[0])
    assert sum(fits) == 3
    again = theta.forecast(origins[::-1])  # the calibration and the scores ask again: no new fit
    assert sum(fits) == 3 and np.array_equal(again, got[::-1])
