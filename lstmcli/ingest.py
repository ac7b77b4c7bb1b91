"""Fast CSV ingest for large files, and a binary cache of the parsed columns.

``data.read_table`` asks :func:`read_fast` first. It parses with polars (the fastest of pyarrow,
polars and pandas on the 10M-row benchmark, BENCHMARKS.md) and accepts a file only when every cell
it needs is a clean finite number (and every date an ISO date, increasing). Anything else (a
missing or non-numeric cell, a ragged row, a blank line, quotes in the header) makes it return
``None``, and the row-by-row validating reader runs instead: it gives the same values for clean
files and the precise "row N (line N+1), column 'x'" messages for bad ones.

The parsed array is cached as a ``.npys`` file: .npy records one after another (key, values, dates),
read back with ``np.load(allow_pickle=False)`` straight from the file (no zip layer, no CRC pass), keyed
by the file's absolute path and columns, and checked against its size, mtime and a hash of its
first and last 64 KiB, so an edited CSV is parsed again. ``LSTMCLI_CACHE_DIR`` moves the cache
(default ``$XDG_CACHE_HOME/lstmcli`` or ``~/.cache/lstmcli``); ``LSTMCLI_CACHE=off`` turns it off.
Small files skip both: the stdlib reader parses them faster than polars imports.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

# Below this size the validating reader takes milliseconds; importing polars would cost more.
FAST_MIN_BYTES = 2_000_000
CACHE_VERSION = 1
_EDGE = 65536
_DATE_FORMATS = (
    (r"^\d{4}-\d{2}-\d{2}$", "%Y-%m-%d"),
    (r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$", "%Y-%m-%dT%H:%M:%S"),
    (r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$", "%Y-%m-%d %H:%M:%S"),
)

Parsed = tuple[np.ndarray, "np.ndarray | None"]


def cache_dir() -> Path | None:
    """Where parsed arrays are cached, or None when ``LSTMCLI_CACHE`` turns caching off."""
    if os.environ.get("LSTMCLI_CACHE", "").strip().lower() in {"0", "off", "no", "false"}:
        return None
    if os.environ.get("LSTMCLI_CACHE_DIR"):
        return Path(os.environ["LSTMCLI_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lstmcli"


def read_fast(path: str, columns: list[str], date_column: str | None = None) -> Parsed | None:
    """(values (N, k) float64, dates or None) for a clean large CSV; None means "validate instead"."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_size < FAST_MIN_BYTES:
        return None
    key = _cache_key(path, st, columns, date_column)
    cached = _cache_load(key)
    if cached is not None:
        return cached
    parsed = _parse(path, columns, date_column)
    if parsed is not None:
        _cache_store(key, parsed)
    return parsed


# ---------------------------------------------------------------------------------------------
# Parsing


def _header(path: str) -> list[str] | None:
    with open(path, "rb") as f:
        first = f.readline()
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


def _parse(path: str, columns: list[str], date_column: str | None) -> Parsed | None:
    header = _header(path)
    if header is None or any(c not in header for c in [*columns, *([date_column] if date_column else [])]):
        return None
    import polars as pl

    # Every column is read (the unused ones as text) so that a ragged row is an error or a null.
    try:
        df = pl.read_csv(path, infer_schema=False, schema_overrides={c: pl.Float64 for c in columns})
    except Exception:  # any parse problem: the validating reader finds and names it
        return None
    if df.height == 0 or list(df.columns) != header or any(df[c].null_count() for c in df.columns):
        return None
    # Column-major, like the frame: polars fills it in parallel (a row-major copy is a strided
    # scatter, ~1 s more on 10M rows). numpy indexing gives the same values whatever the order.
    values = df.select(columns).to_numpy()
    if values.dtype != np.float64 or not values.flags.writeable:
        values = np.array(values, dtype=np.float64, order="F")
    if not np.isfinite(values).all():
        return None
    dates = None
    if date_column:
        dates = _dates(df[date_column])
        if dates is None:
            return None
    return values, dates


def _dates(s: Any) -> np.ndarray | None:
    import polars as pl

    dates = None
    for pattern, fmt in _DATE_FORMATS:
        if s.str.contains(pattern).all():
            try:
                secs = s.str.strptime(pl.Datetime("ms"), fmt, strict=True).dt.epoch("s").to_numpy()
            except Exception:
                return None
            dates = secs.astype(np.int64).astype("datetime64[s]")
            break
    if dates is None:  # another ISO form numpy reads (e.g. 2020-01 or minutes only)
        try:
            dates = np.array([c.strip() for c in s.to_list()], dtype="datetime64[s]")
        except ValueError:
            return None
    if np.isnat(dates).any() or (np.diff(dates) <= np.timedelta64(0, "s")).any():
        return None
    return dates


# ---------------------------------------------------------------------------------------------
# Cache


def _cache_key(path: str, st: os.stat_result, columns: list[str], date_column: str | None) -> dict[str, object]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_EDGE))
        if st.st_size > _EDGE:
            f.seek(max(_EDGE, st.st_size - _EDGE))
            h.update(f.read(_EDGE))
    return {
        "version": CACHE_VERSION,
        "path": str(Path(path).resolve()),
        "columns": list(columns),
        "date_column": date_column,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "edges_sha256": h.hexdigest(),
    }


def _cache_file(key: dict[str, object]) -> Path | None:
    where = cache_dir()
    if where is None:
        return None
    # One file per (path, columns): a changed CSV overwrites its old entry instead of adding one.
    ident = json.dumps([key["path"], key["columns"], key["date_column"]])
    return where / f"{hashlib.sha256(ident.encode()).hexdigest()[:32]}.npys"


def cache_file_for(path: str, columns: list[str], date_column: str | None = None) -> Path | None:
    """The cache file that holds (or would hold) ``path``'s parsed columns."""
    return _cache_file(_cache_key(path, os.stat(path), columns, date_column))


def _cache_load(key: dict[str, object]) -> Parsed | None:
    file = _cache_file(key)
    if file is None or not file.exists():
        return None
    try:
        with open(file, "rb") as f:
            if str(np.load(f, allow_pickle=False)) != json.dumps(key, sort_keys=True):
                return None
            values = np.load(f, allow_pickle=False)
            dates = np.load(f, allow_pickle=False) if f.peek(1) else None
    except (OSError, ValueError, EOFError):
        return None  # unreadable or foreign: parse again and overwrite it
    if values.dtype != np.float64 or values.ndim != 2 or values.shape[1] != len(key["columns"]):  # type: ignore[arg-type]
        return None
    return values, dates


def _cache_store(key: dict[str, object], parsed: Parsed) -> None:
    file = _cache_file(key)
    if file is None:
        return
    values, dates = parsed
    arrays = [np.array(json.dumps(key, sort_keys=True)), values, *([] if dates is None else [dates])]
    tmp = None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.stem, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            for array in arrays:
                np.save(f, array, allow_pickle=False)
        os.replace(tmp, file)  # readers see the old entry or the new one, never half of one
        tmp = None
    except OSError:
        pass  # a read-only or full cache directory only costs the next run a parse
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
