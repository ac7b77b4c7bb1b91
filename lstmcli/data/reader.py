"""The validating CSV reader: every cell checked, the first problem named by file, row, line and column.

Large clean files are read by the polars path (``data.fast``) instead; anything it cannot take
cleanly comes here, so the messages are the same either way. Files are streamed line by line,
with a bound on the length of a line, and only regular files are read.
"""

from __future__ import annotations

import csv
import difflib
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lstmcli.data.dates import (
    FREQUENCY_NAMES,
    format_dates,
    gaps,
    infer_frequency,
    offset_of,
    parse_formatted,
    parse_iso,
)
from lstmcli.data.fast import read_fast
from lstmcli.errors import DataError, GapError
from lstmcli.fsutil import MiB, check_regular, open_regular


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
    filled: int = 0  # missing timestamps inserted and filled (data.missing), over every series

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
    date_format: str | None = None,
) -> Table:
    """Read ``columns`` (and ``date_column``) from a CSV with a header row, checking every cell.

    With ``series_column`` the file is in long format (series id, date, values): rows are grouped
    by series, keeping each series' rows in file order, and dates must increase within a series.
    Errors name the file, the row (1-based data row, and the line in the file) and the column.
    """
    path = str(path)
    check_regular(path, "CSV file", DataError)
    # Large clean files: polars, or the cached parse (long format grouped as _group_series does).
    fast = None if date_format else read_fast(path, columns, date_column, series_column)  # polars reads ISO only
    if fast is not None:
        return Table(path=path, columns=list(columns), values=fast[0], dates=fast[1], parts=fast[2])
    return _read_validated(path, columns, date_column, missing, series_column, date_format)


def _read_validated(
    path: str,
    columns: list[str],
    date_column: str | None,
    missing: str,
    series_column: str | None,
    date_format: str | None = None,
) -> Table:
    """The row-by-row reader: every cell checked, the first problem named by row, line and column."""
    records = csv_records(path)
    header = header_of(path, records)
    _check_delimiter(path, header, columns)
    index = _column_index(path, header, [c for c in (series_column, date_column, *columns) if c])
    wanted = [index[c] for c in columns]
    values: list[float] = []
    lines = array("q")  # the file line of each data row, for messages after grouping or sorting
    date_cells: list[str] = []
    ids: list[str] = []
    for row, (line, fields) in enumerate(records, start=1):
        if len(fields) != len(header):
            raise DataError(f"{path}: row {row} (line {line}) has {len(fields)} field(s), the header has {len(header)}")
        for name, j in zip(columns, wanted, strict=True):
            values.append(_parse_number(path, fields[j], row, line, name, missing))
        lines.append(line)
        if date_column:
            date_cells.append(fields[index[date_column]])
        if series_column:
            ids.append(fields[index[series_column]].strip())
    if not lines:
        raise DataError(f"{path}: has a header but no data rows")
    where = _Where(path, np.frombuffer(lines, dtype=np.int64))
    table = np.array(values, dtype=np.float64).reshape(len(lines), len(columns))
    dates = _parse_dates(where, date_cells, date_column, date_format) if date_column else None
    if series_column is None:
        filled = 0
        if dates is not None:
            _check_increasing(where, dates, np.arange(len(dates)), date_column or "")
            table, dates, _, filled = regularize(path, table, dates, None, missing)
        if missing != "error":
            table = _fill_missing(path, table, columns, missing)
        return Table(path=path, columns=list(columns), values=table, dates=dates, filled=filled)
    return _group_series(where, ids, series_column, table, dates, columns, date_column, missing)


@dataclass(frozen=True)
class _Where:
    """Names data row i (0-based) as the user sees it: "row i+1 (line L)"."""

    path: str
    lines: np.ndarray  # (N,) file line of each data row

    def __call__(self, i: int) -> str:
        return f"{self.path}: row {i + 1} (line {int(self.lines[i])})"


