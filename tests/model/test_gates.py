"""The textbook view: gate slices of PyTorch's packed tensors, parameter counts, the reference cell's proof."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lstmcli.model import gates as shapes
from lstmcli.model.forecaster import LSTMForecaster


@pytest.mark.parametrize(("n", "m", "layers", "horizon", "k"), [(1, 4, 1, 3, 1), (3, 8, 2, 5, 2), (5, 16, 3, 1, 1)])
def test_output_shape_and_parameter_count(n: int, m: int, layers: int, horizon: int, k: int) -> None:
    model = LSTMForecaster(n=n, m=m, layers=layers, horizon=horizon, n_targets=k)
    assert model(torch.randn(7, 11, n)).shape == (7, horizon, k)
    facts = shapes.describe(model)
    lstm_total = 0
    for i, layer in enumerate(facts.layers):
        n_l = n if i == 0 else m
        assert layer.input_size == n_l
        assert layer.parameters_textbook == 4 * m * (n_l + m) + 4 * m
        assert layer.parameters_torch == 4 * m * (n_l + m) + 8 * m
        for gate in "figo":
            assert layer.gates[gate].W == [m, n_l + m]
            assert layer.gates[gate].b == [m]
        lstm_total += layer.parameters_torch
    assert facts.head.parameters == m * horizon * k + horizon * k
    assert facts.total_parameters == lstm_total + facts.head.parameters
    assert facts.total_parameters == sum(p.numel() for p in model.parameters())


def test_gate_view_slices_the_packed_rows_in_i_f_g_o_order() -> None:
    lstm = nn.LSTM(3, 4, 2, batch_first=True)
    view = shapes.gate_view(lstm)
    w_ih, w_hh = lstm.weight_ih_l1.detach(), lstm.weight_hh_l1.detach()
    b = (lstm.bias_ih_l1 + lstm.bias_hh_l1).detach()
    # the forget gate is the second block of 4 rows
    assert torch.equal(view[1].W["f"], torch.cat([w_ih[4:8], w_hh[4:8]], dim=1))
    assert torch.equal(view[1].b["f"], b[4:8])
    assert torch.equal(view[1].W["o"][:, :4], w_ih[12:16])
    assert view[0].W["g"].shape == (4, 3 + 4)


@pytest.mark.parametrize(("n", "m", "layers"), [(1, 5, 1), (4, 7, 3)])
def test_reference_cell_equals_fused_lstm_on_random_weights(n: int, m: int, layers: int) -> None:
    torch.manual_seed(n * 100 + m)
    lstm = nn.LSTM(n, m, layers, batch_first=True)
    for p in lstm.parameters():  # larger than the default init, so every gate saturates somewhere
        nn.init.uniform_(p, -1.5, 1.5)
    assert shapes.check_equivalence(lstm, steps=9, batch=4) < 1e-12


def test_check_catches_a_wrong_gate_order() -> None:
    # If the view took rows in textbook order f, i, g, o the check must fail: it is not vacuous.
    lstm = nn.LSTM(2, 3, 1, batch_first=True).double()
    nn.init.uniform_(lstm.bias_ih_l0, -2, 2)
    view = shapes.gate_view(lstm)
    swapped = [
        shapes.LayerGates(v.input_size, {**v.W, "f": v.W["i"], "i": v.W["f"]}, {**v.b, "f": v.b["i"], "i": v.b["f"]})
        for v in view
    ]
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    fused, _ = lstm(x)
    assert (fused - shapes.reference_forward(swapped, x)).abs().max() > 1e-3
    assert (fused - shapes.reference_forward(view, x)).abs().max() < 1e-12


def test_window_normalisation_makes_the_model_level_invariant() -> None:
    torch.manual_seed(0)
    model = LSTMForecaster(n=1, m=6, layers=1, horizon=4, n_targets=1, normalize="last").eval()
    x = torch.randn(3, 10, 1)
    with torch.no_grad():
        shifted = model(x + 5.0)
        assert torch.allclose(shifted, model(x) + 5.0, atol=1e-5)
    raw = LSTMForecaster(n=1, m=6, layers=1, horizon=4, n_targets=1, normalize="none").eval()
    with torch.no_grad():
        assert not torch.allclose(raw(x + 5.0), raw(x) + 5.0, atol=1e-3)


def test_unit_view_rows() -> None:
    model = LSTMForecaster(n=2, m=3, layers=2, horizon=1, n_targets=1)
    units = shapes.unit_view(model, 2)
    assert len(units) == 3
    assert units[1].weights == 4 * (3 + 3)
    assert units[1].torch_rows == {"f": 4, "i": 1, "g": 7, "o": 10}


def test_season_normalisation_starts_from_the_seasonal_naive_forecast() -> None:
    # With the head at zero the network adds nothing: the forecast is the window's own seasonal
    # naive forecast, step h taking the value one season before it.
    model = LSTMForecaster(n=1, m=4, layers=1, horizon=5, n_targets=1, normalize="season", season=3, lookback=6)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    x = torch.tensor([[[1.0], [5.0], [2.0], [7.0], [4.0], [9.0]]])
    assert model(x).flatten().tolist() == [7.0, 4.0, 9.0, 7.0, 4.0]
    # a season longer than the lookback: the last value, as normalize "last"
    short = LSTMForecaster(n=1, m=4, layers=1, horizon=2, n_targets=1, normalize="season", season=12, lookback=6)
    nn.init.zeros_(short.head.weight)
    nn.init.zeros_(short.head.bias)
    assert short(x).flatten().tolist() == [9.0, 9.0]
    assert "base_rows" not in model.state_dict()  # nothing new in the weights file


@pytest.mark.parametrize(("normalize", "season"), [("last", 1), ("season", 3), ("last", 3), ("season", 8)])
def test_drift_continues_a_trend_and_its_season_exactly(normalize: str, season: int) -> None:
    # A straight line plus a pattern repeating every 3 steps: with the head at zero, the drifting
    # base is its exact continuation when it reads the season (and a line's, without a pattern).
    model = LSTMForecaster(
        n=1, m=4, layers=1, horizon=7, n_targets=1, normalize=normalize, season=season, lookback=9, drift=True
    )
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    pattern = torch.tensor([0.0, 3.0, -1.0] * 6) if (normalize, season) == ("season", 3) else torch.zeros(18)
    series = 2.0 + 0.5 * torch.arange(18.0) + pattern
    with torch.no_grad():
        forecast = model(series[:9].view(1, 9, 1)).flatten()
    assert torch.allclose(forecast, series[9:16], atol=1e-5)


def test_a_one_row_window_has_a_unit_scale() -> None:
    # A lookback of 1 has no step to measure: the scale is the series' own (1), and the forecast finite.
    model = LSTMForecaster(n=1, m=4, layers=1, horizon=3, n_targets=1, lookback=1, window_scale=True)
    x = torch.full((2, 1, 1), 3.0)
    assert model.scale(x).flatten().tolist() == [1.0, 1.0]
    assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize(("normalize", "season", "lookback"), [("mean", 1, 8), ("season", 12, 12), ("last", 1, 1)])
def test_drift_needs_a_base_and_a_whole_season_of_change(normalize: str, season: int, lookback: int) -> None:
    # A window no longer than the season would read its pattern as the trend.
    with pytest.raises(ValueError, match="drift needs"):
        LSTMForecaster(
            n=1,
            m=4,
            layers=1,
            horizon=2,
            n_targets=1,
            normalize=normalize,
            season=season,
            lookback=lookback,
            drift=True,
        )


def test_window_scale_makes_the_model_scale_invariant() -> None:
    # Stretch a window about its last value: the forecast's offset from that value stretches alike.
    torch.manual_seed(0)
    model = LSTMForecaster(n=1, m=6, layers=1, horizon=4, n_targets=1, normalize="last", window_scale=True).eval()
    x = torch.randn(3, 10, 1)
    last = x[:, -1:, :]
    with torch.no_grad():
        stretched = model(last + 7.0 * (x - last))
        assert torch.allclose(stretched - last, 7.0 * (model(x) - last), atol=1e-4)
        plain = LSTMForecaster(n=1, m=6, layers=1, horizon=4, n_targets=1, normalize="last").eval()
        assert not torch.allclose(plain(last + 7.0 * (x - last)) - last, 7.0 * (plain(x) - last), atol=1e-3)
    # a flat window does not divide by zero: its scale is floored
    flat = torch.ones(1, 10, 1)
    assert torch.isfinite(model(flat)).all()
    assert model.scale(flat).item() == pytest.approx(0.1)
