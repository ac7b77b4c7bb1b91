"""Read a CSV time series, check every cell, split it by time, fit the scaler on training rows.

Everything here is numpy; the training device never sees a window that was copied out of the
series (``windows.py`` gathers them by index).
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from lstmcli.config import DataConfig
from lstmcli.errors import DataError
from lstmcli.ingest import open_fast, read_fast

SPLITS = ("train", "val", "test")
_CHUNK_ROWS = 1 << 18


@dataclass(frozen=True)
class Table:
    """The columns a run uses, in model order, in original units."""

    path: str
    columns: list[str]
    values: np.ndarray  # (N, n) float64
    dates: np.ndarray | None  # (N,) datetime64, or None without a date column
    # Long format: (series id, first row, end row) of each series, rows grouped by series in the
    # order the ids first appear. None: the whole table is one series.
    parts: tuple[tuple[str, int, int], ...] | None = None

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])

    def column(self, j: int) -> np.ndarray:
        return self.values[:, j]

    def series_parts(self) -> list[tuple[str | None, int, int]]:
        """(id, start, stop) of every series; one part with id None for a single series."""
        return list(self.parts) if self.parts is not None else [(None, 0, self.n_rows)]


# ---------------------------------------------------------------------------------------------
# Reading


def read_table(
    path: str | Path,
    columns: list[str],
    date_column: str | None = None,
    missing: str = "error",
    series_column: str | None = None,
) -> Table:
    """Read ``columns`` (and ``date_column``) from a CSV with a header row, checking every cell.

    With ``series_column`` the file is in long format (series id, date, values): rows are grouped
    by series, keeping each series' rows in file order, and dates must increase within a series.
    Errors name the file, the row (1-based data row, and the line in the file) and the column.
    """
    path = str(path)
    # Large clean files: polars, or the cached parse (long format grouped as _group_series does).
    fast = read_fast(path, columns, date_column, series_column)
    if fast is not None:
        return Table(path=path, columns=list(columns), values=fast[0], dates=fast[1], parts=fast[2])
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise DataError(f"{path}: file is empty; expected a header row naming the columns")
    header = [h.strip() for h in header]
    _check_delimiter(path, header, columns)
    keys = [c for c in (series_column, date_column) if c]
    index = _column_index(path, header, [*keys, *columns])

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
    dates = None
    if date_column:
        dates = _parse_dates(path, [row[index[date_column]] for row in raw_rows], date_column)
    if series_column is None:
        if dates is not None:
            _check_increasing(path, dates, np.arange(1, len(dates) + 1), date_column)  # type: ignore[arg-type]
        if missing != "error":
            values = _fill_missing(path, values, columns, missing)
        return Table(path=path, columns=list(columns), values=values, dates=dates)
    return _group_series(path, [row[index[series_column]].strip() for row in raw_rows], series_column,
                         values, dates, columns, date_column, missing)


def _group_series(
    path: str,
    ids: list[str],
    series_column: str,
    values: np.ndarray,
    dates: np.ndarray | None,
    columns: list[str],
    date_column: str | None,
    missing: str,
) -> Table:
    """Stack a long-format table series by series (stable: rows keep their file order)."""
    for i, sid in enumerate(ids, start=1):
        if not sid:
            raise DataError(f"{path}: row {i} (line {i + 1}), column '{series_column}': empty series id")
    first: dict[str, int] = {}
    code = np.array([first.setdefault(sid, len(first)) for sid in ids])
    order = np.argsort(code, kind="stable")
    rows = order + 1  # 1-based file rows, for messages
    values, code = values[order], code[order]
    dates = dates[order] if dates is not None else None
    bounds = np.flatnonzero(np.diff(code)) + 1
    starts = [0, *bounds.tolist()]
    stops = [*bounds.tolist(), len(code)]
    parts = tuple((sid, start, stop) for sid, start, stop in zip(first, starts, stops, strict=True))
    for sid, start, stop in parts:
        if dates is not None:
            _check_increasing(path, dates[start:stop], rows[start:stop], date_column or "", f" in series '{sid}'")
        if missing != "error":
            values[start:stop] = _fill_missing(f"{path} series '{sid}'", values[start:stop], columns, missing)
    return Table(path=path, columns=list(columns), values=values, dates=dates, parts=parts)


def read_text(path: str, first_line: bool = False) -> str:
    """The file as text (or only its first line), refusing UTF-16 and invalid UTF-8 with the line."""
    try:
        with open(path, "rb") as fh:
            data = fh.readline() if first_line else fh.read()
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


def read_header(path: str) -> list[str]:
    """The CSV's column names (stripped), read from its first line only."""
    header = next(csv.reader(io.StringIO(read_text(path, first_line=True), newline="")), None)
    if not header or not any(h.strip() for h in header):
        raise DataError(f"{path}: file is empty; expected a header row naming the columns")
    return [h.strip() for h in header]


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
    return dates


