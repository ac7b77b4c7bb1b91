"""The run's predict path as one ONNX graph, and its check against that path.

:class:`Deployed` is the forecaster as ``lstm predict`` computes it, raw values in and original
units out: the stored scaler (per series), the window normalisation and scale, the fused LSTM and
head, the inverse transform, and the calibrated intervals. It is exported with PyTorch's
TorchScript-based ONNX exporter, which writes ``nn.LSTM`` as ONNX's native ``LSTM`` operator (one
fused kernel in onnxruntime); the torch.export-based exporter needs the onnxscript package and
unrolls nothing better. onnx and onnxruntime are an optional extra (``lstmcli[export]``).
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lstmcli.errors import ResourceError
from lstmcli.model.forecaster import LSTMForecaster

OPSET = 17
# The graph and the predict path compute the same float32 network; they differ by the order of
# float32 sums (onnxruntime's LSTM kernel against oneDNN's or cuDNN's) and by the scaling, which the
# graph does in float32 and predict in float64. Over L recurrent steps such rounding grows to ~1e-6
# of the series' standard deviation; 1e-4 of it (or of the value, for a log transform) is a hundred
# times that, and a hundred times smaller than any weight change that matters (a test perturbs one
# weight by 1e-3 and fails the check).
TOLERANCE = 1e-4


class ExportUnavailable(ResourceError):
    """onnx or onnxruntime is not installed (exit 1: the input is fine, the environment lacks them)."""


def require_onnx() -> tuple[Any, Any]:
    """(onnx, onnxruntime), or one line saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ExportUnavailable(
            f"lstm export needs onnx and onnxruntime ({exc.name} is not installed): pip install 'lstmcli[export]'"
        ) from None
    return onnx, onnxruntime


@dataclass(frozen=True)
class Tables:
    """What the graph carries besides the network: per series the scaler, per level the
    calibration radii (in window scales) and the quantile band it widens."""

    mean: np.ndarray  # (S, n) of the transformed values
    std: np.ndarray  # (S, n)
    log: np.ndarray  # (n,) bool: the column is modelled as log(x)
    levels: list[int]  # interval levels (%), [] for none
    radius: np.ndarray  # (S, levels, H, k); inf where a level's radius is not finite
    bands: list[tuple[int, int]]  # per level, the positions of its band's quantiles in the head's outputs