def _group_series(
    where: _Where,
    ids: list[str],
    series_column: str,
    values: np.ndarray,
    dates: np.ndarray | None,
    columns: list[str],
    date_column: str | None,
    missing: str,
) -> Table:
    """Stack a long-format table series by series (stable: rows keep their file order)."""
    path = where.path
    for i, sid in enumerate(ids):
        if not sid:
            raise DataError(f"{where(i)}, column '{series_column}': empty series id")
    first: dict[str, int] = {}
    code = np.array([first.setdefault(sid, len(first)) for sid in ids])
    order = np.argsort(code, kind="stable")  # row order[i] of the file is row i of the table
    values, code = values[order], code[order]
    dates = dates[order] if dates is not None else None
    bounds = np.flatnonzero(np.diff(code)) + 1
    starts = [0, *bounds.tolist()]
    stops = [*bounds.tolist(), len(code)]
    parts = tuple((sid, start, stop) for sid, start, stop in zip(first, starts, stops, strict=True))
    filled = 0
    if dates is not None:
        for sid, start, stop in parts:
            _check_increasing(where, dates[start:stop], order[start:stop], date_column or "", f" in series '{sid}'")
        values, dates, regular, filled = regularize(path, values, dates, parts, missing)
        parts = regular or parts
    for sid, start, stop in parts:
        if missing != "error":
            values[start:stop] = _fill_missing(f"{path} series '{sid}'", values[start:stop], columns, missing)
    return Table(path=path, columns=list(columns), values=values, dates=dates, parts=parts, filled=filled)


def regularize(
    path: str,
    values: np.ndarray,
    dates: np.ndarray,
    parts: tuple[tuple[str, int, int], ...] | None,
    missing: str,
) -> tuple[np.ndarray, np.ndarray, tuple[tuple[str, int, int], ...] | None, int]:
    """Check each series' time axis at its own inferred frequency. A date off the steps of the
    others is refused; so are missing timestamps (the first named, and how many), unless
    ``missing`` fills them: their rows are inserted as empty cells, which the fill then fills like
    any other. Returns the values, dates and parts with those rows, and how many were inserted."""
    segments = parts if parts is not None else (("", 0, len(dates)),)
    pieces: list[tuple[str, np.ndarray, np.ndarray]] = []
    filled = 0
    for sid, start, stop in segments:
        d, v = dates[start:stop], values[start:stop]
        frequency = infer_frequency(d)
        absent, off = gaps(d, frequency)
        where = f"{path}: series '{sid}'" if parts is not None else path
        name = FREQUENCY_NAMES.get(frequency or "", f"every-{frequency}")
        if off.size:
            raise DataError(
                f"{where}: date {format_dates(off[:1], like=d)[0]} is off the {name} steps of the other dates "
                f"({off.size} date(s) are); dates must step regularly"
            )
        if absent.size:
            if missing == "error":
                first = format_dates(absent[:1], like=d)[0]
                raise GapError(
                    f"{where}: {absent.size} {name} timestamp(s) are missing, the first {first}; "
                    "add the rows, or set data.missing: interpolate, ffill or zero to fill them",
                    where,
                    int(absent.size),
                    first,
                )
            full = np.union1d(d.astype("datetime64[s]"), absent)
            rows = np.full((len(full), v.shape[1]), np.nan)
            rows[np.searchsorted(full, d.astype("datetime64[s]"))] = v
            d, v, filled = full, rows, filled + absent.size
        pieces.append((sid, d, v))
    if not filled:
        return values, dates, parts, 0
    bounds = np.cumsum([0, *(len(d) for _, d, _ in pieces)])
    new_parts = (
        tuple((sid, int(lo), int(hi)) for (sid, _, _), lo, hi in zip(pieces, bounds[:-1], bounds[1:], strict=True))
        if parts is not None
        else None
    )
    return np.concatenate([v for _, _, v in pieces]), np.concatenate([d for _, d, _ in pieces]), new_parts, filled


# The csv module refuses fields over 128 KiB with a bare _csv.Error; a text column (notes, say)
# may hold longer cells, so fields are bounded by the line limit instead.
MAX_LINE_BYTES = 16 * MiB
csv.field_size_limit(MAX_LINE_BYTES)


