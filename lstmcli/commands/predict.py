"""Use a trained run on new data: forecast the next steps, or backtest every origin of a file.

Everything is read from the run directory (``checkpoint.load_run``): the model is rebuilt from the
stored config, the CSV is scaled with the stored scaler (never refitted), and the forecasts go
through the same code as ``train``'s evaluation (``evaluate.forecast_chunks`` and ``Scores``), so a backtest over
the training CSV's test origins reproduces ``metrics.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lstmcli.data.calendar_features import generated_column
from lstmcli.data.dataset import Split, split_rows
from lstmcli.data.dates import continue_dates, format_dates, infer_frequency
from lstmcli.data.reader import Table, read_header, read_table
from lstmcli.data.windows import Windows
from lstmcli.errors import ConfigError, DataError
from lstmcli.evaluate import (
    Calibration,
    IntervalSums,
    Scores,
    ThetaCombination,
    combined,
    forecast_chunks,
    forecast_set,
    mase_scale,
)
from lstmcli.model.forecaster import LSTMForecaster
from lstmcli.results import Backtest, Forecast, Results
from lstmcli.runs.inputs import Series, read_series
from lstmcli.runs.run import Run, load_run
from lstmcli.runs.schema import Metrics, SeriesMeta
from lstmcli.training.device import resolve_device

BACKTEST_SPLITS = ("all", "train", "val", "test")
# A recursive forecast makes one model call per H steps and holds every step: 10,000 steps cover a
# year of hourly data in seconds; a billion would take days and gigabytes.
MAX_STEPS = 10_000


def _device(run: Run) -> torch.device:
    """The device training would pick, so backtests match metrics.json; the CPU if that is absent."""
    try:
        return resolve_device(run.cfg.train.device)
    except ConfigError:
        return torch.device("cpu")


def _history_index(table: Table) -> np.ndarray:
    return table.dates if table.dates is not None else np.arange(1, table.n_rows + 1)


# ---------------------------------------------------------------------------------------------
# Forecasting the future


def forecast(
    run_dir: str | Path,
    data: str | Path,
    steps: int | None = None,
    future: str | Path | None = None,
    series: str | None = None,
    levels: list[int] | None = None,
) -> Results:
    """Forecast ``steps`` (default H) values of each target after the last row of ``data``.

    More than H steps are forecast recursively: each H-step forecast is appended to the inputs
    and the model is called again. That needs every input column to be forecast, so a run with
    covariate features needs their future values from ``future``. A multi-series run forecasts
    every series in the file (or ``series`` alone). ``levels``: central prediction intervals at
    these percentages, from the run's split-conformal calibration (``evaluate.Calibration``).
    """
    run = load_run(run_dir)
    cfg = run.cfg.data
    L, H = cfg.lookback, cfg.horizon
    K = H if steps is None else steps
    if not 1 <= K <= MAX_STEPS:
        raise DataError(f"--steps must be between 1 and {MAX_STEPS:,}, got {K:,}")
    calibration = None
    metrics = run.metrics()
    if levels:
        calibration = _calibrations(run, metrics)["model"]
        if K > H:
            raise DataError(
                f"--level with --steps {K} > H = {H}: the intervals are calibrated for the H steps of one "
                f"model call, and fed-back forecasts would need more; use --steps {H} or fewer"
            )
    # A global model pads a short series' lookback with its first row, as it was trained to.
    # A lag run reads the target max(lags) steps back; fewer rows would fill the lags with the first row.
    need = 1 if cfg.series_column else max([L, *cfg.lags])
    why = f"L = {L} rows (its lookback)" if need == L else f"{need} rows (its longest lag, data.lags)"
    parts = read_series(run, data, need, f"run {run.path} needs at least {why} to forecast", series)
    theta = metrics is not None and metrics.averaged_with_theta
    items = [_forecast_one(run, s, K, future, calibration, levels or [], theta) for s in parts]
    return Results(items=items, series_column=cfg.series_column)


def _theta(run: Run, series: Series, horizon: int) -> ThetaCombination:
    """Theta's forecasts from the origins of ``series``, as training fitted them."""
    k = len(run.cfg.data.target)
    return ThetaCombination(series.table.values[:, :k], np.zeros(1), [series.scaler], horizon, run.cfg.data.s)


