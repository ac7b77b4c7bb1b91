"""Fast CSV ingest for large files with polars, its parse kept in the cache (``data.cache``).

``data.read_table`` asks :func:`read_fast` first. It parses with polars (the fastest of pyarrow,
polars and pandas on the 10M-row benchmark, BENCHMARKS.md) and accepts a file only when every cell
it needs is a clean finite number (and every date an ISO date, increasing). Anything else (a
missing or non-numeric cell, a ragged row, a blank line, quotes in the header) makes it return
``None``, and the row-by-row validating reader runs instead: it gives the same values for clean
files and the precise "row N (line N+1), column 'x'" messages for bad ones.

Columns are handed out one at a time (:class:`Columns`), so that ``data.load_dataset`` scales each
into the float32 training array and keeps only the targets in float64. With the cache on (the
default) they are read from the cache entry, and on the first run a single-series file is parsed
in batches written straight into that entry, so the whole float64 table of a 10M-row file is never
in memory (a long-format file, which must be grouped by series, is parsed whole, written, then
freed before its columns are read back). ``read_fast`` parses whole and stacks the columns, for
callers that want the table.

Small files skip both: the stdlib reader parses them faster than polars imports.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from lstmcli.data.cache import (
    Columns,
    cache_dir,
    cache_key,
    entry_file,
    open_entry,
    pwrite_all,
    store,
    write_entry,
)
from lstmcli.data.dates import gaps, infer_frequency, parse_iso
from lstmcli.errors import DataError
from lstmcli.fsutil import sha256_file

# Below this size the validating reader takes milliseconds; importing polars would cost more.
FAST_MIN_BYTES = 2_000_000
BATCH_ROWS = 1 << 18  # rows per streamed batch: 16 MiB of float64 for 8 columns
HEADER_MAX_BYTES = 1 << 20
_DATE_FORMATS = (
    (r"^\d{4}-\d{2}-\d{2}$", "%Y-%m-%d"),
    (r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$", "%Y-%m-%dT%H:%M:%S"),
    (r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$", "%Y-%m-%d %H:%M:%S"),
)

Parsed = tuple[np.ndarray, "np.ndarray | None", "tuple[tuple[str, int, int], ...] | None"]


def open_fast(
    path: str,
    columns: list[str],
    date_column: str | None = None,
    series_column: str | None = None,
    content_sha256: str | None = None,
) -> Columns | None:
    """The parsed ``columns`` of a clean large CSV (from the cache when valid); None means "validate instead".

    After a parse the columns are served from the cache entry just written, so that the parsed
    frame (every column in float64) is freed before the caller scales them one by one.
    ``content_sha256``, the file's sha256 if the caller has it, saves hashing the file again.
    """
    return _regular(_load(path, columns, date_column, series_column, reopen=True, content_sha256=content_sha256))


def read_fast(
    path: str, columns: list[str], date_column: str | None = None, series_column: str | None = None
) -> Parsed | None:
    """(values (N, k) float64, dates or None, parts or None) for a clean large CSV; None means "validate instead"."""
    cols = _regular(_load(path, columns, date_column, series_column, reopen=False))
    return None if cols is None else (cols.stacked(), cols.dates, cols.parts)


def _regular(cols: Columns | None) -> Columns | None:
    """``cols`` if every series steps regularly through its dates; None (validate instead: the
    reader names a gap, or fills it) if one has a missing timestamp or an off-step date."""
    if cols is None or cols.dates is None:
        return cols
    for _, start, stop in cols.parts or (("", 0, len(cols.dates)),):
        d = cols.dates[start:stop]
        steps = np.diff(d)
        if steps.size == 0 or bool(np.all(steps == steps[0])):  # one fixed step: regular, in one pass
            continue
        absent, off = gaps(d, infer_frequency(d))
        if absent.size or off.size:
            return None
    return cols


def _load(
    path: str,
    columns: list[str],
    date_column: str | None,
    series_column: str | None,
    reopen: bool,
    content_sha256: str | None = None,
) -> Columns | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_size < FAST_MIN_BYTES:
        return None
    # The entry is keyed on the file's content: size, mtime and a few sampled bytes are fooled by
    # an edit that keeps them (cp -p, rsync -t and tar x restore the mtime).
    digest = content_sha256 or (sha256_file(path, DataError) if cache_dir() is not None else "")
    key = cache_key(path, columns, date_column, series_column, digest)
    cached = open_entry(key)
    if cached is not None:
        return cached
    parsed = _parse(key, path, columns, date_column, series_column, reopen)  # streamed when read column by column
    if parsed is None:
        return None
    if _changed_since(path, st):  # the parse may not be what was hashed: never cache it under that hash
        file = entry_file(key)
        if file is not None and parsed.cached:
            with contextlib.suppress(OSError):
                file.unlink()
        raise DataError(f"{path}: changed while it was being read; run again once it is written")
    if parsed.cached:
        return parsed
    if store(key, parsed) and reopen:
        return open_entry(key) or parsed
    return parsed


def _changed_since(path: str, st: os.stat_result) -> bool:
    try:
        now = os.stat(path)
    except OSError:
        return True
    return (now.st_size, now.st_mtime_ns, now.st_ino) != (st.st_size, st.st_mtime_ns, st.st_ino)


# ---------------------------------------------------------------------------------------------
# Parsing


def _header(path: str) -> list[str] | None:
    with open(path, "rb") as f:
        first = f.readline(HEADER_MAX_BYTES + 1)
    if len(first) > HEADER_MAX_BYTES:
        return None  # the validating reader names the problem
    if first.startswith((b"\xff\xfe", b"\xfe\xff")) or b'"' in first:
        return None
    try:
        line = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        return None
    header = next(csv.reader([line]), [])
    if any(h != h.strip() or not h for h in header) or len(set(header)) != len(header):
        return None
    return header


def _parse(
    key: dict[str, object],
    path: str,
    columns: list[str],
    date_column: str | None,
    series_column: str | None,
    stream: bool = False,
) -> Columns | None:
    """The parsed columns, or None when the file is not clean.

    With ``stream`` (a caller that takes the columns one at a time) and the cache on, a
    single-series file is parsed batch by batch straight into its cache entry, so the whole table
    is never in memory. Otherwise polars parses the whole file at once, which is fastest.
    """
    keys = [c for c in (series_column, date_column) if c]
    header = _header(path)
    if header is None or any(c not in header for c in [*columns, *keys]):
        return None
    file = entry_file(key) if stream and series_column is None else None
    if file is not None:
        streamed = _stream_to_entry(file, key, path, header, columns, date_column)
        if streamed is not _STREAM_FAILED:
            return streamed  # type: ignore[return-value]
    return _parse_whole(path, header, columns, date_column, series_column)


def _parse_whole(
    path: str, header: list[str], columns: list[str], date_column: str | None, series_column: str | None
) -> Columns | None:
    import polars as pl

    # Every column is read (the unused ones as text) so that a ragged row is an error or a null.
    try:
        df = pl.read_csv(path, infer_schema=False, schema_overrides={c: pl.Float64 for c in columns})
    except Exception:  # any parse problem: the validating reader finds and names it
        return None
    if df.height == 0 or not _clean(df, header, columns):
        return None
    grouped = _group(df[series_column]) if series_column else (None, None)
    if grouped is None:
        return None
    order, parts = grouped
    dates = _frame_dates(df[date_column], order, parts) if date_column else None
    if date_column and dates is None:
        return None
    return _frame_columns(df.select(columns), columns, dates, order, parts)


def _frame_dates(s: Any, order: np.ndarray | None, parts: tuple[tuple[str, int, int], ...] | None) -> np.ndarray | None:
    """The date column in table order, if every date is ISO and they increase within each series."""
    got = _dates(s)
    if got is None:
        return None
    dates = got[0] if order is None else got[0][order]
    step_ok = np.diff(dates) > np.timedelta64(0, "s")
    if parts:
        step_ok[[stop - 1 for _, _, stop in parts[:-1]]] = True  # a new series may start earlier
    return dates if step_ok.all() else None


def _frame_columns(
    frame: Any,
    columns: list[str],
    dates: np.ndarray | None,
    order: np.ndarray | None,
    parts: tuple[tuple[str, int, int], ...] | None,
) -> Columns:
    def read(j: int, out: np.ndarray) -> None:
        values = frame[columns[j]].to_numpy()
        if order is None:
            out[:] = values
        else:
            np.take(values, order, out=out)

    def stack() -> np.ndarray:
        values = frame.to_numpy(order="fortran")  # polars fills it in parallel
        return values if order is None else np.asfortranarray(values[order])

    return Columns(frame.height, len(columns), dates, read, parts, stack)


def _clean(df: Any, header: list[str], columns: list[str]) -> bool:
    """The header's columns, no null anywhere (a ragged row or an empty cell), finite values."""
    import polars as pl

    if list(df.columns) != header or any(df[c].null_count() for c in df.columns):
        return False
    # A finite sum means every value is finite (a NaN or an inf makes it NaN or inf), in a third
    # of the time of checking each value; only a sum that overflows is checked value by value.
    if all(math.isfinite(total) for total in df.select(pl.col(columns).sum()).row(0)):
        return True
    return all(df.select(pl.col(columns).is_finite().all()).row(0))


