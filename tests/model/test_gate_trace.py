"""The gate trace: the recorded y_t is the fused layer's, the check can fail, and the summaries
read what hand-built gate biases make the gates do."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lstmcli.model import gate_trace as gt
from lstmcli.model import gates
from lstmcli.model.forecaster import LSTMForecaster


def _lstm(n: int = 2, m: int = 5, layers: int = 2, seed: int = 0) -> nn.LSTM:
    torch.manual_seed(seed)
    return nn.LSTM(n, m, layers, batch_first=True).eval()


def test_traced_y_equals_the_fused_layer_output() -> None:
    lstm = _lstm()
    x = torch.randn(3, 20, 2)
    result = gt.trace(lstm, x)
    with torch.no_grad():
        fused, (h_n, c_n) = lstm(x)
    last = result.layers[-1]
    assert (last.y - fused.double()).abs().max() < 1e-6
    for k, layer in enumerate(result.layers):  # every layer's final state, c included
        assert (layer.y[:, -1] - h_n[k].double()).abs().max() < 1e-6
        assert (layer.c[:, -1] - c_n[k].double()).abs().max() < 1e-6
    assert result.check.same_function and result.check.window_agrees
    assert result.check.max_abs_diff < gt.TOLERANCE and result.check.step_max_abs_diff < gt.TOLERANCE


def test_one_perturbed_weight_exceeds_the_tolerance() -> None:
    lstm = _lstm()
    x = torch.randn(2, 20, 2)
    layers = gates.gate_view(gates.float64_copy(lstm))
    layers[0].W["g"][1, 0] += 1e-2  # one weight of unit 2's candidate row
    with torch.no_grad():
        traces = gates.reference_trace(layers, x.double())
    assert gt.fused_difference(lstm, x, traces) > gt.TOLERANCE
    assert gt.step_difference(lstm, x, traces) > gt.TOLERANCE


def _hand_built(forget: float, input_: float, candidate: float) -> nn.LSTM:
    """One layer of 4 units, tiny weights, the gate biases set (torch's order i, f, g, o)."""
    lstm = nn.LSTM(1, 4, 1, batch_first=True).eval()
    with torch.no_grad():
        for p in lstm.parameters():
            p.uniform_(-0.01, 0.01)
        lstm.bias_hh_l0.zero_()
        lstm.bias_ih_l0.copy_(torch.tensor([input_] * 4 + [forget] * 4 + [candidate] * 4 + [0.0] * 4))
    return lstm


def test_forget_bias_plus_10_keeps_every_forget_gate_open() -> None:
    result = gt.trace(_hand_built(forget=10.0, input_=0.0, candidate=0.0), torch.randn(2, 30, 1))
    layer = result.activity[0]
    f = layer.gates["f"]
    assert f.high == 1.0 and f.low == 0.0 and f.saturated == 1.0
    assert f.mean > 0.9999
    # σ(10) = 1 − 4.5e-5: c keeps 1/e of itself for 22,000 steps, beyond the cap
    assert all(u.memory_span is None for u in layer.units)
    assert layer.gates["i"].saturated == 0.0  # σ(0 + tiny) = 0.5: not saturated
    assert layer.gates["o"].saturated == 0.0


def test_closed_input_gates_leave_the_units_dead() -> None:
    # i = σ(−10) ≈ 0: nothing enters c, which stays ~0, so y_t never moves
    result = gt.trace(_hand_built(forget=-10.0, input_=-10.0, candidate=10.0), torch.randn(2, 30, 1))
    layer = result.activity[0]
    assert layer.gates["i"].low == 1.0 and layer.gates["f"].low == 1.0
    assert layer.gates["g"].high == 1.0  # tanh(10) > 0.95
    assert layer.dead_units == [1, 2, 3, 4]
    assert all(u.memory_span is not None and u.memory_span < 0.2 for u in layer.units)  # f ≈ 0: no memory


def test_open_input_gates_keep_the_units_alive() -> None:
    lstm = _hand_built(forget=0.0, input_=10.0, candidate=0.0)
    with torch.no_grad():
        lstm.weight_ih_l0[8:12] = 3.0  # the candidate follows the input
    layer = gt.trace(lstm, torch.randn(2, 30, 1)).activity[0]
    assert layer.dead_units == []
    assert layer.gates["i"].high == 1.0
    assert len(layer.most_active) == len(layer.least_active) == 4
    assert layer.most_active[0] == layer.least_active[-1]


def test_memory_span_is_minus_one_over_log_mean_forget() -> None:
    assert gt.memory_span(math.exp(-1 / 20)) == pytest.approx(20.0)
    assert gt.memory_span(0.5) == pytest.approx(1 / math.log(2))
    assert gt.memory_span(1 - 1e-6) is None  # beyond 10^4 steps
    assert gt.memory_span(math.exp(-1 / 9000)) == pytest.approx(9000.0)


@pytest.mark.parametrize("normalize", ["last", "mean", "season", "none"])
def test_lstm_input_is_what_forward_feeds_the_lstm(normalize: str) -> None:
    torch.manual_seed(0)
    model = LSTMForecaster(
        n=2, m=4, layers=2, horizon=3, n_targets=1, normalize=normalize, season=4, lookback=8, window_scale=True
    ).eval()
    x = torch.randn(3, 8, 2) + 5.0
    with torch.no_grad():
        y, _ = model.lstm(model.lstm_input(x))
        out = model.head(y[:, -1]).view(-1, 3, 1) * model.scale(x)
        base = x[:, model.base_rows, :1] if normalize == "season" else model.level(x)
        assert torch.allclose(out + base, model(x), atol=1e-6)