def _check_increasing(path: str, dates: np.ndarray, rows: np.ndarray, column: str, where: str = "") -> None:
    """Dates must increase strictly; ``rows`` are the 1-based file rows of ``dates``."""
    steps = np.diff(dates)
    bad = np.flatnonzero(steps <= np.timedelta64(0, "s"))
    if bad.size:
        j = int(bad[0]) + 1  # the later of the two dates
        i = int(rows[j])
        kind = "repeats" if steps[bad[0]] == np.timedelta64(0, "s") else "goes back before"
        shown = format_dates(dates[[j - 1, j]])
        raise DataError(
            f"{path}: row {i} (line {i + 1}), column '{column}': date {shown[1]} {kind} the previous "
            f"row's {shown[0]}{where}; rows must be in increasing date order"
        )


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


def split_rows(n_rows: int, cfg: DataConfig) -> Split:
    """Rows ⌊train·N⌋ and ⌊(train + val)·N⌋, computed exactly: in floats 0.7 · 90 is 62.999..."""
    train, val = Fraction(str(cfg.split.train)), Fraction(str(cfg.split.val))
    return Split(n_rows, math.floor(train * n_rows), math.floor((train + val) * n_rows), cfg.lookback, cfg.horizon)


def make_split(n_rows: int, cfg: DataConfig, source: str = "data") -> Split:
    """Cut N rows by the config's fractions; refuse a series too short for every split."""
    split = split_rows(n_rows, cfg)
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


def _log_columns(n: int, n_targets: int, transform: str) -> np.ndarray:
    log = np.zeros(n, dtype=bool)
    log[:n_targets] = transform == "log"
    return log


def check_log_positive(path: str, columns: list[str], values: np.ndarray, log: np.ndarray, why: str) -> None:
    """Every value of a column modelled as log(x) (``log``, per column) must be positive; ``why``
    ends the message, in the words of the caller (a config's transform, a run's scaler)."""
    bad = np.argwhere((values <= 0) & log)
    if bad.size:
        i, j = bad[0]
        raise DataError(f"{path}: row {i + 1}, column '{columns[j]}': {values[i, j]:g} is not positive, {why}")


def _column_stats(train: np.ndarray, log: bool) -> tuple[float, float]:
    """Mean and std (1 for a constant column, which is only centred) of one column's training rows."""
    x = np.log(train) if log else train
    mean, std = float(x.mean()), float(x.std())
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


def load_dataset(cfg: DataConfig, path: str | Path | None = None) -> Dataset:
    """Read ``cfg.path`` (or ``path``), split it, fit the scaler on training rows, scale."""
    path = str(path or cfg.path)
    # A large clean file is scaled column by column straight from the parse (or its cache): the
    # float64 table of every column is never built, only the float32 one.
    fast = open_fast(path, cfg.columns, cfg.date_column, cfg.series_column)
    if fast is not None:
        return _prepare(path, cfg, fast.n_rows, fast.dates, fast.parts, fast.column)
    return prepare(read_table(path, cfg.columns, cfg.date_column, cfg.missing, cfg.series_column), cfg)


def prepare(table: Table, cfg: DataConfig) -> Dataset:
    """Split each series by time and scale it with statistics from its own training rows."""
    return _prepare(table.path, cfg, table.n_rows, table.dates, table.parts, table.column)