def csv_records(path: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank record of a CSV file, the header first.

    The file is streamed line by line (a line longer than MAX_LINE_BYTES is refused, so a
    1 GiB line or a file of NUL bytes never fills the memory); each line is decoded on its
    own, so an invalid byte is named by its line. Only regular files are read.
    """
    with open_regular(path, "CSV file", DataError) as fh:
        reader = csv.reader(_decoded_lines(fh, path))
        try:
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # a blank line (a trailing newline, say)
                yield reader.line_num, fields
        except csv.Error as exc:
            raise DataError(f"{path}: line {reader.line_num + 1}: {exc}") from None


def _decoded_lines(fh: Any, path: str) -> Iterator[str]:
    line = 0
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        line += 1
        if len(raw) > MAX_LINE_BYTES:
            raise DataError(
                f"{path}: line {line} is longer than {MAX_LINE_BYTES // MiB} MiB; expected a CSV time series"
            )
        if line == 1:
            if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise DataError(f"{path}: is UTF-16 encoded (byte-order mark); save it as UTF-8 CSV")
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark (Excel's) is accepted
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{path}: line {line} is not valid UTF-8; save the file as UTF-8 CSV") from None


def header_of(path: str, records: Iterator[tuple[int, list[str]]]) -> list[str]:
    """The stripped column names from the first record of ``csv_records``."""
    first = next(records, None)
    if first is None or not any(h.strip() for h in first[1]):
        raise DataError(f"{path}: file is empty; expected a header row naming the columns")
    return [h.strip() for h in first[1]]


def read_header(path: str) -> list[str]:
    """The CSV's column names (stripped), read from its first record only."""
    return header_of(path, csv_records(path))


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


MISSING_CELLS = {"", "na", "nan", "null", "none", "n/a"}
# Squared errors of values beyond this overflow float64 sums; no measured quantity comes near it.
MAX_ABS_VALUE = 1e100


def _parse_number(path: str, cell: str, row: int, line: int, column: str, missing: str) -> float:
    text = cell.strip()
    where = f"{path}: row {row} (line {line}), column '{column}'"
    if text.lower() in MISSING_CELLS:
        if missing == "error":
            what = "an empty cell" if not text else f"a missing value ({text!r})"
            raise DataError(
                f"{where}: {what}; expected a number (set data.missing: interpolate, ffill or zero to fill gaps)"
            )
        return math.nan
    try:
        value = float(text)
    except ValueError:
        shown = repr(cell) if len(cell) <= 40 else repr(cell[:40]) + f"... ({len(cell):,} characters)"
        raise DataError(f"{where}: {shown} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {cell!r} is not a finite number")
    return value


def check_magnitude(path: str, columns: list[str], values: np.ndarray) -> None:
    """Every value of (N, k) ``values`` within ±MAX_ABS_VALUE (rows named 1-based)."""
    bad = np.argwhere(np.abs(values) >= MAX_ABS_VALUE)
    if bad.size:
        i, j = bad[0]
        raise DataError(
            f"{path}: row {i + 1}, column '{columns[j]}': {values[i, j]:g} is too large (expected |x| < "
            f"{MAX_ABS_VALUE:g}: squared errors would overflow); rescale the column"
        )


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
        elif how == "zero":
            col[bad] = 0.0
        else:  # ffill; leading gaps take the first value
            idx = np.where(bad, 0, np.arange(col.size))
            np.maximum.accumulate(idx, out=idx)
            filled = col[idx]
            filled[: good[0]] = col[good[0]]
            out[:, j] = filled
    return out


def _parse_dates(where: _Where, cells: list[str], column: str, date_format: str | None = None) -> np.ndarray:
    if date_format:
        dates = parse_formatted(cells, date_format)
        if dates is not None:
            return dates
        for i, c in enumerate(cells):
            if parse_formatted([c], date_format) is None:
                raise DataError(
                    f"{where(i)}, column '{column}': {c.strip()!r} does not match data.date_format {date_format!r}"
                )
    dates = parse_iso(cells)
    if dates is not None:
        return dates
    for i, c in enumerate(cells):
        zone = offset_of(c)
        if zone:
            raise DataError(
                f"{where(i)}, column '{column}': {c.strip()!r} carries a time-zone offset ({zone}); lstm reads "
                "local dates without one (converting them to UTC would move every date); remove the offset"
            )
        if not c.strip():
            raise DataError(f"{where(i)}, column '{column}': empty date")
        if parse_iso([c]) is None:
            raise DataError(
                f"{where(i)}, column '{column}': {c!r} is not an ISO date (expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, "
                "or set data.date_format, e.g. '%d/%m/%Y')"
            )
    raise DataError(f"{where.path}: column '{column}': the dates cannot be read as ISO dates")


def _check_increasing(where: _Where, dates: np.ndarray, rows: np.ndarray, column: str, suffix: str = "") -> None:
    """Dates must increase strictly; ``rows`` are the 0-based data rows of ``dates`` in the file."""
    steps = np.diff(dates)
    bad = np.flatnonzero(steps <= np.timedelta64(0, "s"))
    if bad.size:
        j = int(bad[0]) + 1  # the later of the two dates
        kind = "repeats" if steps[bad[0]] == np.timedelta64(0, "s") else "goes back before"
        shown = format_dates(dates[[j - 1, j]], like=dates)
        raise DataError(
            f"{where(int(rows[j]))}, column '{column}': date {shown[1]} {kind} the previous "
            f"row's {shown[0]}{suffix}; rows must be in increasing date order"
        )
