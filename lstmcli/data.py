"""Read a CSV time series, check every cell, split it by time, fit the scaler on training rows.

Everything here is numpy; the training device never sees a window that was copied out of the
series (``windows.py`` gathers them by index).
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstmcli.config import DataConfig
from lstmcli.errors import DataError
from lstmcli.ingest import read_fast

SPLITS = ("train", "val", "test")
_CHUNK_ROWS = 1 << 18


@dataclass(frozen=True)
class Table:
    """The columns a run uses, in model order, in original units."""

    path: str
    columns: list[str]
    values: np.ndarray  # (N, n) float64
    dates: np.ndarray | None  # (N,) datetime64, or None without a date column

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])


# ---------------------------------------------------------------------------------------------
# Reading


def read_table(
    path: str | Path,
    columns: list[str],
    date_column: str | None = None,
    missing: str = "error",
) -> Table:
    """Read ``columns`` (and ``date_column``) from a CSV with a header row, checking every cell.

    Errors name the file, the row (1-based data row, and the line in the file) and the column.
    """
    path = str(path)
    fast = read_fast(path, columns, date_column)  # large clean files: polars, or the cached parse
    if fast is not None:
        return Table(path=path, columns=list(columns), values=fast[0], dates=fast[1])
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise DataError(f"{path}: file is empty; expected a header row naming the columns")
    header = [h.strip() for h in header]
    _check_delimiter(path, header, columns)
    index = _column_index(path, header, [*([date_column] if date_column else []), *columns])

    raw_rows: list[list[str]] = []
    for row_no, row in enumerate(reader, start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line (a trailing newline, say)
        if len(row) != len(header):
            raise DataError(
                f"{path}: row {row_no} (line {row_no + 1}) has {len(row)} field(s), "
                f"the header has {len(header)}"
            )
        raw_rows.append(row)
    if not raw_rows:
        raise DataError(f"{path}: has a header but no data rows")

    values = np.empty((len(raw_rows), len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        col = index[name]
        for i, row in enumerate(raw_rows):
            values[i, j] = _parse_number(path, row[col], i + 1, name, missing)
    if missing != "error":
        values = _fill_missing(path, values, columns, missing)

    dates = None
    if date_column:
        dates = _parse_dates(path, [row[index[date_column]] for row in raw_rows], date_column)
    return Table(path=path, columns=list(columns), values=values, dates=dates)


def _read_text(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: data file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a CSV file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: is UTF-16 encoded (byte-order mark); save it as UTF-8 CSV")
    try:
        return data.decode("utf-8-sig")  # a UTF-8 byte-order mark (Excel's) is accepted
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8; save the file as UTF-8 CSV") from None


def _check_delimiter(path: str, header: list[str], wanted: list[str]) -> None:
    if len(header) == 1 and len(wanted) + 0 >= 1:
        for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if sep in header[0]:
                raise DataError(
                    f"{path}: the header looks {name}-separated ({header[0]!r}); "
                    "lstm reads comma-separated CSV with '.' decimals"
                )


def _column_index(path: str, header: list[str], names: list[str]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for i, h in enumerate(header):
        if h in seen:
            raise DataError(f"{path}: column '{h}' appears twice in the header")
        seen[h] = i
    for name in names:
        if name not in seen:
            close = difflib.get_close_matches(name, header, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise DataError(f"{path}: no column '{name}'{hint}; columns are: {', '.join(header)}")
    return {name: seen[name] for name in names}


_MISSING = {"", "na", "nan", "null", "none", "n/a"}


def _parse_number(path: str, cell: str, row: int, column: str, missing: str) -> float:
    text = cell.strip()
    if text.lower() in _MISSING:
        if missing == "error":
            what = "an empty cell" if not text else f"a missing value ({text!r})"
            raise DataError(
                f"{path}: row {row} (line {row + 1}), column '{column}': {what}; "
                "expected a number (set data.missing: interpolate or ffill to fill gaps)"
            )
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"{path}: row {row} (line {row + 1}), column '{column}': {cell!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise DataError(
            f"{path}: row {row} (line {row + 1}), column '{column}': {cell!r} is not a finite number"
        )
    return value


def _fill_missing(path: str, values: np.ndarray, columns: list[str], how: str) -> np.ndarray:
    out = values.copy()
    for j, name in enumerate(columns):
        col = out[:, j]
        bad = np.isnan(col)
        if not bad.any():
            continue
        good = np.flatnonzero(~bad)
        if good.size == 0:
            raise DataError(f"{path}: column '{name}' has no values at all")
        if how == "interpolate":
            col[bad] = np.interp(np.flatnonzero(bad), good, col[good])
        else:  # ffill; leading gaps take the first value
            idx = np.where(bad, 0, np.arange(col.size))
            np.maximum.accumulate(idx, out=idx)
            filled = col[idx]
            filled[: good[0]] = col[good[0]]
            out[:, j] = filled
    return out


def _parse_dates(path: str, cells: list[str], column: str) -> np.ndarray:
    try:
        dates = np.array([c.strip() for c in cells], dtype="datetime64[s]")
    except ValueError:
        for i, c in enumerate(cells, start=1):
            try:
                np.datetime64(c.strip(), "s")
            except ValueError:
                raise DataError(
                    f"{path}: row {i} (line {i + 1}), column '{column}': {c!r} is not an ISO date "
                    "(expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)"
                ) from None
        raise
    if np.isnat(dates).any():
        i = int(np.flatnonzero(np.isnat(dates))[0]) + 1
        raise DataError(f"{path}: row {i} (line {i + 1}), column '{column}': empty date")
    steps = np.diff(dates)
    bad = np.flatnonzero(steps <= np.timedelta64(0, "s"))
    if bad.size:
        i = int(bad[0]) + 2  # 1-based row of the later date
        kind = "repeats" if steps[bad[0]] == np.timedelta64(0, "s") else "goes back before"
        raise DataError(
            f"{path}: row {i} (line {i + 1}), column '{column}': date {cells[i - 1].strip()} {kind} "
            f"the previous row's {cells[i - 2].strip()}; rows must be in increasing date order"
        )
    return dates


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

    def origins(self, name: str) -> np.ndarray:
        """Every origin of split ``name`` (stride 1), as int64."""
        L, H = self.lookback, self.horizon
        lo, hi = {
            "train": (L, self.train_end - H),
            "val": (max(L, self.train_end), self.val_end - H),
            "test": (max(L, self.val_end), self.n_rows - H),
        }[name]
        return np.arange(lo, hi + 1, dtype=np.int64) if hi >= lo else np.zeros(0, dtype=np.int64)

    def counts(self) -> dict[str, int]:
        return {name: int(self.origins(name).size) for name in SPLITS}


def make_split(n_rows: int, cfg: DataConfig, source: str = "data") -> Split:
    """Cut N rows by the config's fractions; refuse a series too short for every split."""
    train_end = math.floor(cfg.split.train * n_rows)
    val_end = math.floor((cfg.split.train + cfg.split.val) * n_rows)
    split = Split(n_rows, train_end, val_end, cfg.lookback, cfg.horizon)
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

    def transform(self, values: np.ndarray) -> np.ndarray:
        v = np.where(self.log, np.log(np.where(self.log, values, 1.0)), values)
        return (v - self.mean) / self.std

    def inverse(self, z: np.ndarray, columns: slice | list[int] = slice(None)) -> np.ndarray:
        """Back to original units for the selected columns (last axis of ``z``)."""
        v = z * self.std[columns] + self.mean[columns]
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