def _forecast_one(
    run: Run,
    series: Series,
    K: int,
    future: str | Path | None,
    calibration: Calibration | None,
    levels: list[int],
    theta: bool = False,
) -> Forecast:
    cfg = run.cfg.data
    L, H, k = cfg.lookback, cfg.horizon, len(cfg.target)
    table = series.table
    frequency = infer_frequency(table.dates) or run.meta.data.frequency
    calls = math.ceil(K / H)
    future_scaled = _future_values(run, series, future, frequency, K)
    f_cols = [c - k for c in cfg.future_columns]  # the future columns among the non-target ones

    device = _device(run)
    model = run.model.to(device)
    window = series.scaled[-L:]
    if len(window) < L:  # a short series of a global model: its first row repeated, as in training
        window = np.concatenate([np.repeat(window[:1], L - len(window), axis=0), window])
    first = torch.as_tensor(window, device=device)  # (L, n): the window the intervals are scaled by
    lags = _Lags(cfg.lags, series.scaled[:, :k], len(cfg.columns) - k - len(cfg.lag_columns)) if cfg.lags else None
    chunks, first_call = _model_calls(model, first, future_scaled, calls, H, k, f_cols, cfg.static_columns, lags)
    scaled = chunks[:K]  # (K, k)
    if theta:  # averaged with Theta's forecast from the recent history, as in training's evaluation
        ahead = _theta(run, series, max(K, H)).scaled(np.array([table.n_rows]))[0]  # (max(K, H), k)
        scaled = combined(scaled, ahead[:K])
        first_call = combined(first_call, ahead[:H], model.median)
    values = series.scaler.inverse(scaled, slice(0, k))  # (K, k) original units
    intervals = {}
    quantiles = {}
    if model.quantiles and K <= H:  # a quantile run's own quantiles (later calls would feed back the median)
        quantiles = {
            tau: series.scaler.inverse(first_call[:K, :, j], slice(0, k)) for j, tau in enumerate(model.quantiles)
        }
    if calibration is not None:  # the forecast (or band) ± radius × the window's scale, mapped back like the forecast
        calibration = calibration.for_series(series.id)
        with torch.no_grad():
            scale = model.scale(first[None]).float().cpu().double().numpy()[0]  # (1, k)
        for level in levels:
            lo, hi = calibration.interval(first_call[:K], model.quantiles, scale, level)  # (K, k)
            intervals[level] = (series.scaler.inverse(lo, slice(0, k)), series.scaler.inverse(hi, slice(0, k)))
    if table.dates is not None and frequency:
        index = continue_dates(table.dates[-1], frequency, K)
    else:
        index = np.arange(1, K + 1)
    return Forecast(
        run=run.path,
        data=table.path,
        targets=list(cfg.target),
        date_column=cfg.date_column if table.dates is not None and frequency else None,
        history_index=_history_index(table),
        history=table.values[:, :k],
        index=index,
        values=values,
        frequency=frequency,
        horizon=H,
        recursive=calls > 1,
        series=series.id,
        intervals=intervals,
        quantiles=quantiles,
    )


@dataclass(frozen=True)
class _Lags:
    """What the lag columns (data.lags) of the steps ahead are made from: the series' own scaled
    targets, then the forecasts of the calls before (a lag of at least H never reaches further)."""

    lags: list[int]
    history: np.ndarray  # (N, k) the series' scaled targets
    first: int  # the first lag column among the non-target columns

    def fill(self, future_scaled: np.ndarray, call: int, H: int, chunks: list[np.ndarray]) -> None:
        """Write call ``call``'s H rows of the lag columns into ``future_scaled`` (rows, n - k); a
        step with no row that far back takes the series' first, as in training (data.dataset.lagged)."""
        k = self.history.shape[1]
        known = np.concatenate([self.history, *chunks]) if chunks else self.history
        steps = len(self.history) + call * H + np.arange(H)
        for i, lag in enumerate(self.lags):
            cols = slice(self.first + i * k, self.first + (i + 1) * k)
            future_scaled[call * H : (call + 1) * H, cols] = known[np.maximum(steps - lag, 0)]


