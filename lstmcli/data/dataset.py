"""A series ready to train on: split by time, scaled with statistics of its training rows only.

Everything here is numpy; the training device never sees a window that was copied out of the
series (``data.windows`` gathers them by index).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from lstmcli.config import DataConfig
from lstmcli.data.calendar_features import generated_column
from lstmcli.data.categories import Categories, one_hot, read_categories
from lstmcli.data.fast import open_fast
from lstmcli.data.reader import Table, check_magnitude, read_table
from lstmcli.errors import DataError
from lstmcli.fsutil import check_regular

SPLITS = ("train", "val", "test")
_CHUNK_ROWS = 1 << 18


# ---------------------------------------------------------------------------------------------
# Splits and windows (index arithmetic only)


@dataclass(frozen=True)
class Split:
    """Row boundaries and window origins of the chronological split.

    Rows: train [0, train_end), val [train_end, val_end), test [val_end, N). An origin o has
    inputs [o - L, o) and targets [o, o + H); it belongs to the split that holds all H targets.
    """

    n_rows: int
    train_end: int
    val_end: int
    lookback: int
    horizon: int
    # Real rows a window needs before its origin: L, or fewer for a series of a global model too
    # short for a full lookback, whose windows are then padded with its first row (data.windows).
    min_history: int | None = None

    @property
    def padded(self) -> bool:
        return self.min_history is not None and self.min_history < self.lookback

    def origins(self, name: str) -> np.ndarray:
        """Every origin of split ``name`` (stride 1), as int64."""
        H = self.horizon
        first = self.lookback if self.min_history is None else self.min_history
        lo, hi = {
            "train": (first, self.train_end - H),
            "val": (max(first, self.train_end), self.val_end - H),
            "test": (max(first, self.val_end), self.n_rows - H),
        }[name]
        return np.arange(lo, hi + 1, dtype=np.int64) if hi >= lo else np.zeros(0, dtype=np.int64)

    def counts(self) -> dict[str, int]:
        return {name: int(self.origins(name).size) for name in SPLITS}


def split_rows(n_rows: int, cfg: DataConfig) -> Split:
    """A count split: test the last ``test`` rows, val the ``val`` rows before them, train the rest.
    A fraction split: rows ⌊train·N⌋ and ⌊(train + val)·N⌋, computed exactly (in floats 0.7 · 90 is
    62.999...)."""
    sp = cfg.split
    if sp.test is not None:
        val_end = max(0, n_rows - sp.test)
        return Split(n_rows, max(0, val_end - int(sp.val)), val_end, cfg.lookback, cfg.horizon)
    train, val = Fraction(str(0.70 if sp.train is None else sp.train)), Fraction(str(sp.val))
    return Split(n_rows, math.floor(train * n_rows), math.floor((train + val) * n_rows), cfg.lookback, cfg.horizon)


def make_split(n_rows: int, cfg: DataConfig, source: str = "data", pad: bool = False) -> Split:
    """Cut N rows by the config's split; refuse a series too short for every split. With ``pad`` (a
    series of a global model), a series too short for a full lookback keeps every window with at
    least one real input row, padded with its first row, and needs only a test window."""
    split = split_rows(n_rows, cfg)
    if pad and split.origins("train").size == 0:
        split = replace(split, min_history=1)
        if split.train_end >= 1 and split.origins("test").size:  # a training row to scale by, and a test window
            return split
    train_end, val_end = split.train_end, split.val_end
    L, H = cfg.lookback, cfg.horizon
    for name, count in split.counts().items():
        if count == 0:
            rows = {"train": train_end, "val": val_end - train_end, "test": n_rows - val_end}[name]
            need = L + H if name == "train" else H
            raise DataError(
                f"{source}: series too short: {n_rows} rows give the {name} split {rows} row(s), "
                f"but one {name} window needs {need} (lookback {L} + horizon {H}"
                + (")" if name == "train" else " targets inside the split)")
                + "; use a longer series or a shorter lookback/horizon"
            )
    return split


# ---------------------------------------------------------------------------------------------
# Scaling (fitted on training rows only)


@dataclass(frozen=True)
class Scaler:
    """Per-column transform then standardisation: z = (t(x) - mean) / std."""

    mean: np.ndarray  # (n,)
    std: np.ndarray  # (n,)
    log: np.ndarray  # (n,) bool: column modelled as log(x)

    def transform(self, values: np.ndarray, columns: slice | list[int] = slice(None)) -> np.ndarray:
        """Into the model's units, for the selected columns (last axis of ``values``)."""
        log = self.log[columns]
        v = np.where(log, np.log(np.where(log, values, 1.0)), values)
        return (v - self.mean[columns]) / self.std[columns]

    def to_float32(self, source: str, columns: list[str], values: np.ndarray) -> np.ndarray:
        """``transform`` into the float32 the network reads, refusing values it cannot hold (as
        training refuses them), so that no inf ever reaches the model."""
        check_magnitude(source, columns, values)
        with np.errstate(over="ignore"):  # an overflow is found and named just below
            scaled = self.transform(values).astype(np.float32)
        for j, name in enumerate(columns):
            check_scaled(source, name, values[:, j], scaled[:, j], 0, float(self.std[j]))
        return scaled

    def inverse(self, z: np.ndarray, columns: slice | list[int] = slice(None)) -> np.ndarray:
        """Back to original units for the selected columns (last axis of ``z``)."""
        v = z * self.std[columns] + self.mean[columns]
        with np.errstate(over="ignore"):  # a log model's runaway forecast is inf, not a warning
            return np.where(self.log[columns], np.exp(np.where(self.log[columns], v, 0.0)), v)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "log": self.log.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        return cls(
            mean=np.asarray(d["mean"], dtype=np.float64),
            std=np.asarray(d["std"], dtype=np.float64),
            log=np.asarray(d["log"], dtype=bool),
        )