def fit_scaler(table: Table, train_end: int, n_targets: int, transform: str = "none") -> Scaler:
    """Mean and std per column from rows [0, train_end) alone; optional log for the targets."""
    n = table.values.shape[1]
    log = np.zeros(n, dtype=bool)
    if transform == "log":
        log[:n_targets] = True
        bad = np.argwhere(table.values[:, :n_targets] <= 0)
        if bad.size:
            i, j = bad[0]
            raise DataError(
                f"{table.path}: row {i + 1}, column '{table.columns[j]}': {table.values[i, j]:g} is not "
                "positive, but data.transform is log; use transform: none"
            )
    train = table.values[:train_end]
    if log.any():  # without a log column this would copy the training rows twice for nothing
        train = np.where(log, np.log(np.where(log, train, 1.0)), train)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant training column is only centred
    return Scaler(mean=mean, std=std, log=log)


# ---------------------------------------------------------------------------------------------
# The prepared series


@dataclass(frozen=True)
class Dataset:
    """A validated table, its split, the train-fitted scaler and the scaled series."""

    table: Table
    split: Split
    scaler: Scaler
    scaled: np.ndarray  # (N, n) float32, targets in the first k columns
    n_targets: int


def load_dataset(cfg: DataConfig, path: str | Path | None = None) -> Dataset:
    """Read ``cfg.path`` (or ``path``), split it, fit the scaler on training rows, scale."""
    table = read_table(path or cfg.path, cfg.columns, cfg.date_column, cfg.missing)
    return prepare(table, cfg)


