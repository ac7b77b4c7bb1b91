"""``lstm inspect RUN --trace CSV``: a trained run's gate sub-layers at work on windows of a CSV.

The CSV is read and scaled as ``predict`` reads it (``runs.inputs.read_series``: the run's stored
scaler, never refitted); each window goes through the model's own window normalisation
(``LSTMForecaster.lstm_input``), and ``model.gate_trace`` records what the gates do on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lstmcli.data.dates import format_dates
from lstmcli.errors import DataError
from lstmcli.model.gate_trace import trace
from lstmcli.model.gates import LayerTrace
from lstmcli.results import Traced, TraceFacts, TraceWindow
from lstmcli.runs.inputs import Series, read_series
from lstmcli.runs.run import Run

# Every traced value is kept (6 tensors of B x L x m per layer, float64): 5e7 values are 400 MB.
MAX_TRACED_VALUES = 50_000_000


@dataclass(frozen=True)
class TraceRequest:
    """Which windows of which CSV to trace: ``window`` (0-based) or the one starting at ``start``
    (a date), default the last full window; ``windows`` of them, ending with that one."""

    data: Path
    window: int | None = None
    start: str | None = None
    windows: int = 1
    series: str | None = None
    top: int = 5


def trace_run(run: Run, request: TraceRequest) -> Traced:
    """Trace ``run`` on the requested windows of ``request.data``."""
    cfg = run.cfg.data
    L = cfg.lookback
    series = _one_series(run, request)
    n_rows = series.table.n_rows
    last = _window_index(series, request, L)
    first = last - request.windows + 1
    if first < 0:
        raise DataError(
            f"--windows {request.windows}: only {last + 1} window(s) of {series.table.path} end at or before "
            f"window {last} (windows are 0-based)"
        )
    values = request.windows * L * run.model.m * run.model.layers * 6
    if values > MAX_TRACED_VALUES:
        most = max(1, MAX_TRACED_VALUES // (L * run.model.m * run.model.layers * 6))
        raise DataError(
            f"--windows {request.windows}: tracing them would keep {values:,} activations; at most {most:,} "
            f"windows of this model (L = {L}, m = {run.model.m}, {run.model.layers} layer(s)) fit"
        )
    rows = np.arange(first, last + 1)[:, None] + np.arange(L)  # (W, L)
    model = run.model.cpu()
    with torch.no_grad():
        x = model.lstm_input(torch.as_tensor(series.scaled[rows]))  # (W, L, n)
    result = trace(model.lstm, x, request.top)
    table = series.table
    dates = None if table.dates is None else format_dates(table.dates[[last, last + L - 1]], like=table.dates)
    window = TraceWindow(
        data=str(request.data),
        series=series.id,
        index=last,
        count=n_rows - L + 1,
        traced=request.windows,
        first_row=last + 1,
        last_row=last + L,
        first_date=dates[0] if dates else None,
        last_date=dates[1] if dates else None,
        steps=L,
    )
    facts = TraceFacts(window=window, lookback=L, season=cfg.s, check=result.check, layers=result.activity)
    span = slice(last, last + L)
    return Traced(
        facts=facts,
        run=str(run.path),
        index=table.dates[span] if table.dates is not None else np.arange(last + 1, last + L + 1),
        dated=table.dates is not None,
        columns=list(table.columns),
        targets=len(cfg.target),
        values=table.values[span],
        lstm_input=x[-1].double().numpy(),
        layers=[LayerTrace(**{name: getattr(lt, name)[-1:] for name in "figocy"}) for lt in result.layers],
    )


def _one_series(run: Run, request: TraceRequest) -> Series:
    cfg = run.cfg.data
    parts = read_series(
        run,
        request.data,
        cfg.lookback,
        f"a trace window of run {run.path} needs L = {cfg.lookback} rows (its lookback)",
        request.series,
    )
    if len(parts) > 1:
        names = ", ".join(str(p.id) for p in parts[:5]) + (", …" if len(parts) > 5 else "")
        raise DataError(f"{request.data}: holds {len(parts)} series ({names}); pick the one to trace with --series")
    return parts[0]


def _window_index(series: Series, request: TraceRequest, L: int) -> int:
    """The 0-based index of the traced window: --window K, the one starting at --from DATE, or the last."""
    table = series.table
    last = table.n_rows - L
    if request.window is not None:
        if not 0 <= request.window <= last:
            raise DataError(
                f"--window {request.window}: {table.path} has {last + 1} full window(s) of L = {L} rows, "
                f"numbered 0 to {last}"
            )
        return request.window
    if request.start is None:
        return last  # the window the next forecast reads
    if table.dates is None:
        raise DataError(f"--from {request.start}: {table.path} has no date column; use --window K")
    try:
        start = np.datetime64(request.start)
    except ValueError:
        raise DataError(f"--from {request.start!r}: expected an ISO date such as 2001-06-30") from None
    first_date, last_start = format_dates(table.dates[[0, last]], like=table.dates)
    k = int(np.searchsorted(table.dates, start.astype(table.dates.dtype), side="left"))
    if start < table.dates[0] or k > last:
        raise DataError(
            f"--from {request.start}: the traced window starts at the first row on or after this date, and "
            f"in {table.path} a full window of L = {L} rows starts between {first_date} and {last_start}"
        )
    return k
