"""Static categories (``data.static_categories``): a text column constant within each series of a
long-format file, one-hot encoded over the values the config lists.

The config lists the values, so the number of inputs (and n) is known before any file is read, and
predict encodes a file exactly as training did; a value it does not list is refused in one line.
"""

from __future__ import annotations

import numpy as np

from lstmcli.config import DataConfig
from lstmcli.data.reader import csv_records, header_of
from lstmcli.errors import DataError

Categories = dict[str, dict[str, str]]  # series id -> category column -> its value


def read_categories(path: str, cfg: DataConfig, only: str | None = None) -> Categories:
    """Each series' value of each ``static_categories`` column, checked constant within the series
    and listed in the config (``only``: that series alone, the one predict --series forecasts).
    One streamed pass over the file (the text columns only)."""
    names = list(cfg.static_categories)
    if not names:
        return {}
    assert cfg.series_column is not None  # the config requires it with static_categories
    records = csv_records(path)
    header = header_of(path, records)
    missing = [c for c in [cfg.series_column, *names] if c not in header]
    if missing:
        raise DataError(f"{path}: lacks column '{missing[0]}' (data.static_categories needs it)")
    key, cols = header.index(cfg.series_column), [header.index(c) for c in names]
    found: Categories = {}
    for line, fields in records:
        if len(fields) <= max(key, *cols):
            continue  # a short row: the numeric reader names it
        sid = fields[key].strip()
        if only is not None and sid != only:
            continue
        values = found.setdefault(sid, {})
        for name, col in zip(names, cols, strict=True):
            value = fields[col].strip()
            first = values.setdefault(name, value)
            if value != first:
                raise DataError(
                    f"{path}: line {line}, column '{name}': series '{sid}' has {value!r} here and {first!r} "
                    "before; a static category holds one value per series"
                )
    for sid, values in found.items():
        for name, value in values.items():
            if value not in cfg.static_categories[name]:
                listed = ", ".join(cfg.static_categories[name])
                raise DataError(
                    f"{path}: series '{sid}', column '{name}': {value!r} is not among the values "
                    f"data.static_categories lists for it ({listed}); a run encodes only the values it was "
                    "trained with"
                )
    return found


def one_hot(
    cfg: DataConfig, categories: Categories, j: int, parts: list[tuple[str | None, int, int]], n_rows: int
) -> np.ndarray:
    """One-hot column ``j`` of ``cfg.category_columns`` over the rows of ``parts``: 1 where the
    row's series has that value."""
    name, value = cfg.category_pairs[j]
    out = np.zeros(n_rows)
    for sid, start, stop in parts:
        if sid is not None and categories.get(sid, {}).get(name) == value:
            out[start:stop] = 1.0
    return out