_STREAM_FAILED = object()  # streaming could not run (no space, old polars): parse the whole file


def _stream_to_entry(
    file: Path, key: dict[str, object], path: str, header: list[str], columns: list[str], date_column: str | None
) -> Columns | None | object:
    """Parse ``path`` in batches of BATCH_ROWS rows, each written straight to its place in a new
    cache entry (the rows are counted first, so every record's size is known): the table is never
    whole in memory. Returns the entry's columns, None if the file is not clean (the validating
    reader names the problem), or _STREAM_FAILED."""
    import polars as pl

    lazy = pl.scan_csv(path, infer_schema=False, schema_overrides={c: pl.Float64 for c in columns})
    if not hasattr(lazy, "collect_batches"):  # polars < 1.32
        return _STREAM_FAILED
    try:
        n_rows = int(lazy.select(pl.len()).collect().item())
    except Exception:
        return None
    if n_rows == 0:
        return None
    fill = _BatchFill(lazy, n_rows, header, columns, date_column)
    try:
        written = write_entry(file, key, n_rows, len(columns), date_column is not None, None, fill)
    except OSError:
        return _STREAM_FAILED  # a full or read-only cache directory: parse in memory instead
    except Exception:  # polars refused a row (a ragged line, an unparsable number): not clean
        return None
    if written is not True:
        return written
    return open_entry(key) or _STREAM_FAILED