class Deployed(nn.Module):
    """Raw inputs (B, T, n) and each window's series number (B,) -> the forecast (B, H, k), then
    the quantiles (B, H, k, Q) of a quantile run, then lower and upper bounds (B, H, k) per level.

    T is L, or L + H for a run with known-future columns (their values for the H steps ahead in the
    last H rows; the other columns of those rows are not read)."""

    def __init__(self, model: LSTMForecaster, tables: Tables) -> None:
        super().__init__()
        self.model = model
        self.k = model.n_targets
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.log: torch.Tensor
        self.radius: torch.Tensor
        self.register_buffer("mean", torch.as_tensor(tables.mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(tables.std, dtype=torch.float32))
        self.register_buffer("log", torch.as_tensor(tables.log, dtype=torch.bool))
        self.register_buffer("radius", torch.as_tensor(tables.radius, dtype=torch.float32))
        self.bands = list(tables.bands)
        self.levels = list(tables.levels)

    def forward(self, x: torch.Tensor, series: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mean, std = self.mean[series].unsqueeze(1), self.std[series].unsqueeze(1)  # (B, 1, n)
        v = torch.where(self.log, torch.log(torch.where(self.log, x, torch.ones_like(x))), x)
        z = (v - mean) / std
        q = self.model(z, quantiles=True)  # (B, H, k, Q) in the model's units
        point = q[..., self.model.median]
        outs = [self._inverse(point, mean, std)]
        if self.model.quantiles:
            outs.append(self._inverse(q, mean.unsqueeze(-1), std.unsqueeze(-1)))
        if self.levels:
            scale = self.model.scale(z)  # (B, 1, k)
            for j, (lo_q, hi_q) in enumerate(self.bands):
                r = self.radius[series, j] * scale  # (B, H, k)
                lower = torch.minimum(q[..., lo_q] - r, point)
                upper = torch.maximum(q[..., hi_q] + r, point)
                outs += [self._inverse(lower, mean, std), self._inverse(upper, mean, std)]
        return tuple(outs)

    def _inverse(self, z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Model units -> original units for the targets; ``mean``/``std`` broadcast against ``z``."""
        k = self.k
        if z.dim() == 4:
            m, s, log = mean[:, :, :k], std[:, :, :k], self.log[:k].unsqueeze(-1)
        else:
            m, s, log = mean[..., :k], std[..., :k], self.log[:k]
        v = z * s + m
        return torch.where(log, torch.exp(v), v)


def output_names(model: LSTMForecaster, levels: list[int]) -> list[str]:
    names = ["forecast"]
    if model.quantiles:
        names.append("quantiles")
    for level in levels:
        names += [f"lower_{level}", f"upper_{level}"]
    return names


def to_onnx(deployed: Deployed, example: tuple[np.ndarray, np.ndarray], metadata: dict[str, Any]) -> bytes:
    """The graph as ONNX bytes, batch dimension dynamic, ``metadata`` in its metadata props
    (values that are not strings as JSON)."""
    onnx, _ = require_onnx()
    names = output_names(deployed.model, deployed.levels)
    x, series = (torch.as_tensor(a) for a in example)
    buf = io.BytesIO()
    deployed.eval()
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter says it is legacy, and that an LSTM exported with a batch size other
        # than 1 may fail at another batch size: the check below runs a different one.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            deployed,
            (x, series),
            buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to a file object too
            dynamo=False,
            opset_version=OPSET,
            input_names=["x", "series"],
            output_names=names,
            dynamic_axes={"x": {0: "batch"}, "series": {0: "batch"}, **{n: {0: "batch"} for n in names}},
        )
    proto = onnx.load_from_string(buf.getvalue())
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    proto.doc_string = "lstmcli forecaster: raw input window -> forecast in original units"
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def run_onnx(model_bytes: bytes, x: np.ndarray, series: np.ndarray, threads: int = 1) -> list[np.ndarray]:
    """Every output of the graph for inputs ``x`` (B, T, n) float32 and ``series`` (B,) int64."""
    _, ort = require_onnx()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return list(session.run(None, {"x": x.astype(np.float32), "series": series.astype(np.int64)}))


@dataclass(frozen=True)
class Parity:
    """The check: the graph's outputs against the predict path's on the same real windows."""

    windows: int
    max_abs_diff: float  # original units, over every output
    max_rel_diff: float  # the difference over the tolerance's scale (1 = at the tolerance)
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_rel_diff)) and self.max_rel_diff <= 1.0


def compare(got: list[np.ndarray], want: list[np.ndarray], scale: list[np.ndarray]) -> Parity:
    """``got`` against ``want``, output by output, each difference measured against
    TOLERANCE × ``scale`` (per value: the series' std, or the value itself for a log transform).
    Infinite bounds (a level whose radius was not finite) must be infinite in both."""
    worst_abs, worst_rel = 0.0, 0.0
    for g, w, s in zip(got, want, scale, strict=True):
        g, w = np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)
        same_inf = np.isinf(g) & np.isinf(w) & (np.sign(g) == np.sign(w))
        diff = np.where(same_inf, 0.0, np.abs(g - w))
        diff = np.where(np.isnan(diff), np.inf, diff)
        worst_abs = max(worst_abs, float(diff.max(initial=0.0)))
        worst_rel = max(worst_rel, float((diff / (TOLERANCE * s)).max(initial=0.0)))
    return Parity(windows=int(got[0].shape[0]), max_abs_diff=worst_abs, max_rel_diff=worst_rel, tolerance=TOLERANCE)