def prepare(table: Table, cfg: DataConfig) -> Dataset:
    """Split ``table`` and scale it with statistics from its training rows alone."""
    split = make_split(table.n_rows, cfg, table.path)
    k = len(cfg.target)
    first_eval = min(int(split.origins("val")[0]), int(split.origins("test")[0]))
    if cfg.season > first_eval:
        raise DataError(
            f"{table.path}: data.season {cfg.season} reaches before the first row from the first "
            f"validation window (row {first_eval}); use a smaller season or a longer series"
        )
    scaler = fit_scaler(table, split.train_end, k, cfg.transform)
    # In row chunks: the transform's float64 temporaries stay small on a 10M-row series.
    scaled = np.empty(table.values.shape, dtype=np.float32)
    for lo in range(0, table.n_rows, _CHUNK_ROWS):
        scaled[lo : lo + _CHUNK_ROWS] = scaler.transform(table.values[lo : lo + _CHUNK_ROWS])
    return Dataset(table=table, split=split, scaler=scaler, scaled=scaled, n_targets=k)


# ---------------------------------------------------------------------------------------------
# Dates: frequency and continuation

_MONTHS = {"MS": 1, "QS": 3, "YS": 12}


def infer_frequency(dates: np.ndarray | None) -> str | None:
    """'D', 'W', 'MS' (monthly), 'QS', 'YS', or '<k>s' for another fixed step; None without dates."""
    if dates is None or len(dates) < 2:
        return None
    steps = np.diff(dates.astype("datetime64[s]")).astype(np.int64)
    step = int(np.median(steps))
    day = 86400
    midnight = bool(np.all(dates.astype("datetime64[s]").astype(np.int64) % day == 0))
    if midnight:
        if step == day:
            return "D"
        if step == 7 * day:
            return "W"
        for name, months, lo, hi in (("MS", 1, 28, 31), ("QS", 3, 89, 92), ("YS", 12, 365, 366)):
            if lo * day <= step <= hi * day:
                return name
    return f"{step}s"


def continue_dates(last: np.datetime64, frequency: str, steps: int) -> np.ndarray:
    """The ``steps`` dates after ``last`` at ``frequency`` (as from ``infer_frequency``)."""
    last = np.datetime64(last, "s")
    if frequency in _MONTHS:
        month = last.astype("datetime64[M]")
        offset = last - month.astype("datetime64[s]")  # day/time within the month
        months = month + np.arange(1, steps + 1) * _MONTHS[frequency]
        return months.astype("datetime64[s]") + offset
    seconds = {"D": 86400, "W": 7 * 86400}.get(frequency)
    if seconds is None:
        seconds = int(frequency.rstrip("s"))
    return last + np.arange(1, steps + 1) * np.timedelta64(seconds, "s")


def format_dates(dates: np.ndarray) -> list[str]:
    """ISO strings, dropping a midnight time so daily-or-coarser dates read YYYY-MM-DD."""
    secs = dates.astype("datetime64[s]")
    if np.all(secs.astype(np.int64) % 86400 == 0):
        return [str(d) for d in secs.astype("datetime64[D]")]
    return [str(d) for d in secs]


def describe_dates(dates: np.ndarray | None) -> dict[str, Any]:
    """First and last date and inferred frequency, for a run's metadata."""
    if dates is None:
        return {"first_date": None, "last_date": None, "frequency": None}
    first, last = format_dates(dates[[0, -1]])
    return {"first_date": first, "last_date": last, "frequency": infer_frequency(dates)}
