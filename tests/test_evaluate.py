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
