"""What the gate sub-layers do on data: every f_t, i_t, g_t, o_t, c_t, y_t of a trained LSTM on
real windows, recorded with the textbook equations, checked against the fused layer, summarised.

The reference cell (``gates.reference_trace``) runs in float64 on the trained float32 weights
(widened exactly), so the recorded activations carry no rounding of their own; the fused
``nn.LSTM`` runs in float32 as ``predict`` runs it. Their difference is the fused kernel's float32
rounding, which ``TOLERANCE`` bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from lstmcli.model.gates import (
    TEXTBOOK_ORDER,
    LayerGates,
    LayerTrace,
    float64_copy,
    gate_view,
    reference_trace,
)

# Fused float32 vs the float64 equations, max |Δy| (y_t lies in (-1, 1), so this is relative to
# its scale). float32 rounds by u = 2^-24 ≈ 6e-8, and a pre-activation sums n_l + m + 1 products:
# about √(n_l + m)·u·Σ|w z| ≈ 1e-6 per step for m = 64 (measured 5e-7 to 3e-6 for m = 16 to 128 on
# random ±1.5 weights, the worst case: every gate saturating somewhere). Over a window the recurrence
# carries each step's error on; in a stable model (the trained ones measured: 1e-7 to 1e-6 over
# the CO2 run's 48 steps) that adds up to T·1e-6 = 5e-5 at worst, so 1e-4 holds, while one weight
# off by 1e-3 moves y by more (tests/model/test_gate_trace.py). A chaotic recurrence amplifies the
# rounding instead (random ±1.5 weights: |Δy| ≈ 2 after 200 steps); the single-step difference
# then still proves the equations, and the window difference says the trajectory is rounding's.
TOLERANCE = 1e-4
SATURATION = 0.95  # σ above 0.95 or below 0.05; tanh beyond ±0.95
DEAD_RANGE = 1e-3  # a unit whose y_t moves less than this over every traced step is dead
SPAN_CAP = 1e4  # memory spans beyond 10^4 steps (f̄ > e^(-1/10^4)) are reported as None: "> 10^4"
SIGMOID_GATES = ("f", "i", "o")


class _Facts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GateActivity(_Facts):
    """One gate of one layer over every traced step and unit: its mean, and the fractions
    saturated low (σ < 0.05, tanh < -0.95) and high (σ > 0.95, tanh > 0.95)."""

    mean: float
    low: float
    high: float
    saturated: float  # low + high


class UnitActivity(_Facts):
    """Unit k of a layer (row k of W_f, W_i, W_g, W_o) over every traced step."""

    unit: int  # 1-based
    mean: dict[str, float]  # mean activation per gate, f i g o
    saturated: dict[str, float]  # fraction saturated per gate
    w_norm: dict[str, float]  # |row k of W_gate|
    b: dict[str, float]  # b_gate[k]
    memory_span: float | None  # −1 / ln(mean f) in steps; None: longer than SPAN_CAP
    y_std: float  # how much the unit's output moves: its activity
    y_range: float  # max − min of y_t
    c_max: float  # max |c_t|
    dead: bool  # y_range < DEAD_RANGE


class LayerActivity(_Facts):
    layer: int  # 1-based
    gates: dict[str, GateActivity]  # f, i, g, o
    units: list[UnitActivity]
    cell_norm: list[float]  # ‖c_t‖ (Euclidean, over the m units) at each step, mean over the traced windows
    dead_units: list[int]
    most_active: list[int]  # unit numbers by y_std, highest first
    least_active: list[int]  # lowest first


class TraceCheck(_Facts):
    """The trace's y_t (textbook equations, float64) against the fused layer's (float32) on the same input."""

    max_abs_diff: float  # over whole windows, as predict runs the layer
    step_max_abs_diff: float  # one step at a time from the trace's own states: rounding not carried on
    tolerance: float
    same_function: bool  # step_max_abs_diff <= tolerance: the gate equations are the fused cell's
    window_agrees: bool  # max_abs_diff <= tolerance: the trace is the trajectory predict computes


@dataclass(frozen=True)
class Trace:
    """Every activation of every layer, (B, T, m) float64 tensors on the CPU, and their summaries."""

    layers: list[LayerTrace]
    activity: list[LayerActivity]
    check: TraceCheck


def trace(lstm: nn.LSTM, x: torch.Tensor, top: int = 5) -> Trace:
    """Trace ``lstm`` on its input x (B, T, n): the gate equations in float64 on its weights,
    checked against the fused layer on the same x, and summarised per layer, gate and unit."""
    ref = float64_copy(lstm)
    layers = gate_view(ref)
    with torch.no_grad():
        traces = reference_trace(layers, x.detach().double().cpu())
    diff = fused_difference(lstm, x, traces)
    step = step_difference(lstm, x, traces)
    check = TraceCheck(
        max_abs_diff=diff,
        step_max_abs_diff=step,
        tolerance=TOLERANCE,
        same_function=step <= TOLERANCE,
        window_agrees=diff <= TOLERANCE,
    )
    activity = [summarise(k + 1, lt, gv, top) for k, (lt, gv) in enumerate(zip(traces, layers, strict=True))]
    return Trace(layers=traces, activity=activity, check=check)


def fused_difference(lstm: nn.LSTM, x: torch.Tensor, traces: list[LayerTrace]) -> float:
    """Max |y_fused − y_trace| over the last layer's every step and every layer's last step."""
    with torch.no_grad():
        y, (h_n, _) = lstm(x)  # y (B, T, m) of the last layer; h_n (layers, B, m)
    y, h_n = y.double().cpu(), h_n.double().cpu()
    diff = (y - traces[-1].y).abs().max()
    for k, lt in enumerate(traces):
        diff = torch.maximum(diff, (h_n[k] - lt.y[:, -1]).abs().max())
    return float(diff)


def step_difference(lstm: nn.LSTM, x: torch.Tensor, traces: list[LayerTrace]) -> float:
    """Max |y_fused − y_trace| of single steps: each layer's fused cell started from the trace's
    own (y_(t-1), c_(t-1)) at every step, so no step's rounding is carried into the next."""
    diff = 0.0
    inputs = x.detach().float().cpu()  # (B, T, n_l) the layer's input
    for k, lt in enumerate(traces):
        batch, steps, m = lt.y.shape
        cell = nn.LSTM(inputs.shape[2], m, 1, batch_first=True, bias=lstm.bias)
        cell.load_state_dict(
            {
                name.replace(f"_l{k}", "_l0"): t.detach().float().cpu()
                for name, t in lstm.state_dict().items()
                if name.endswith(f"_l{k}")
            }
        )
        zeros = lt.y.new_zeros(batch, 1, m)
        y_prev = torch.cat([zeros, lt.y[:, :-1]], dim=1).reshape(1, batch * steps, m).float()  # y_(t-1)
        c_prev = torch.cat([zeros, lt.c[:, :-1]], dim=1).reshape(1, batch * steps, m).float()  # c_(t-1)
        with torch.no_grad():
            y, _ = cell(inputs.reshape(batch * steps, 1, -1), (y_prev, c_prev))  # (B·T, 1, m)
        diff = max(diff, float((y.double().reshape(batch, steps, m) - lt.y).abs().max()))
        inputs = lt.y.float()
    return diff