def _model_calls(
    model: LSTMForecaster,
    window: torch.Tensor,
    future_scaled: np.ndarray | None,
    calls: int,
    H: int,
    k: int,
    f_cols: list[int],
    static: list[int],
    lags: _Lags | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``calls`` model calls from the scaled ``window`` (L, n), each forecast fed back in as the
    next call's last rows, with the future values of the other columns (``static`` ones keep their
    value; ``lags``' made from the history and the forecasts): the point forecasts
    (calls * H, k) and the first call's quantiles (H, k, Q), scaled (Q = 1 for a point model)."""
    device = window.device
    inputs, first_call = window, np.zeros(0)
    chunks: list[np.ndarray] = []
    with torch.no_grad():
        for c in range(calls):
            if lags is not None:
                assert future_scaled is not None
                lags.fill(future_scaled, c, H, chunks)
            x = inputs
            if f_cols:  # H more rows holding the known-future columns' values alone, as data.Windows builds them
                assert future_scaled is not None
                ahead = torch.zeros(H, inputs.shape[1], device=device)
                rows = torch.as_tensor(future_scaled[c * H : (c + 1) * H], device=device)
                ahead[:, [k + j for j in f_cols]] = rows[:, f_cols]
                x = torch.cat([inputs, ahead])
            quantiles = model(x[None], quantiles=True)[0].float()  # (H, k, Q) scaled; Q = 1: a point model
            pred = quantiles[..., model.median]  # (H, k): the point forecast
            if c == 0:
                first_call = quantiles.cpu().double().numpy()
            chunks.append(pred.cpu().double().numpy())
            if c + 1 < calls:  # feed the forecast back in, with the other columns' future values
                fed = torch.zeros(H, inputs.shape[1], device=device)
                fed[:, :k] = pred
                if future_scaled is not None:
                    fed[:, k:] = torch.as_tensor(future_scaled[c * H : (c + 1) * H], device=device)
                fed[:, static] = inputs[-1, static]  # a series' static features stay what they are
                inputs = torch.cat([inputs, fed])[-window.shape[0] :]
    return np.concatenate(chunks), first_call


def _future_values(
    run: Run, series: Series, future: str | Path | None, frequency: str | None, K: int
) -> np.ndarray | None:
    """Scaled values of the non-target columns after the data, (rows, n - k), zero in a column not
    needed; None when none is. The known-future columns are needed for every step a model call
    covers, the past-only features (fed back in beyond H) for the steps after the first call; the
    calendar's are computed from the forecast dates, the others read from the --future CSV."""
    cfg = run.cfg.data
    H, k = cfg.horizon, len(cfg.target)
    calls = math.ceil(K / H)
    wanted = [*(cfg.features if calls > 1 else []), *cfg.future_features]
    generated = cfg.generated_columns  # computed from the forecast's dates: the calendar, holidays
    if not wanted and future is not None:
        why = (
            "its calendar features come from the dates"
            if generated
            else "its lag columns come from the series itself"
            if cfg.lags
            else "it has no known-future columns"
        )
        extra = f", and --steps {K} is within H = {H}" if cfg.features else ""
        raise DataError(f"--future: run {run.path} needs no future values from a file ({why}{extra})")
    if not wanted and not generated and not cfg.lags:
        return None
    # columns the model reads for the horizon need every call's rows; past-only features only the fed-back ones
    need = calls * H if cfg.future_columns else (calls - 1) * H
    full = np.ones((need, run.cfg.model.n))  # the other columns are placeholders (log(1) = 0 is safe)
    where = series.table.path
    if wanted:
        from_file = calls * H if cfg.future_features else (calls - 1) * H
        values, where = _read_future(run, series, future, frequency, from_file, K, wanted)
        for j, name in enumerate(wanted):
            full[:from_file, cfg.columns.index(name)] = values[:, j]
    if generated:
        table = series.table
        if table.dates is None or not frequency:
            raise DataError(
                f"{table.path}: the run computes inputs from the dates ({', '.join(generated)}), but "
                "the forecast's dates are unknown (no regular frequency)"
            )
        dates_ahead = continue_dates(table.dates[-1], frequency, need)
        first = len(cfg.columns) - len(generated) - len(cfg.lag_columns)  # the date columns, then the lags
        for j in range(len(generated)):
            full[:, first + j] = generated_column(cfg, dates_ahead, j, [(None, 0, need)], frequency)
    scaled = series.scaler.to_float32(where, list(cfg.columns), full)[:, k:]  # refused beyond what training accepts
    used = {*wanted, *generated, *cfg.lag_columns}  # the lag columns: filled call by call (_Lags)
    scaled[:, [j - k for j, c in enumerate(cfg.columns) if j >= k and c not in used]] = 0.0
    return scaled


def _read_future(
    run: Run, series: Series, future: str | Path | None, frequency: str | None, need: int, steps: int, wanted: list[str]
) -> tuple[np.ndarray, str]:
    """The ``wanted`` non-target columns' values (need, len(wanted)) for the ``need`` rows after
    the data, in original units, from the --future CSV (the series' own rows of it for a
    multi-series run), and where they were read (for messages)."""
    cfg = run.cfg.data
    table = series.table
    H = cfg.horizon
    feats = ", ".join(wanted)
    after = f"after the last row of {table.path}"
    if future is None:
        why = (
            f"run {run.path} takes known-future column(s) {', '.join(cfg.future_features)}, whose values the model "
            f"reads for the H = {H} steps it forecasts"
            if cfg.future_features
            else f"--steps {steps} is more than the run's horizon H = {H}, so forecasts are fed back in as inputs; "
            f"the run also takes feature column(s) {feats}, which it does not forecast"
        )
        short = "" if cfg.future_features else f", or use --steps {H}"
        raise DataError(f"{why}. Pass --future CSV with their values for the {need} step(s) {after}{short}")
    path = str(future)
    header = read_header(path)
    keys = [cfg.series_column] if cfg.series_column else []
    missing = [c for c in [*keys, *wanted] if c not in header]
    if missing:
        raise DataError(
            f"{path}: lacks column(s) {', '.join(repr(c) for c in missing)}; the file has: {', '.join(header)}"
        )
    date_column = cfg.date_column if cfg.date_column in header and table.dates is not None else None
    fut = read_table(path, wanted, date_column, cfg.missing, cfg.series_column, cfg.date_format)
    values, dates, where = fut.values, fut.dates, path
    if cfg.series_column:
        parts = [p for p in fut.series_parts() if p[0] == series.id]
        if not parts:
            raise DataError(f"{path}: has no rows of series '{series.id}' (column '{cfg.series_column}')")
        _, lo, hi = parts[0]
        values, dates, where = values[lo:hi], None if dates is None else dates[lo:hi], f"{path}: series '{series.id}'"
    expected = None
    if dates is not None and frequency and table.dates is not None:
        expected = continue_dates(table.dates[-1], frequency, need)
        if dates[0] != expected[0]:
            raise DataError(
                f"{where}: starts at {format_dates(dates[:1], like=dates)[0]}, but the future values must start at "
                f"{format_dates(expected[:1], like=expected)[0]}, the step {after}"
            )
    if len(values) < need:
        first_missing = (
            f" (the first missing: {format_dates(expected[len(values) : len(values) + 1], like=expected)[0]})"
            if expected is not None
            else ""
        )
        raise DataError(
            f"{where}: has {len(values)} row(s) of {feats}, but the forecast needs their values for the {need} "
            f"step(s) {after}{first_missing}"
        )
    return values[:need], where


# ---------------------------------------------------------------------------------------------
# Backtesting


def backtest(
    run_dir: str | Path,
    data: str | Path,
    split: str = "test",
    series: str | None = None,
    levels: list[int] | None = None,
) -> Results:
    """Forecast from every origin of ``data`` (or of one split) and score it as ``train`` does.

    ``split`` test/val/train picks that split's origins: the run's stored split rows when
    ``data`` is the training CSV (same rows and dates), else the config's fractions applied to
    ``data``. On the training CSV, ``split="test"`` reproduces metrics.json's test metrics; for a
    multi-series run, pooled over the series as training pools them. ``levels``: also score the
    run's calibrated prediction intervals at these percentages, as metrics.json's ``intervals``.
    """
    if split not in BACKTEST_SPLITS:
        raise DataError(f"--split must be one of {', '.join(BACKTEST_SPLITS)}, got {split!r}")
    run = load_run(run_dir)
    metrics = run.metrics()  # read once, not once per series
    calibrations = _calibrations(run, metrics) if levels else None
    refit = metrics is not None and metrics.refit_epochs > 0
    cfg = run.cfg.data
    L, H, s = cfg.lookback, cfg.horizon, cfg.seasons[-1]
    # inputs need L rows before the origin (a global model pads a short series: one), seasonal naive
    # its longest season
    first = max(1 if cfg.series_column else L, s)
    parts = read_series(
        run,
        data,
        first + H,
        f"one backtest window of run {run.path} needs {first + H} rows (max(L = {L}, s = {s}) + H = {H})",
        series,
    )
    combine = metrics is not None and metrics.averaged_with_theta
    items = [_backtest_one(run, p, split, calibrations, levels or [], refit, combine) for p in parts]
    pooled = None
    pooled_intervals = None
    if cfg.series_column:  # pooled over the series exactly as training's evaluation pools them
        pooled = Scores.pooled([b.scores for b in items]).summary(list(cfg.target))
        if calibrations is not None:
            sums = IntervalSums(levels or [])
            for b in items:
                assert b.interval_sums is not None
                sums.merge(b.interval_sums)
            pooled_intervals = sums.table()
    return Results(items=items, series_column=cfg.series_column, metrics=pooled, intervals=pooled_intervals)


def _calibrations(run: Run, metrics: Metrics | None) -> dict[str, Calibration]:
    """The run's interval calibration (model and seasonal naive) from its ``metrics``, or one line
    saying it has none."""
    if metrics is None or not metrics.calibration:
        raise DataError(
            f"--level: run {run.path} has no interval calibration (it was trained by lstmcli 0.1.0); "
            "train it again to get prediction intervals"
        )
    return metrics.calibration


def _backtest_one(
    run: Run,
    series: Series,
    split: str,
    calibrations: dict[str, Calibration] | None,
    levels: list[int],
    refit: bool,
    combine: bool = False,
) -> Backtest:
    cfg = run.cfg.data
    L, H, s, k = cfg.lookback, cfg.horizon, cfg.s, len(cfg.target)
    table = series.table
    origins, source, rows = _origins(run, series, split, refit)
    first = max(rows.min_history or L, cfg.seasons[-1])  # inputs (padded, for a short series), the longest season
    origins = origins[origins >= first]
    if origins.size == 0:
        raise DataError(f"{table.path}: the {split} split has no window with {first} rows before its origin")
    device = _device(run)
    model = run.model.to(device)
    starts = torch.zeros(table.n_rows, dtype=torch.long, device=device) if rows.padded else None
    windows = Windows(  # as train's evaluation
        torch.as_tensor(series.scaled, device=device), L, H, k, starts, run.cfg.data.future_columns
    )
    theta = _theta(run, series, H) if combine else None
    forecasts = np.concatenate([f for _, f in forecast_chunks(model, windows, series.scaler, origins, theta)])
    values = table.values[:, :k]
    scores = Scores(k, mase_scale(values[: rows.train_end], s), cfg.seasons[1:]).add(
        *forecast_set(values, origins, H, cfg.seasons, forecasts)
    )
    sums = None
    if calibrations is not None:
        sums = IntervalSums(levels).add(
            model,
            windows,
            series.scaler,
            origins,
            values,
            mase_scale(values[: rows.train_end], s),
            s,
            calibrations,
            series.id,
            theta,
        )
    return Backtest(
        run=run.path,
        data=table.path,
        targets=list(cfg.target),
        date_column=cfg.date_column if table.dates is not None else None,
        split=split,
        split_source=source,
        history_index=_history_index(table),
        history=values,
        origins=origins,
        forecasts=forecasts,
        metrics=scores.summary(list(cfg.target)),
        scores=scores,
        split_rows=(rows.train_end, rows.val_end),
        series=series.id,
        intervals=None if sums is None else sums.table(),
        interval_sums=sums,
    )


def _origins(run: Run, series: Series, split: str, refit: bool) -> tuple[np.ndarray, str, Split]:
    """The backtest's origins, how they were chosen (in words), and the file's split rows (whose
    training rows give the MASE its scale): the run's stored split on the training data, else the
    config's fractions applied to the file. ``refit``: the run's saved model trained on the
    validation rows too."""
    cfg = run.cfg.data
    table = series.table
    L, H, N = cfg.lookback, cfg.horizon, table.n_rows
    stored = series.stored
    training_data = stored is not None and _is_training_data(stored, table) and stored.split.n_rows == N
    if training_data:
        assert stored is not None
        rows = Split(N, stored.split.train_end, stored.split.val_end, L, H, stored.split.min_history)
    else:
        rows = split_rows(N, cfg)
    if split == "all":
        origins, source = np.arange(L, N - H + 1, dtype=np.int64), "every origin of the file"
    elif training_data:
        origins, source = (
            rows.origins(split),
            f"the run's stored {split} split, rows {_rows(rows, split)} of the training data",
        )
    else:
        origins = rows.origins(split)
        source = (
            f"not the training data, so the config's split fractions are applied to its {N} rows "
            f"({split} rows {_rows(rows, split)})"
        )
    if refit and training_data and split in ("val", "all"):
        source += (
            "; the saved model was refit on the validation rows too, so their windows are in-sample here "
            "(metrics.json's validation scores are the early-stopped model's)"
        )
    return origins, source, rows


def _rows(split: Split, name: str) -> str:
    lo, hi = {
        "train": (0, split.train_end),
        "val": (split.train_end, split.val_end),
        "test": (split.val_end, split.n_rows),
    }[name]
    return f"{lo + 1}-{hi}"


def _is_training_data(data: SeriesMeta, table: Table) -> bool:
    """Same row count and (with dates) the same first and last date as the series in training."""
    if data.rows != table.n_rows:
        return False
    if table.dates is None:
        return data.first_date is None
    if data.first_date is None or data.last_date is None:
        return False
    # Compared as instants: runs written before this version spell a time with a "T" in meta.json
    stored = np.array([data.first_date.replace(" ", "T"), data.last_date.replace(" ", "T")], dtype="datetime64[s]")
    return bool(np.all(stored == table.dates[[0, -1]].astype("datetime64[s]")))
