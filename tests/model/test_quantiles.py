"""A quantile forecaster: its quantiles never cross, its point forecast is the median, and the
pinball loss it trains with matches the hand-computed one."""

from __future__ import annotations

import pytest
import torch

from lstmcli.model.forecaster import LSTMForecaster
from lstmcli.training.trainer import pinball_sum

QUANTILES = [0.025, 0.1, 0.5, 0.9, 0.975]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quantiles_never_cross_whatever_the_weights_and_inputs(seed: int) -> None:
    torch.manual_seed(seed)
    model = LSTMForecaster(2, 8, 2, 4, 2, quantiles=QUANTILES, lookback=6, window_scale=True)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20.0)  # large weights: raw outputs far apart and of both signs
        x = torch.randn(256, 6, 2) * 50
        q = model(x, quantiles=True)
        point = model(x)
    assert q.shape == (256, 4, 2, 5)
    assert torch.all(q[..., 1:] >= q[..., :-1])
    assert torch.equal(point, q[..., QUANTILES.index(0.5)])  # the point forecast is the median


def test_a_point_model_gives_its_forecast_as_a_single_quantile() -> None:
    model = LSTMForecaster(1, 4, 1, 3, 1)
    x = torch.randn(5, 6, 1)
    with torch.no_grad():
        assert torch.equal(model(x, quantiles=True)[..., 0], model(x))
    assert model.head.out_features == 3 and model.quantiles == ()


def test_pinball_sum_by_hand() -> None:
    y = torch.tensor([[[10.0]], [[10.0]]])  # (B=2, H=1, k=1)
    pred = torch.tensor([[[[8.0, 10.0, 13.0]]], [[[11.0, 12.0, 14.0]]]])  # (2, 1, 1, Q=3)
    taus = torch.tensor([0.1, 0.5, 0.9])
    # window 1: q0.1 = 8 is 2 below y: 0.1·2; the median is exact; q0.9 = 13 is 3 above: 0.1·3
    # window 2: 1 above: 0.9·1; 2 above: 0.5·2; 4 above: 0.1·4
    expected = (0.2 + 0.0 + 0.3) / 3 + (0.9 + 1.0 + 0.4) / 3
    assert pinball_sum(pred, y, taus).item() == pytest.approx(expected)