def memory_span(f_mean: float) -> float | None:
    """−1 / ln f̄: the steps over which c_t keeps 1/e of itself through the forget gate alone;
    None beyond SPAN_CAP steps (f̄ → 1)."""
    if f_mean >= math.exp(-1.0 / SPAN_CAP):
        return None
    return -1.0 / math.log(f_mean) if f_mean > 0 else 0.0


def _saturation(values: torch.Tensor, gate: str, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    lo = -SATURATION if gate == "g" else 1.0 - SATURATION
    return (values < lo).double().mean(dim=dims), (values > SATURATION).double().mean(dim=dims)


def summarise(layer: int, lt: LayerTrace, gv: LayerGates, top: int = 5) -> LayerActivity:
    """One layer's gate statistics over every traced window and step (tensors (B, T, m))."""
    acts = {"f": lt.f, "i": lt.i, "g": lt.g, "o": lt.o}
    gates = {}
    unit_mean, unit_sat = {}, {}
    for gate in TEXTBOOK_ORDER:
        a = acts[gate]
        low, high = _saturation(a, gate, (0, 1, 2))
        gates[gate] = GateActivity(mean=float(a.mean()), low=float(low), high=float(high), saturated=float(low + high))
        u_low, u_high = _saturation(a, gate, (0, 1))
        unit_mean[gate], unit_sat[gate] = a.mean(dim=(0, 1)), u_low + u_high  # (m,)
    y = lt.y.reshape(-1, lt.y.shape[-1])  # (B·T, m)
    y_std = y.std(dim=0, unbiased=False)
    y_range = y.max(dim=0).values - y.min(dim=0).values
    c_max = lt.c.abs().reshape(-1, lt.c.shape[-1]).max(dim=0).values
    units = [
        UnitActivity(
            unit=k + 1,
            mean={g: float(unit_mean[g][k]) for g in TEXTBOOK_ORDER},
            saturated={g: float(unit_sat[g][k]) for g in TEXTBOOK_ORDER},
            w_norm={g: float(gv.W[g][k].norm()) for g in TEXTBOOK_ORDER},
            b={g: float(gv.b[g][k]) for g in TEXTBOOK_ORDER},
            memory_span=memory_span(float(unit_mean["f"][k])),
            y_std=float(y_std[k]),
            y_range=float(y_range[k]),
            c_max=float(c_max[k]),
            dead=bool(y_range[k] < DEAD_RANGE),
        )
        for k in range(gv.m)
    ]
    order = sorted(units, key=lambda u: -u.y_std)
    k = min(top, gv.m)
    return LayerActivity(
        layer=layer,
        gates=gates,
        units=units,
        cell_norm=[float(v) for v in lt.c.norm(dim=2).mean(dim=0)],  # (T,)
        dead_units=[u.unit for u in units if u.dead],
        most_active=[u.unit for u in order[:k]],
        least_active=[u.unit for u in reversed(order[-k:])],
    )
