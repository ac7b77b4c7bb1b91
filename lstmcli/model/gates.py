"""The textbook view of a stacked LSTM, sliced from PyTorch's packed tensors, and the proof.

A layer l of an LSTM is four feed-forward sub-layers acting on [x_t, y_{t-1}] (size n_l + m):

    f_t = σ(W_f [x_t, y_{t-1}] + b_f)    i_t = σ(W_i [..] + b_i)
    g_t = tanh(W_g [..] + b_g)           o_t = σ(W_o [..] + b_o)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t      y_t = o_t ⊙ tanh(c_t)

PyTorch packs the gates row-wise in the order i, f, g, o into ``weight_ih_l{k}`` (4m × n_l) and
``weight_hh_l{k}`` (4m × m), with two biases whose sum is the textbook b. This module slices them
apart, runs the equations above step by step (a reference only; training uses the fused kernel),
and collects the facts ``lstm inspect`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from lstmcli.model.forecaster import LSTMForecaster

TORCH_ORDER = ("i", "f", "g", "o")  # row blocks of the packed tensors
TEXTBOOK_ORDER = ("f", "i", "g", "o")  # the order the equations are usually written in
GATE_NAMES = {"f": "forget gate", "i": "input gate", "g": "candidate", "o": "output gate"}
ACTIVATION = {"f": "σ", "i": "σ", "g": "tanh", "o": "σ"}


@dataclass(frozen=True)
class LayerGates:
    """One layer in textbook form: W[gate] is (m, n_l + m), b[gate] is (m,)."""

    input_size: int  # n_l
    W: dict[str, torch.Tensor]
    b: dict[str, torch.Tensor]

    @property
    def m(self) -> int:
        return self.W["f"].shape[0]


def gate_rows(gate: str, m: int) -> tuple[int, int]:
    """Row range [start, stop) of ``gate`` in PyTorch's packed (4m, ·) tensors."""
    start = TORCH_ORDER.index(gate) * m
    return start, start + m


