"""``lstm export RUN``: the run's predict path as one ONNX graph, checked against predict on real windows.

The graph takes a window of raw values in the run's input columns, and the window's series number
(0 for a single series), and returns the forecast in original units, the quantiles of a quantile
run and the calibrated intervals. Before anything is written, onnxruntime runs it on real windows
of the run's CSV and its outputs are compared with the predict path's (``export.onnx.compare``);
a graph that does not compute what predict computes is never written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lstmcli import __version__
from lstmcli.commands.outputs import check_outputs
from lstmcli.errors import CheckFailed, ConfigError, DataError
from lstmcli.evaluate import Calibration, theta_rows
from lstmcli.export.onnx import Deployed, Parity, Tables, compare, output_names, require_onnx, run_onnx, to_onnx
from lstmcli.fsutil import atomic_write
from lstmcli.runs.inputs import Series, read_series, stored_scaler
from lstmcli.runs.run import Run, load_run

CHECK_WINDOWS = 256  # real windows the parity check runs, spread evenly over every series


@dataclass(frozen=True)
class ExportReport:
    """What was written and the proof that it computes what predict computes."""

    path: Path
    size: int  # bytes
    inputs: list[tuple[str, str]]  # (name, shape in words)
    outputs: list[str]
    levels: list[int]
    series: int
    parity: Parity
    data: str  # the CSV the check's windows came from
    seconds: float


def default_out(run_dir: Path) -> Path:
    """``runs/co2`` -> ``runs/co2.onnx``: beside the run, whose directory only ``lstm train`` writes."""
    run_dir = Path(run_dir).resolve()  # `lstm export .` inside the run writes beside it too
    return run_dir.parent / f"{run_dir.name}.onnx"


def export(run_dir: Path, out: Path, levels: list[int] | None = None, data: Path | None = None) -> ExportReport:
    """Export run ``run_dir`` to ONNX at ``out`` with intervals at ``levels`` (default: 80 and 95
    where the run is calibrated), checked on windows of ``data`` (default: the run's training CSV)."""
    start = time.perf_counter()
    require_onnx()
    run = load_run(run_dir)
    metrics = run.metrics()
    if metrics is not None and metrics.averaged_with_theta:
        raise ConfigError(
            f"{run_dir}: its forecasts average the network's with the Theta method's, fitted to up to "
            f"{theta_rows(run.cfg.data.s):,} rows of history before each origin, which a graph of the network's window of "
            f"{run.cfg.data.lookback} rows cannot compute; to export, train it with --set model.combine=none"
        )
    source = data if data is not None else Path(run.meta.data.path)
    check_outputs({"--out": out}, [source])  # never over the CSV it reads, the run or another input
    if not source.is_file():
        raise DataError(f"{source}: the run's training CSV is not there to check the export on; pass --data CSV")
    calibration = None if metrics is None or not metrics.calibration else metrics.calibration["model"]
    levels = _levels(run, calibration, levels)
    parts = read_series(run, source, 1, "")
    tables = _tables(run, calibration, levels)
    deployed = Deployed(run.model, tables)
    x, series_index, want, scales = _check_windows(run, parts, calibration, levels)
    onnx_bytes = to_onnx(deployed, (x[:2], series_index[:2]), _metadata(run, levels))
    parity = compare(run_onnx(onnx_bytes, x, series_index), want, scales)
    if not parity.passed:
        raise CheckFailed(
            f"{out}: not written: on {parity.windows} windows of {source} the ONNX graph differs from lstm "
            f"predict by up to {parity.max_abs_diff:.3g} ({parity.max_rel_diff:.3g} × the tolerance "
            f"{parity.tolerance:g} of the series' scale)"
        )
    atomic_write(out, onnx_bytes)
    names = ["x", "series"]
    rows = run.cfg.data.lookback + (run.cfg.data.horizon if run.cfg.data.future_columns else 0)
    shapes = [f"batch × {rows} × {run.cfg.model.n} float32", "batch int64"]
    return ExportReport(
        path=out,
        size=len(onnx_bytes),
        inputs=list(zip(names, shapes, strict=True)),
        outputs=output_names(run.model, levels),
        levels=levels,
        series=len(run.meta.series),
        parity=parity,
        data=str(source),
        seconds=time.perf_counter() - start,
    )


def _levels(run: Run, calibration: Calibration | None, asked: list[int] | None) -> list[int]:
    if calibration is None:
        if asked:
            raise DataError(f"--level: run {run.path} has no calibration (metrics.json) to give intervals from")
        return []
    wanted: list[int] = sorted(set(asked)) if asked else [lv for lv in (80, 95) if lv in calibration.levels]
    missing = [lv for lv in wanted if lv not in calibration.levels]
    if missing:
        raise DataError(
            f"--level {missing[0]}: run {run.path} is calibrated for {calibration.levels[0]}…{calibration.levels[-1]}"
        )
    return wanted


def _tables(run: Run, calibration: Calibration | None, levels: list[int]) -> Tables:
    """Per series (meta.json's order) its scaler and radii; per level its band's quantile positions."""
    scalers = [stored_scaler(run, s) for s in run.meta.series]
    H, k = run.cfg.data.horizon, len(run.cfg.data.target)
    radius = np.zeros((len(scalers), len(levels), H, k))
    bands: list[tuple[int, int]] = []
    quantiles = run.model.quantiles
    if calibration is not None:
        for j, level in enumerate(levels):
            for i, s in enumerate(run.meta.series):
                radius[i, j] = calibration.for_series(s.id).radius_for(level)
            lo, hi = calibration.band_for(level)
            bands.append((quantiles.index(lo), quantiles.index(hi)) if quantiles else (0, 0))
    return Tables(
        mean=np.stack([s.mean for s in scalers]),
        std=np.stack([s.std for s in scalers]),
        log=scalers[0].log,
        levels=levels,
        radius=radius,
        bands=bands,
    )


def _check_windows(
    run: Run, parts: list[Series], calibration: Calibration | None, levels: list[int]
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Raw windows (W, T, n), their series numbers (W,), the predict path's outputs for them (each
    series' own scaler and calibration, the calls ``predict._forecast_one`` makes) and the scale
    each output's difference is measured against."""
    cfg, model = run.cfg.data, run.model
    L, H, k = cfg.lookback, cfg.horizon, len(cfg.target)
    ahead = H if cfg.future_columns else 0
    order = {s.id: i for i, s in enumerate(run.meta.series)}
    usable = [p for p in parts if p.table.n_rows >= L + ahead]
    if not usable:
        raise DataError(f"{parts[0].table.path}: no series has the L = {L} rows (+ {ahead} ahead) of a window")
    per = max(1, CHECK_WINDOWS // len(usable))
    raws, index, outputs, scales = [], [], [], []
    for p in usable:
        origins = np.unique(np.linspace(L, p.table.n_rows - ahead, num=per).astype(np.int64))
        rows = origins[:, None] + np.arange(-L, ahead)[None, :]
        raws.append(p.table.values[rows])
        index.append(np.full(len(origins), order[p.id], dtype=np.int64))
        with torch.no_grad():
            z = torch.as_tensor(p.scaled[rows])
            q = model(z, quantiles=True).double().numpy()  # (W, H, k, Q), as predict's model call
            scale = model.scale(z).double().numpy()  # (W, 1, k)
        targets = slice(0, k)
        want = [p.scaler.inverse(q[..., model.median], targets)]
        if model.quantiles:
            want.append(np.stack([p.scaler.inverse(q[..., j], targets) for j in range(q.shape[-1])], axis=-1))
        for level in levels:
            assert calibration is not None
            lo, hi = calibration.for_series(p.id).interval(q, model.quantiles, scale, level)
            want += [p.scaler.inverse(lo, targets), p.scaler.inverse(hi, targets)]
        outputs.append(want)
        # A difference counts against the series' std (original units) or, for a log transform, the value.
        std, log = p.scaler.std[:k], p.scaler.log[:k]
        scales.append(
            [
                np.where(log if w.ndim == 3 else log[:, None], np.abs(w), std if w.ndim == 3 else std[:, None])
                for w in want
            ]
        )
    x, series_index = np.concatenate(raws).astype(np.float32), np.concatenate(index)
    joined = [np.concatenate([o[j] for o in outputs]) for j in range(len(outputs[0]))]
    joined_scales = [np.concatenate([sc[j] for sc in scales]) for j in range(len(scales[0]))]
    return x, series_index, joined, joined_scales


def _metadata(run: Run, levels: list[int]) -> dict[str, object]:
    """The run's facts a deployment needs, in the graph's metadata props."""
    cfg, meta = run.cfg, run.meta
    return {
        "producer": f"lstmcli {__version__}",
        "run": str(run.path.resolve()),
        "columns": list(cfg.data.columns),
        "targets": list(cfg.data.target),
        "generated_columns": list(cfg.data.generated_columns),
        "lag_columns": list(cfg.data.lag_columns),
        "lags": list(cfg.data.lags),
        "future_columns": [cfg.data.columns[j] for j in cfg.data.future_columns],
        "lookback": cfg.data.lookback,
        "horizon": cfg.data.horizon,
        "rows": cfg.data.lookback + (cfg.data.horizon if cfg.data.future_columns else 0),
        "frequency": meta.data.frequency or "",
        "last_date": meta.data.last_date or "",
        "series_column": cfg.data.series_column or "",
        "series": [s.id for s in meta.series],
        "quantiles": list(run.model.quantiles),
        "levels": levels,
        "outputs": output_names(run.model, levels),
        "x": "raw values, one row per step, in the order of 'columns' (original units; 'generated_columns' "
        "are the calendar and holiday inputs lstmcli computes from the dates; each of 'lag_columns' is its "
        "target 'lags' steps before the row, on every row, the future ones included)",
        "series_input": "each window's position in 'series' (0 for a single series)",
    }