def _log_columns(n: int, n_targets: int, transform: str, lagged: int = 0) -> np.ndarray:
    """The columns modelled as log(x): with transform log, the targets and the ``lagged`` lag columns
    (the last ones), which are the targets shifted."""
    log = np.zeros(n, dtype=bool)
    log[:n_targets] = transform == "log"
    log[n - lagged :] = transform == "log" and lagged > 0
    return log


def check_log_positive(path: str, columns: list[str], values: np.ndarray, log: np.ndarray, why: str) -> None:
    """Every value of a column modelled as log(x) (``log``, per column) must be positive; ``why``
    ends the message, in the words of the caller (a config's transform, a run's scaler)."""
    bad = np.argwhere((values <= 0) & log)
    if bad.size:
        i, j = bad[0]
        raise DataError(f"{path}: row {i + 1}, column '{columns[j]}': {values[i, j]:g} is not positive, {why}")


def check_scaled(source: str, name: str, raw: np.ndarray, scaled: np.ndarray, first_row: int, std: float) -> None:
    """A standardised value beyond float32's range (a value millions of training-row standard
    deviations away) would enter the network as inf; refuse it with its row."""
    if not np.isfinite(scaled).all():
        i = int(np.flatnonzero(~np.isfinite(scaled))[0])
        raise DataError(
            f"{source}: row {first_row + i + 1}, column '{name}': {raw[i]:g} lies too far outside the training "
            f"rows' range (standard deviation {std:g}) to be standardised in float32; check the value or rescale the column"
        )


def _column_stats(train: np.ndarray, log: bool) -> tuple[float, float]:
    """Mean and std (1 for a constant column, which is only centred) of one column's training rows."""
    x = np.log(train) if log else train
    mean, std = float(x.mean()), float(x.std())
    if not std > 0 and np.ptp(x) > 0:  # deviations so small (values near 1e-300) that their squares underflow
        scale = float(np.abs(x).max())
        std = float((x / scale).std()) * scale
    return mean, std if std > 0 else 1.0


# ---------------------------------------------------------------------------------------------
# The prepared series


@dataclass(frozen=True)
class Series:
    """One series of the table: rows [start, stop) of the stacked arrays, its split and scaler."""

    id: str | None
    start: int
    stop: int
    split: Split  # row numbers relative to ``start``
    scaler: Scaler  # fitted on this series' training rows alone

    def origins(self, name: str) -> np.ndarray:
        """Window origins of split ``name`` as rows of the stacked arrays."""
        return self.start + self.split.origins(name)


