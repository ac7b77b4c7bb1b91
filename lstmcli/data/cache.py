"""The parse cache: a large CSV's parsed columns as plain .npy records in one file per (file, columns).

An entry (``.npys``) is .npy records one after another: the key, the series layout for a
long-format file, the dates, then one float64 record per column; no pickles, no zip layer, no
CRC pass. A column is read into place by seeking to its data. An entry is named by the CSV's
absolute path and its columns, and keyed on the sha256 of the file's content (the hash ``train``
records for resuming), so an edited CSV is parsed again whatever its size and mtime. It is written
to a temporary file and renamed, so readers see the old entry or the new one, never half of one.
``LSTMCLI_CACHE_DIR`` moves the cache (default ``$XDG_CACHE_HOME/lstmcli`` or
``~/.cache/lstmcli``); ``LSTMCLI_CACHE=off`` turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lstmcli.errors import DataError

STALE_SECONDS = 3600  # a temporary entry this old was left by a killed writer
CACHE_VERSION = 3  # 3: keyed on the content's sha256; 2: one record per column (1: the whole table in one)


def cache_dir() -> Path | None:
    """Where parsed arrays are cached, or None when ``LSTMCLI_CACHE`` turns caching off (or there is
    no home directory to put it in and no ``LSTMCLI_CACHE_DIR``)."""
    if os.environ.get("LSTMCLI_CACHE", "").strip().lower() in {"0", "off", "no", "false"}:
        return None
    if os.environ.get("LSTMCLI_CACHE_DIR"):
        return Path(os.environ["LSTMCLI_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "lstmcli"
    try:
        return Path.home() / ".cache" / "lstmcli"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry (a container's arbitrary uid)
        return None


class Columns:
    """A clean large CSV's parsed columns: ``n_rows``, ``dates``, ``parts`` and ``column(j)``
    (float64, (N,)), read one at a time from the parsed frame or the cache file."""

    def __init__(
        self,
        n_rows: int,
        width: int,
        dates: np.ndarray | None,
        read: Callable[[int, np.ndarray], None],
        parts: tuple[tuple[str, int, int], ...] | None = None,
        stack: Callable[[], np.ndarray] | None = None,
    ) -> None:
        self.n_rows, self.width, self.dates, self._read, self._stack = n_rows, width, dates, read, stack
        self.cached = False  # True when read from a cache entry, not from a parse held in memory
        # Long format: (series id, first row, end row), rows grouped by series as data.read_table does.
        self.parts = parts

    def column(self, j: int, out: np.ndarray | None = None) -> np.ndarray:
        """Column ``j`` written into ``out`` (a contiguous (N,) float64 array) or a new array."""
        if out is None:
            out = np.empty(self.n_rows, dtype=np.float64)
        self._read(j, out)
        return out

    def stacked(self) -> np.ndarray:
        """The (N, k) float64 table, column-major: each column is read straight into place (or the
        frame converts itself, in parallel)."""
        if self._stack is not None:
            return self._stack()
        out = np.empty((self.n_rows, self.width), dtype=np.float64, order="F")
        for j in range(self.width):
            self.column(j, out[:, j])
        return out


def pwrite_all(fd: int, values: np.ndarray, offset: int) -> None:
    """Write all of ``values`` at ``offset`` (pwrite may write less than asked)."""
    view = values.data.cast("B")
    while view:
        done = os.pwrite(fd, view, offset)
        if done <= 0:
            raise OSError(f"wrote nothing at offset {offset}")
        view, offset = view[done:], offset + done


def reserve(f: Any, n: int, dtype: np.dtype) -> int:
    """Write a .npy header for ``n`` values of ``dtype`` and skip over its data; returns where the data starts."""
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n,)}
    )
    start = f.tell()
    f.seek(n * dtype.itemsize, os.SEEK_CUR)
    return start


# ---------------------------------------------------------------------------------------------
# Cache


def cache_key(
    path: str, columns: list[str], date_column: str | None, series_column: str | None, content_sha256: str
) -> dict[str, object]:
    return {
        "version": CACHE_VERSION,
        "path": str(Path(path).resolve()),
        "columns": list(columns),
        "date_column": date_column,
        "series_column": series_column,
        "sha256": content_sha256,
    }


def entry_file(key: dict[str, object]) -> Path | None:
    where = cache_dir()
    if where is None:
        return None
    # One file per (path, columns): a changed CSV overwrites its old entry instead of adding one
    # (and a single-series entry keeps the name earlier versions gave it, so theirs is replaced).
    ident = json.dumps(
        [key["path"], key["columns"], key["date_column"], *([key["series_column"]] if key["series_column"] else [])]
    )
    return where / f"{hashlib.sha256(ident.encode()).hexdigest()[:32]}.npys"


def open_entry(key: dict[str, object]) -> Columns | None:
    """The entry for ``key`` if it is whole: every record's header read, the data skipped over."""
    file = entry_file(key)
    if file is None or not file.exists():
        return None
    names: list[str] = key["columns"]  # type: ignore[assignment]
    # The columns are read later through this handle: a concurrent rewrite of the entry (os.replace)
    # leaves the file opened here intact, so every column comes from the one snapshot validated here.
    try:
        handle = open(file, "rb")  # closed by a finalizer of the Columns, or below
    except OSError:
        return None
    columns = _read_entry(handle, key, names)
    if columns is None:
        handle.close()
    return columns