class _BatchFill:
    """``write_entry``'s filler: every batch checked and written into its place in the entry.
    Returns True when all ``n_rows`` rows are in, None for a file that is not clean, or
    _STREAM_FAILED when the whole parse must decide (the count and the batches disagree, or a
    later batch's dates take another form than the first's)."""

    def __init__(self, lazy: Any, n_rows: int, header: list[str], columns: list[str], date_column: str | None) -> None:
        self.lazy, self.n_rows, self.header, self.columns, self.date_column = lazy, n_rows, header, columns, date_column
        self.last: np.datetime64 | None = None  # the previous batch's last date
        self.form: int | None = None  # how the first batch's dates were read

    def __call__(self, fd: int, date_at: int, column_at: list[int]) -> object:
        row = 0
        for batch in self.lazy.collect_batches(chunk_size=BATCH_ROWS):
            if row + batch.height > self.n_rows:
                return _STREAM_FAILED
            if not _clean(batch, self.header, self.columns):
                return None
            if self.date_column:
                done = self._dates(fd, batch[self.date_column], date_at + row * 8)
                if done is not True:
                    return done
            for j, c in enumerate(self.columns):
                pwrite_all(fd, np.ascontiguousarray(batch[c].to_numpy(), dtype=np.float64), column_at[j] + row * 8)
            row += batch.height
        return True if row == self.n_rows else _STREAM_FAILED

    def _dates(self, fd: int, s: Any, at: int) -> object:
        got = _dates(s, self.form)
        if got is None:  # not a date, or another form than the first batch's
            return _STREAM_FAILED if self.form is not None else None
        dates, self.form = got
        if not _increasing(dates, self.last):
            return None
        self.last = dates[-1]
        pwrite_all(fd, dates.view(np.int64), at)
        return True


def _increasing(dates: np.ndarray, previous: np.datetime64 | None) -> bool:
    if previous is not None and not dates[0] > previous:
        return False
    return bool((np.diff(dates) > np.timedelta64(0, "s")).all())


def _group(ids: Any) -> tuple[np.ndarray, tuple[tuple[str, int, int], ...]] | None:
    """Rows grouped by series id in order of first appearance, stable within a series (as
    ``data._group_series``): the row order and each series' (id, start, stop)."""
    import polars as pl

    raw = ids.unique(maintain_order=True)  # in order of first appearance
    # Python's strip, as the validating reader's (polars' strip_chars leaves \x1c-\x1f): ids that
    # differ only by surrounding whitespace are one series, numbered where the first appears.
    names: dict[str, int] = {}
    codes = [names.setdefault(r.strip(), len(names)) for r in raw.to_list()]
    if "" in names:
        return None  # an empty id: the validating reader names the row
    code = ids.replace_strict(raw, pl.Series(codes, dtype=pl.Int64), return_dtype=pl.Int64).to_numpy()
    order = np.argsort(code, kind="stable")
    stops = np.cumsum(np.bincount(code, minlength=len(names)))
    starts = np.concatenate([[0], stops[:-1]])
    parts = tuple((sid, int(a), int(b)) for sid, a, b in zip(names, starts, stops, strict=True))
    return order, parts


def _dates(s: Any, form: int | None = None) -> tuple[np.ndarray, int] | None:
    """The dates (datetime64[s]) and the form read: an index into _DATE_FORMATS, or -1 for
    numpy's ISO reader. ``form`` requires that form (a later batch must be read like the first,
    as the whole column would be); None means the file is not clean or the form differs."""
    import polars as pl

    dates, used = None, -1
    for i, (pattern, fmt) in enumerate(_DATE_FORMATS):
        if s.str.contains(pattern).all():
            try:
                secs = s.str.strptime(pl.Datetime("ms"), fmt, strict=True).dt.epoch("s").to_numpy()
            except Exception:
                return None
            dates, used = secs.astype(np.int64).astype("datetime64[s]"), i
            break
    if form is not None and used != form:
        return None
    if dates is None:  # another ISO form numpy reads (e.g. 2020-01 or minutes only; never an offset)
        dates = parse_iso(s.to_list())
        if dates is None:
            return None
    return None if np.isnat(dates).any() else (dates, used)  # order is checked by the caller