def _prepare(
    path: str,
    cfg: DataConfig,
    n_rows: int,
    dates: np.ndarray | None,
    parts: tuple[tuple[str, int, int], ...] | None,
    column: Callable[[int], np.ndarray],
) -> Dataset:
    """The columns (in ``cfg.columns`` order) scaled one at a time into one float32 array; the
    targets are kept in float64, original units, for the metrics and baselines."""
    k, n = len(cfg.target), len(cfg.columns)
    whole = Table(path=path, columns=cfg.columns[:k], values=np.empty((n_rows, k)), dates=dates, parts=parts)
    layout = []  # (id, start, stop, source, split) per series
    for sid, start, stop in whole.series_parts():
        source = path if sid is None else f"{path}: series '{sid}'"
        split = make_split(stop - start, cfg, source)
        first_eval = int(split.origins("val")[0])
        if cfg.season > first_eval:
            raise DataError(
                f"{source}: data.season {cfg.season} reaches before the first row from the first "
                f"validation window (row {first_eval}); use a smaller season or a longer series"
            )
        layout.append((sid, start, stop, source, split))
    for j in range(k):
        whole.values[:, j] = column(j)
    log = _log_columns(n, k, cfg.transform)
    if log.any():
        for _, start, stop, source, _ in layout:
            check_log_positive(source, whole.columns, whole.values[start:stop], log[:k],
                               "but data.transform is log; use transform: none")
    scaled = np.empty((n_rows, n), dtype=np.float32)
    stats = np.empty((len(layout), n, 2))
    for j in range(n):
        values = whole.values[:, j] if j < k else column(j)
        for s, (_, start, stop, _, split) in enumerate(layout):
            mean, std = stats[s, j] = _column_stats(values[start : start + split.train_end], bool(log[j]))
            # In row chunks: the transform's float64 temporaries stay small on a 10M-row series.
            for lo in range(start, stop, _CHUNK_ROWS):
                chunk = values[lo : min(lo + _CHUNK_ROWS, stop)]
                scaled[lo : lo + len(chunk), j] = ((np.log(chunk) if log[j] else chunk) - mean) / std
        del values
    series = [
        Series(id=sid, start=start, stop=stop, split=split,
               scaler=Scaler(mean=stats[s, :, 0].copy(), std=stats[s, :, 1].copy(), log=log))
        for s, (sid, start, stop, _, split) in enumerate(layout)
    ]
    return Dataset(table=whole, series=series, scaled=scaled, n_targets=k)


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
        for name, lo, hi in (("MS", 28, 31), ("QS", 89, 92), ("YS", 365, 366)):
            if lo * day <= step <= hi * day:
                return name
    return f"{step}s"


def continue_dates(last: np.datetime64, frequency: str, steps: int) -> np.ndarray:
    """The ``steps`` dates after ``last`` at ``frequency`` (as from ``infer_frequency``)."""
    start = np.array(last).astype("datetime64[s]")[()]
    if frequency in _MONTHS:
        # Explicit units throughout: numpy >= 2.5 deprecates adding bare integers to datetimes.
        one_month, one_day = np.timedelta64(1, "M"), np.timedelta64(1, "D")
        day = start.astype("datetime64[D]")
        time_of_day = start - day.astype("datetime64[s]")
        month = day.astype("datetime64[M]")
        months = month + np.arange(1, steps + 1) * _MONTHS[frequency] * one_month
        ends = (months + one_month).astype("datetime64[D]") - one_day  # last day of each month
        if day == (month + one_month).astype("datetime64[D]") - one_day:
            days = ends  # month-end series stay at month ends (Jan 31 -> Feb 28 -> Mar 31)
        else:  # the same day of the month, clipped to short months
            days = np.minimum(months.astype("datetime64[D]") + (day - month.astype("datetime64[D]")), ends)
        return days.astype("datetime64[s]") + time_of_day
    seconds = {"D": 86400, "W": 7 * 86400}.get(frequency)
    if seconds is None:
        seconds = int(frequency.rstrip("s"))
    return start + np.arange(1, steps + 1) * np.timedelta64(seconds, "s")


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