def _read_entry(f: Any, key: dict[str, object], names: list[str]) -> Columns | None:
    try:  # the layout, record by record: key, parts (long format), dates, one record per column
        if str(np.load(f, allow_pickle=False)) != json.dumps(key, sort_keys=True):
            return None
        parts = None
        if key["series_column"]:
            parts = tuple((str(i), int(a), int(b)) for i, a, b in json.loads(str(np.load(f, allow_pickle=False))))
        dates = np.load(f, allow_pickle=False) if key["date_column"] else None
        n_rows = None if dates is None else len(dates)
        offsets = []  # where each column's data starts (after its .npy header)
        for _ in names:
            shape, dtype = _record_header(f)
            if dtype != np.float64 or len(shape) != 1 or (n_rows is not None and shape[0] != n_rows):
                return None
            n_rows = shape[0]
            offsets.append(f.tell())
            f.seek(shape[0] * 8, os.SEEK_CUR)
        if f.tell() != os.fstat(f.fileno()).st_size:
            return None  # truncated (or trailing bytes): not an entry this version wrote
    except (OSError, ValueError, EOFError, TypeError):
        return None  # unreadable or foreign: parse again and overwrite it
    assert n_rows is not None
    if parts is not None and [b for _, _, b in parts] != [a for _, a, _ in parts[1:]] + [n_rows]:
        return None

    def read(j: int, out: np.ndarray) -> None:
        f.seek(offsets[j])
        if f.readinto(out.data.cast("B")) != out.nbytes:
            raise DataError(f"{key['path']}: its parse cache entry ended early; run again with LSTMCLI_CACHE=off")

    columns = Columns(n_rows, len(names), dates, read, parts)
    columns.cached = True
    weakref.finalize(columns, f.close)
    return columns


def _record_header(f: Any) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _fortran, dtype = reader(f)
    return shape, dtype


def _temporary(file: Path) -> tuple[int, str]:
    """A new temporary beside ``file`` for its next version. Temporaries of this entry left by a
    killed writer (older than STALE_SECONDS, so not one being written now) are removed first."""
    file.parent.mkdir(parents=True, exist_ok=True)
    for old in file.parent.glob(f"{file.stem}*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > STALE_SECONDS:
                old.unlink()
    return tempfile.mkstemp(dir=file.parent, prefix=file.stem, suffix=".tmp")


def write_entry(
    file: Path,
    key: dict[str, object],
    n_rows: int,
    width: int,
    dated: bool,
    parts: tuple[tuple[str, int, int], ...] | None,
    fill: Callable[[int, int, list[int]], object],
) -> object:
    """Write ``file`` atomically in the entry layout: the key, the parts, then the dates and
    ``width`` columns as .npy records of ``n_rows`` values each, reserved here and filled by
    ``fill(fd, dates_offset, column_offsets)``. The entry replaces the old one only when ``fill``
    returns True; its result is returned. OSError (a full or read-only directory) propagates."""
    fd, tmp = _temporary(file)
    replaced = False
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:
            np.save(f, np.array(json.dumps(key, sort_keys=True)), allow_pickle=False)
            if parts is not None:
                np.save(f, np.array(json.dumps(parts)), allow_pickle=False)
            date_at = reserve(f, n_rows, np.dtype("datetime64[s]")) if dated else 0
            column_at = [reserve(f, n_rows, np.dtype(np.float64)) for _ in range(width)]
            f.truncate(f.tell())
            done = fill(fd, date_at, column_at)
        if done is True:
            os.replace(tmp, file)  # readers see the old entry or the new one, never half of one
            replaced = True
        return done
    finally:
        if not replaced:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def store(key: dict[str, object], parsed: Columns) -> bool:
    """Write the entry (atomically); False if the cache is off or unwritable."""
    file = entry_file(key)
    if file is None:
        return False

    def fill(fd: int, date_at: int, column_at: list[int]) -> bool:
        if parsed.dates is not None:
            pwrite_all(fd, np.ascontiguousarray(parsed.dates, dtype="datetime64[s]").view(np.int64), date_at)
        for j, at in enumerate(column_at):
            pwrite_all(fd, parsed.column(j), at)
        return True

    try:
        return write_entry(file, key, parsed.n_rows, parsed.width, parsed.dates is not None, parsed.parts, fill) is True
    except OSError:
        return False  # a read-only or full cache directory only costs the next run a parse