def gate_view(lstm: nn.LSTM) -> list[LayerGates]:
    """Slice every layer's packed weights into per-gate W = [W_x | W_y] and b = b_ih + b_hh."""
    if lstm.bidirectional or lstm.proj_size:
        raise ValueError("the gate view covers unidirectional LSTMs without projections")
    m = lstm.hidden_size
    layers = []
    for k in range(lstm.num_layers):
        w_ih = getattr(lstm, f"weight_ih_l{k}").detach()  # (4m, n_l)
        w_hh = getattr(lstm, f"weight_hh_l{k}").detach()  # (4m, m)
        if lstm.bias:
            bias = (getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")).detach()  # (4m,)
        else:
            bias = torch.zeros(4 * m, dtype=w_ih.dtype, device=w_ih.device)
        W, b = {}, {}
        for gate in TORCH_ORDER:
            lo, hi = gate_rows(gate, m)
            W[gate] = torch.cat([w_ih[lo:hi], w_hh[lo:hi]], dim=1)  # (m, n_l + m)
            b[gate] = bias[lo:hi]  # (m,)
        layers.append(LayerGates(input_size=w_ih.shape[1], W=W, b=b))
    return layers


@dataclass(frozen=True)
class LayerTrace:
    """What one layer's gate sub-layers did at every step: each tensor is (B, T, m)."""

    f: torch.Tensor  # forget gate σ
    i: torch.Tensor  # input gate σ
    g: torch.Tensor  # candidate tanh
    o: torch.Tensor  # output gate σ
    c: torch.Tensor  # cell state c_t
    y: torch.Tensor  # output y_t (the next layer's input)


def reference_trace(layers: list[LayerGates], x: torch.Tensor) -> list[LayerTrace]:
    """Run the gate equations literally, one time step at a time, and keep every gate activation
    and state; x (B, T, n) -> one LayerTrace per layer.

    Slow by design: this is the definition the fused kernel is checked against, never a
    training path.
    """
    traces = []
    out = x
    for layer in layers:
        batch, steps, _ = out.shape
        m = layer.m
        y = out.new_zeros(batch, m)  # y_0
        c = out.new_zeros(batch, m)  # c_0
        rec: dict[str, list[torch.Tensor]] = {name: [] for name in "figocy"}
        for t in range(steps):
            z = torch.cat([out[:, t, :], y], dim=1)  # [x_t, y_{t-1}]: (B, n_l + m)
            f = torch.sigmoid(z @ layer.W["f"].T + layer.b["f"])
            i = torch.sigmoid(z @ layer.W["i"].T + layer.b["i"])
            g = torch.tanh(z @ layer.W["g"].T + layer.b["g"])
            o = torch.sigmoid(z @ layer.W["o"].T + layer.b["o"])
            c = f * c + i * g
            y = o * torch.tanh(c)
            for name, value in zip("figocy", (f, i, g, o, c, y), strict=True):
                rec[name].append(value)
        stacked = {name: torch.stack(values, dim=1) for name, values in rec.items()}  # (B, T, m) each
        traces.append(LayerTrace(**stacked))
        out = stacked["y"]  # the next layer's input
    return traces


def reference_forward(layers: list[LayerGates], x: torch.Tensor) -> torch.Tensor:
    """The gate equations' output, x (B, T, n) -> the last layer's y (B, T, m)."""
    return reference_trace(layers, x)[-1].y


def check_equivalence(lstm: nn.LSTM, steps: int = 12, batch: int = 3, seed: int = 0) -> float:
    """Largest |fused − reference| over all outputs, on random input, in float64."""
    ref = float64_copy(lstm)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, ref.input_size, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        fused, _ = ref(x)
        textbook = reference_forward(gate_view(ref), x)
    return float((fused - textbook).abs().max())


def float64_copy(lstm: nn.LSTM) -> nn.LSTM:
    """The same LSTM in float64 on the CPU, in eval mode (float32 weights widen exactly)."""
    copy = nn.LSTM(lstm.input_size, lstm.hidden_size, lstm.num_layers, bias=lstm.bias, batch_first=True).double()
    copy.load_state_dict({k: v.detach().double().cpu() for k, v in lstm.state_dict().items()})
    copy.eval()  # no dropout between layers in the comparison
    return copy


def textbook_parameters(n_l: int, m: int) -> int:
    """4 gates × (W: m × (n_l + m) and b: m)."""
    return 4 * m * (n_l + m) + 4 * m


class _Facts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GateStats(_Facts):
    """A trained gate's weights: the norms of W's input and recurrent columns, b's mean and range."""

    W_input_norm: float
    W_recurrent_norm: float
    b_mean: float
    b_min: float
    b_max: float


class GateFacts(_Facts):
    name: str
    activation: str
    W: list[int]  # (m, n_l + m)
    b: list[int]  # (m,)
    torch_rows: list[int]  # [start, stop) in PyTorch's packed (4m, ·) tensors
    stats: GateStats | None = None


class ForgetBias(_Facts):
    """The learned forget-gate bias b_f of one layer, next to what initialisation gives."""

    mean: float
    min: float
    max: float
    sigmoid_of_mean: float
    init_bound: float


class TensorShape(_Facts):
    name: str
    shape: list[int]


class LayerFacts(_Facts):
    layer: int  # 1-based
    input_size: int  # n_l
    concat_size: int  # n_l + m
    gates: dict[str, GateFacts]  # in textbook order f, i, g, o
    state: dict[str, list[int]]
    torch_tensors: list[TensorShape]
    parameters_textbook: int
    parameters_torch: int
    forget_bias: ForgetBias | None = None


class HeadFacts(_Facts):
    input: list[int]
    output: list[int]
    weight: list[int]
    bias: list[int]
    parameters: int


class ModelFacts(_Facts):
    """A forecaster's shapes gate by gate, as ``lstm inspect`` shows them."""

    n: int
    m: int
    num_layers: int
    horizon: int
    targets: int
    quantiles: list[float] | None = None  # a quantile model's: one head output per quantile, step and target
    layers: list[LayerFacts]
    head: HeadFacts
    total_parameters: int
    members: int = 1  # an ensemble's (train.ensemble): the shapes above are each member's

    @property
    def textbook_parameters(self) -> int:
        return (sum(layer.parameters_textbook for layer in self.layers) + self.head.parameters) * self.members


class UnitFacts(_Facts):
    """Unit k of a layer: row k of each gate's W and b."""

    unit: int  # 1-based
    weights: int
    biases: int
    torch_rows: dict[str, int]
    b: dict[str, float]


def describe(model: LSTMForecaster, *, stats: bool = False) -> ModelFacts:
    """Facts about a forecaster's shapes for ``lstm inspect``.

    With ``stats``, add per-gate statistics of the learned weights: the norm of W's input
    columns and of its recurrent columns, and the mean and range of b.
    """
    lstm, head = model.lstm, model.head
    m = lstm.hidden_size
    layers = []
    for k, layer in enumerate(gate_view(lstm)):
        n_l = layer.input_size
        gates = {}
        for gate in TEXTBOOK_ORDER:
            lo, hi = gate_rows(gate, m)
            gate_stats = None
            if stats:
                W, b = layer.W[gate].double(), layer.b[gate].double()
                gate_stats = GateStats(
                    W_input_norm=float(W[:, :n_l].norm()),
                    W_recurrent_norm=float(W[:, n_l:].norm()),
                    b_mean=float(b.mean()),
                    b_min=float(b.min()),
                    b_max=float(b.max()),
                )
            gates[gate] = GateFacts(
                name=GATE_NAMES[gate],
                activation=ACTIVATION[gate],
                W=[m, n_l + m],
                b=[m],
                torch_rows=[lo, hi],
                stats=gate_stats,
            )
        packed = [
            (f"{name}_l{k}", getattr(lstm, f"{name}_l{k}"))
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            if hasattr(lstm, f"{name}_l{k}")
        ]
        layers.append(
            LayerFacts(
                layer=k + 1,
                input_size=n_l,
                concat_size=n_l + m,
                gates=gates,
                state={"c": [m], "y": [m]},
                torch_tensors=[TensorShape(name=f"lstm.{name}", shape=list(t.shape)) for name, t in packed],
                parameters_textbook=textbook_parameters(n_l, m),
                parameters_torch=sum(t.numel() for _, t in packed),
                forget_bias=forget_bias(layer.b["f"], m) if stats else None,
            )
        )
    return ModelFacts(
        n=lstm.input_size,
        m=m,
        num_layers=lstm.num_layers,
        horizon=model.horizon,
        targets=model.n_targets,
        quantiles=list(model.quantiles) or None,
        layers=layers,
        head=HeadFacts(
            input=[head.in_features],
            output=[head.out_features],
            weight=list(head.weight.shape),
            bias=[head.out_features],
            parameters=sum(p.numel() for p in head.parameters()),
        ),
        total_parameters=sum(p.numel() for p in model.parameters()),
        members=model.members,
    )


def unit_view(model: LSTMForecaster, layer: int) -> list[UnitFacts]:
    """Per-unit facts for ``layer`` (1-based): unit k owns row k of W_f, W_i, W_g, W_o and b."""
    gates = gate_view(model.lstm)[layer - 1]
    n_l, m = gates.input_size, gates.m
    return [
        UnitFacts(
            unit=k + 1,
            weights=4 * (n_l + m),
            biases=4,
            torch_rows={g: gate_rows(g, m)[0] + k for g in TEXTBOOK_ORDER},
            b={g: float(gates.b[g][k]) for g in TEXTBOOK_ORDER},
        )
        for k in range(m)
    ]


def forget_bias(b_f: torch.Tensor, m: int) -> ForgetBias:
    """The learned forget-gate bias b_f of one layer, next to what initialisation gives.

    With zero input and state, the forget gate keeps σ(b_f) of c_(t-1); PyTorch draws b_ih and
    b_hh uniformly from ±1/√m, so an untrained b_f lies within ±2/√m around 0.
    """
    b = b_f.double()
    return ForgetBias(
        mean=float(b.mean()),
        min=float(b.min()),
        max=float(b.max()),
        sigmoid_of_mean=float(torch.sigmoid(b.mean())),
        init_bound=2.0 / m**0.5,
    )