@dataclass(frozen=True)
class Dataset:
    """A validated table, split by time within each series, scaled per series, stacked.

    One series is the common case; a long-format file holds several, stacked one after another
    in ``scaled``. Windows never cross a series boundary because every origin o of a series has
    o - L >= start and o + H <= stop.
    """

    table: Table
    series: list[Series]
    scaled: np.ndarray  # (N, n) float32, targets in the first k columns
    n_targets: int

    def origins(self, name: str) -> np.ndarray:
        """Every origin of split ``name`` across all series."""
        return np.concatenate([s.origins(name) for s in self.series])

    def counts(self) -> dict[str, int]:
        return {name: int(sum(s.split.counts()[name] for s in self.series)) for name in SPLITS}

    def row_starts(self) -> np.ndarray | None:
        """(N,) the first row of each row's series, where a series pads its windows; None when none does."""
        if not any(s.split.padded for s in self.series):
            return None
        starts = np.empty(self.table.n_rows, dtype=np.int64)
        for s in self.series:
            starts[s.start : s.stop] = s.start
        return starts

    @property
    def padded_series(self) -> int:
        """Series too short for a full lookback, trained and forecast with padded windows."""
        return sum(s.split.padded for s in self.series)

    @property
    def series_without_training_windows(self) -> int:
        """Series too short to give even a padded training window: only forecast (and scored)."""
        return sum(s.split.origins("train").size == 0 for s in self.series)

    @property
    def split(self) -> Split:
        """The split of a single-series dataset."""
        return self._only().split

    @property
    def scaler(self) -> Scaler:
        """The scaler of a single-series dataset."""
        return self._only().scaler

    def _only(self) -> Series:
        if len(self.series) != 1:
            raise ValueError(f"the dataset holds {len(self.series)} series; pick one from .series")
        return self.series[0]


def load_dataset(cfg: DataConfig, path: str | Path | None = None, content_sha256: str | None = None) -> Dataset:
    """Read ``cfg.path`` (or ``path``), split it, fit the scaler on training rows, scale.

    ``content_sha256``, the file's sha256 when the caller has computed it, keys the parse cache."""
    path = str(path or cfg.path)
    check_regular(path, "CSV file", DataError)
    # A large clean file is scaled column by column straight from the parse (or its cache): the
    # float64 table of every column is never built, only the float32 one.
    fast = (
        None
        if cfg.date_format
        else open_fast(path, cfg.file_columns, cfg.date_column, cfg.series_column, content_sha256)
    )
    if fast is not None:
        return _prepare(path, cfg, fast.n_rows, fast.dates, fast.parts, fast.column)
    table = read_table(path, cfg.file_columns, cfg.date_column, cfg.missing, cfg.series_column, cfg.date_format)
    return prepare(table, cfg)


def prepare(table: Table, cfg: DataConfig) -> Dataset:
    """Split each series by time and scale it with statistics from its own training rows."""
    return _prepare(table.path, cfg, table.n_rows, table.dates, table.parts, table.column, table.filled)


def _layout(
    path: str, cfg: DataConfig, parts: list[tuple[str | None, int, int]]
) -> list[tuple[str | None, int, int, str, Split]]:
    """(id, start, stop, source, split) of every series; a file with series too short for the split
    is refused in one line naming how many and the first of them."""
    layout, short = [], []
    for sid, start, stop in parts:
        source = path if sid is None else f"{path}: series '{sid}'"
        try:
            split = make_split(stop - start, cfg, source, pad=len(parts) > 1)
        except DataError as exc:
            if len(parts) == 1:
                raise
            short.append((sid, stop - start, exc))
            continue
        evaluated = split.origins("val") if split.origins("val").size else split.origins("test")
        first_eval = int(evaluated[0])
        if cfg.seasons[-1] > first_eval:
            no_season = DataError(
                f"{source}: data.season {cfg.seasons[-1]} reaches before the first row from the first "
                f"validation window (row {first_eval}); use a smaller season or a longer series"
            )
            if len(parts) == 1:
                raise no_season
            short.append((sid, stop - start, no_season))
            continue
        layout.append((sid, start, stop, source, split))
    if short:
        shown = ", ".join(f"'{sid}' ({rows} rows)" for sid, rows, _ in short[:5]) + (", ..." if len(short) > 5 else "")
        first = str(short[0][2]).split(": series too short: ", 1)[-1].split(f"series '{short[0][0]}': ", 1)[-1]
        raise DataError(
            f"{path}: {len(short)} of {len(parts)} series are too short to be forecast (no test window even with a "
            f"padded lookback): {shown}; the first: {first}"
        )
    return layout


def _static_values(name: str, values: np.ndarray, layout: list[tuple[str | None, int, int, str, Split]]) -> np.ndarray:
    """Each series' value of static column ``name`` (refused where it changes within a series)."""
    out = np.empty(len(layout))
    for s, (_, start, stop, source, _) in enumerate(layout):
        v = values[start:stop]
        changed = np.flatnonzero(v != v[0])
        if changed.size:
            raise DataError(
                f"{source}: static feature '{name}' changes within the series (row {int(changed[0]) + 1} of it: "
                f"{v[changed[0]]:g}, the first row: {v[0]:g}); a static feature holds one value per series"
            )
        out[s] = v[0]
    return out


def model_columns(
    column: Callable[[int], np.ndarray],
    cfg: DataConfig,
    dates: np.ndarray | None,
    parts: list[tuple[str | None, int, int]],
    categories: Categories,
    n_rows: int,
) -> Callable[[int], np.ndarray]:
    """Model input ``j`` (``cfg.columns`` order) from ``column``, which reads the file's numeric
    columns (``cfg.file_columns`` order): the one-hot columns of the static categories, the
    columns computed from ``dates`` (calendar, holidays) and the lagged targets are made here."""
    if not cfg.generated_columns and not cfg.static_categories and not cfg.lags:
        return column

    def read(j: int) -> np.ndarray:  # one column at a time: bounded memory on a long file
        kind, i = cfg.source_of(j)
        if kind == "file":
            return column(i)
        if kind == "category":
            return one_hot(cfg, categories, i, parts, n_rows)
        if kind == "lag":
            k = len(cfg.target)
            return lagged(column(i % k), cfg.lags[i // k], parts)
        assert dates is not None  # the config requires date_column with calendar features or holidays
        return generated_column(cfg, dates, i, parts)

    return read


def lagged(values: np.ndarray, lag: int, parts: list[tuple[str | None, int, int]]) -> np.ndarray:
    """``values[t - lag]`` within each series (``parts``); the first ``lag`` rows of a series, which
    have no row that far back, take the series' first row (known before any window's origin)."""
    out = np.empty_like(values)
    for _, start, stop in parts:
        out[start:stop] = values[np.maximum(np.arange(start, stop) - lag, start)]
    return out


def _prepare(
    path: str,
    cfg: DataConfig,
    n_rows: int,
    dates: np.ndarray | None,
    parts: tuple[tuple[str, int, int], ...] | None,
    column: Callable[[int], np.ndarray],
    filled: int = 0,
) -> Dataset:
    """The columns (in ``cfg.columns`` order) scaled one at a time into one float32 array; the
    targets are kept in float64, original units, for the metrics and baselines. ``column(j)`` reads
    the file's columns; the categories' one-hot columns and the date columns are made by
    :func:`model_columns`."""
    k, n = len(cfg.target), len(cfg.columns)
    whole = Table(
        path=path, columns=cfg.columns[:k], values=np.empty((n_rows, k)), dates=dates, parts=parts, filled=filled
    )
    column = model_columns(column, cfg, dates, whole.series_parts(), read_categories(path, cfg), n_rows)
    layout = _layout(path, cfg, whole.series_parts())
    for j in range(k):
        whole.values[:, j] = column(j)
    log = _log_columns(n, k, cfg.transform, len(cfg.lag_columns))
    if log.any():
        for _, start, stop, source, _ in layout:
            check_log_positive(
                source,
                whole.columns,
                whole.values[start:stop],
                log[:k],
                "but data.transform is log; use transform: none",
            )
    scaled = np.empty((n_rows, n), dtype=np.float32)
    stats = np.empty((len(layout), n, 2))
    static = set(cfg.static_columns)
    lag_of = dict(zip(range(n - len(cfg.lag_targets), n), cfg.lag_targets, strict=True))  # column: its target
    for j in range(n):
        values = whole.values[:, j] if j < k else column(j)
        if j in static:  # one value per series, scaled across the series: what tells them apart
            shared = _column_stats(_static_values(cfg.columns[j], values, layout), False)
        for s, (_, start, stop, source, split) in enumerate(layout):
            check_magnitude(source, [cfg.columns[j]], values[start:stop, None])
            train = values[start : start + split.train_end]
            if j in lag_of:  # scaled exactly as its target: the scaled lag is the scaled target, shifted
                mean, std = stats[s, j] = stats[s, lag_of[j]]
            else:
                mean, std = stats[s, j] = shared if j in static else _column_stats(train, bool(log[j]))
            # In row chunks: the transform's float64 temporaries stay small on a 10M-row series.
            for lo in range(start, stop, _CHUNK_ROWS):
                chunk = values[lo : min(lo + _CHUNK_ROWS, stop)]
                out = scaled[lo : lo + len(chunk), j]
                with np.errstate(over="ignore"):  # an overflow is found and named just below
                    np.divide((np.log(chunk) if log[j] else chunk) - mean, std, out=out, casting="unsafe")
                check_scaled(source, cfg.columns[j], chunk, out, lo - start, std)
        del values
    series = [
        Series(
            id=sid,
            start=start,
            stop=stop,
            split=split,
            scaler=Scaler(mean=stats[s, :, 0].copy(), std=stats[s, :, 1].copy(), log=log),
        )
        for s, (sid, start, stop, _, split) in enumerate(layout)
    ]
    return Dataset(table=whole, series=series, scaled=scaled, n_targets=k)
