"""``lstm init``: look at a CSV and write a starter config that ``lstm train`` accepts.

Detects the date column and the numeric columns, infers the frequency and a seasonal period s
from the dates, and derives L and H from s. Every choice is returned with its reason, for the CLI
to print.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from lstmcli.config import SMALL_DATA_UNITS, SMALL_DATA_WINDOWS, ModelConfig, parse_yaml, validate_config
from lstmcli.data.dataset import prepare
from lstmcli.data.dates import COMMON_FORMATS, infer_frequency, parse_formatted, parse_iso
from lstmcli.data.reader import MISSING_CELLS, csv_records, header_of, read_table
from lstmcli.errors import ConfigError, DataError, GapError
from lstmcli.fsutil import atomic_write

# Seasonal period per inferred frequency (infer_frequency's names; hourly is '3600s').
SEASONS = {
    "MS": (12, "monthly"),
    "W": (52, "weekly"),
    "D": (7, "daily"),
    "QS": (4, "quarterly"),
    "3600s": (24, "hourly"),
    "1800s": (48, "half-hourly"),
    "900s": (96, "15-minute"),
    "B": (5, "business-day"),
    "YS": (1, "yearly"),
}
# The second season of sub-daily and daily data: init proposes it after the first (data.season:
# [24, 168]) when the training rows hold two of them.
LONGER_SEASONS = {"1800s": (336, "weekly"), "3600s": (168, "weekly"), "D": (365, "yearly")}
# Calendar features init proposes (commented out) for a frequency: what its seasons are made of.
CALENDAR_FOR = {
    "MS": ["month"],
    "QS": ["month"],
    "W": ["dayofyear"],
    "D": ["weekday", "dayofyear"],
    "B": ["weekday", "dayofyear"],
    "3600s": ["hour", "weekday"],
    "1800s": ["hour", "weekday"],
    "900s": ["hour", "weekday"],
}
_SERIES_NAMES = {"id", "series", "unique_id", "series_id", "item_id", "item", "store", "sku", "key"}
_DATE_NAMES = {"date", "time", "datetime", "timestamp", "ds", "day", "week", "month", "year", "period"}


@dataclass
class Starter:
    """The chosen settings, the reasons, and the YAML text of the config."""

    csv: str
    out: Path
    date_column: str | None
    numeric: list[str]
    target: str
    features: list[str]
    frequency: str | None
    season: int
    lookback: int
    horizon: int
    rows: int
    missing: str
    transform: str = "none"
    longer_season: int | None = None  # proposed after season: data.season: [season, longer_season]
    lags: list[int] = field(default_factory=list)  # proposed data.lags
    m: int = 64
    date_format: str | None = None
    series_column: str | None = None
    series: int = 1  # series in a long-format file
    count_split: int | None = None  # split: {val: this, test: this} rows from each series' end
    categories: dict[str, list[str]] = field(default_factory=dict)  # proposed data.static_categories
    reasons: list[str] = field(default_factory=list)
    text: str = ""


SAMPLE_ROWS = 10_000  # rows that decide each column's kind; every row is still checked by read_table


@dataclass(frozen=True)
class Cells:
    """What init needs of a CSV: the header, the first rows as text, and counts over every row."""

    header: list[str]
    sample: list[list[str]]  # the first SAMPLE_ROWS data rows
    rows: int
    missing: list[int]  # empty or missing cells per column, over the whole file


def read_cells(path: str) -> Cells:
    """Stream the CSV once: keep a sample of rows, count the rows and the missing cells."""
    records = csv_records(path)
    header = header_of(path, records)
    sample: list[list[str]] = []
    missing = [0] * len(header)
    rows = 0
    for _, fields in records:
        rows += 1
        if len(sample) < SAMPLE_ROWS:
            sample.append(fields)
        for j, cell in enumerate(fields[: len(header)]):
            if cell.strip().lower() in MISSING_CELLS:
                missing[j] += 1
    if not rows:
        raise DataError(f"{path}: has a header but no data rows")
    return Cells(header, sample, rows, missing)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def date_formats_of(column: list[str]) -> list[str]:
    """The common non-ISO formats (``dates.COMMON_FORMATS``) every cell matches: one, or several
    when day-first and month-first both fit (every day at most 12)."""
    return [f for f in COMMON_FORMATS if parse_formatted(column, f) is not None]


@dataclass(frozen=True)
class Classified:
    date_column: str | None
    numeric: list[str]
    gaps: dict[str, int]  # empty cells per numeric column
    other: list[str]
    date_format: str | None  # the dates' format when they are not ISO
    ambiguous: tuple[str, list[str]] | None = None  # a column of dates whose format cannot be told


def classify(cells: Cells) -> Classified:
    """The date column, the numeric columns (and their empty cells), the others."""
    date_column, numeric, gaps, other = None, [], {}, []
    date_format, ambiguous = None, None
    for j, name in enumerate(cells.header):
        column = [r[j].strip() if j < len(r) else "" for r in cells.sample]
        present = [c for c in column if c.lower() not in MISSING_CELLS]
        if not present:
            other.append(name)
            continue
        numbers = all(_is_number(c) for c in present)
        # A numeric column is a date column only when named like one (years such as 1949 are numbers too).
        dated = parse_iso(column) is not None and (not numbers or name.lower() in _DATE_NAMES)
        formats = [] if dated or numbers or date_column is not None else date_formats_of(present)
        formatted = formats[0] if len(formats) == 1 else None
        if len(formats) > 1 and ambiguous is None:
            ambiguous = (name, formats)
        if (dated or formatted) and date_column is None:
            date_column, date_format = name, formatted
        elif numbers:
            numeric.append(name)
            gaps[name] = cells.missing[j]
        else:
            other.append(name)
    return Classified(date_column, numeric, gaps, other, date_format, ambiguous)


def _series_column(
    path: str, cells: Cells, date_column: str | None, numeric: list[str], other: list[str], given: str | None
) -> str | None:
    """The long format's series column: ``given`` (checked), else, when dates repeat, the first text
    column (or a numeric one named like an id) whose values repeat too."""
    if given is not None:
        if given not in cells.header:
            raise DataError(
                f"{path}: --series-column {given!r} is not in the file; columns are: {', '.join(cells.header)}"
            )
        if given == date_column:
            raise DataError(f"{path}: --series-column {given!r} is the date column")
        return given
    if date_column is None:
        return None
    j = cells.header.index(date_column)
    dates = [r[j].strip() for r in cells.sample if j < len(r)]
    if len(set(dates)) == len(dates):
        return None
    for name in [*other, *(c for c in numeric if c.lower() in _SERIES_NAMES)]:
        k = cells.header.index(name)
        if len({r[k].strip() for r in cells.sample if k < len(r)}) < len(cells.sample):
            return name
    raise DataError(
        f"{path}: dates in {date_column} repeat, as in a long-format file, but no column names the series; "
        "pass --series-column COL"
    )


def propose(
    csv_path: str | Path,
    out: str | Path,
    target: str | None = None,
    features: list[str] | None = None,
    series_column: str | None = None,
) -> Starter:
    """Choose date column, target, features, s, L and H for ``csv_path``; build the YAML text."""
    path = str(csv_path)
    cells = read_cells(path)
    found = classify(cells)
    date_column, numeric, gaps, other, date_format = (
        found.date_column,
        found.numeric,
        found.gaps,
        found.other,
        found.date_format,
    )
    reasons: list[str] = []
    if date_format:
        reasons.append(f"date_format: {date_format}, the one common format every date in {date_column} matches")
    if found.ambiguous and date_column is None:
        name, formats = found.ambiguous
        reasons.append(
            f"{name} holds dates that read as {' or as '.join(formats)} (no day above 12 tells which): set "
            "data.date_format and date_column in the config"
        )
    series_column = _series_column(path, cells, date_column, numeric, other, series_column)
    if series_column is not None:
        other = [c for c in other if c != series_column]
        numeric = [c for c in numeric if c != series_column]
    target = _choose_target(path, cells.header, numeric, date_column, target, reasons)
    candidates = [c for c in numeric if c != target]
    features = _choose_features(path, candidates, features, reasons)
    categories = _static_categories(cells, series_column, other)
    if categories:
        reasons.append(
            f"static categories proposed (commented out): {', '.join(categories)}, text constant within each "
            "series, one-hot inputs a global model tells series apart by"
        )
    other = [c for c in other if c not in categories]
    if other:
        reasons.append(f"ignored (not numeric): {', '.join(other)}")
    columns = [target, *features]
    missing = "interpolate" if any(gaps[c] for c in columns) else "error"
    if missing == "interpolate":
        holes = ", ".join(f"{c} ({gaps[c]})" for c in columns if gaps[c])
        reasons.append(f"missing: interpolate, because of empty cells in {holes}")

    # every cell and date checked as train will
    try:
        table = read_table(path, columns, date_column, missing, series_column, date_format)
    except GapError as gap:
        if missing != "error" or gap.count > max(1, cells.rows // 100):  # a few rows (a clock change), not weeks
            raise
        missing = "interpolate"
        table = read_table(path, columns, date_column, missing, series_column, date_format)
        where = "" if gap.where == path else f" of {gap.where.removeprefix(path + ': ')}"
        reasons.append(
            f"missing: interpolate, because the dates{where} skip {gap.count:,} timestamp(s) (the first "
            f"{gap.first}); train fills them and counts them in its summary"
        )
    parts = table.series_parts()
    lengths = np.array([stop - start for _, start, stop in parts])
    _, lo, hi = parts[int(np.argmax(lengths))]  # the longest series judges the frequency and the transform
    if series_column is not None:
        reasons.append(
            f"series column {series_column}: {len(parts):,} series of {lengths.min():,} to {lengths.max():,} rows "
            f"(median {int(np.median(lengths)):,}); one global model over all of them"
        )
    frequency = infer_frequency(None if table.dates is None else table.dates[lo:hi])
    season = _choose_season(date_column, frequency, reasons)
    typical = int(np.median(lengths))
    count_split = None
    lookback, horizon = _default_window(season, reasons)
    held_out = int(0.85 * typical) - int(0.70 * typical)  # a 70/15/15 split's validation rows
    if series_column is not None and held_out < horizon:
        horizon = max(1, min(horizon, typical // 4))
        lookback = max(1, min(lookback, typical - 2 * horizon))
        count_split = horizon
        reasons.append(
            f"split: the last {horizon} rows of each series are its test, the {horizon} before them its validation, "
            f"as in the forecasting competitions (a 70/15/15 split of the median series' {typical} rows would hold "
            f"out {held_out} for validation, too few for a window); L = {lookback}, H = {horizon}"
        )
    else:
        lookback, horizon = _fit_length(typical, lookback, horizon, reasons)
    if season > max(lookback, int(0.70 * typical)):
        reasons.append(
            f"s = 1 after all: the series is too short to look {season} steps back from the validation split"
        )
        season = 1
    transform = _choose_transform(table.values[lo:hi, 0], season, reasons)
    train_rows = lengths - 2 * count_split if count_split else (0.70 * lengths).astype(int)
    # the shortest series: every series must hold the longer season before its validation split
    longer_season = _choose_longer_season(frequency, season, int(np.min(train_rows)), reasons)
    lags = _choose_lags(table.values[lo:hi, 0], season, longer_season, reasons)
    m = choose_size(int(np.clip(train_rows - lookback - horizon + 1, 0, None).sum()), reasons)

    out_path = Path(out)
    data_rel = os.path.relpath(Path(path).resolve(), out_path.resolve().parent)
    st = Starter(
        csv=path,
        out=out_path,
        date_column=date_column,
        numeric=numeric,
        target=target,
        features=features,
        frequency=frequency,
        season=season,
        lookback=lookback,
        horizon=horizon,
        rows=table.n_rows,
        missing=missing,
        transform=transform,
        longer_season=longer_season,
        lags=lags,
        m=m,
        reasons=reasons,
        date_format=date_format,
        series_column=series_column,
        series=len(parts),
        count_split=count_split,
        categories=categories,
    )
    st.text = render(st, data_rel, candidates)
    cfg = validate_config(parse_yaml(st.text, str(out_path)), str(out_path))  # what train will accept
    prepare(table, cfg.data)  # the split and season checks train makes
    return st


MAX_PROPOSED_VALUES = 20  # a text column with more values per file is an id or a label, not a category


def _static_categories(cells: Cells, series_column: str | None, other: list[str]) -> dict[str, list[str]]:
    """Text columns of a long-format file that hold one value per series in the sampled rows, with
    their values (at most MAX_PROPOSED_VALUES, more than one): what data.static_categories takes."""
    if series_column is None:
        return {}
    key = cells.header.index(series_column)
    found: dict[str, list[str]] = {}
    for name in other:
        j = cells.header.index(name)
        per_series: dict[str, str] = {}
        constant = True
        for fields in cells.sample:
            if len(fields) <= max(j, key):
                continue
            value = fields[j].strip()
            if per_series.setdefault(fields[key].strip(), value) != value or not value:
                constant = False
                break
        values = sorted(set(per_series.values()))
        if constant and 1 < len(values) <= MAX_PROPOSED_VALUES and len(values) < len(per_series):
            found[name] = values
    return found


def _choose_target(
    path: str, header: list[str], numeric: list[str], date_column: str | None, target: str | None, reasons: list[str]
) -> str:
    if not numeric:
        raise DataError(f"{path}: no numeric column to forecast; columns are: {', '.join(header)}")
    if target is None:
        reasons.append(f"target {numeric[0]}: the first numeric column (choose another with --target)")
        return numeric[0]
    if target not in numeric:
        why = (
            "is the date column"
            if target == date_column
            else "is not a numeric column"
            if target in header
            else "is not in the file"
        )
        raise DataError(f"{path}: --target {target!r} {why}; numeric columns are: {', '.join(numeric)}")
    reasons.append(f"target {target}: as asked")
    return target


def _choose_features(path: str, candidates: list[str], features: list[str] | None, reasons: list[str]) -> list[str]:
    if features is None:
        if candidates:
            reasons.append(
                f"features: none; the other numeric column(s) {', '.join(candidates)} are left out, because a run "
                "with covariates needs their future values to forecast beyond one horizon (predict --future); "
                "add them with --feature COL when they help"
            )
        return []
    bad = [f for f in features if f not in candidates]
    if bad:
        raise DataError(
            f"{path}: --feature {bad[0]!r} is not another numeric column; choose from: {', '.join(candidates)}"
        )
    reasons.append(f"features: {', '.join(features)} (as asked): inputs besides the target")
    return features


def _choose_season(date_column: str | None, frequency: str | None, reasons: list[str]) -> int:
    if date_column is None:
        season, why = 1, "no date column, so no seasonal period is assumed (set data.season if there is one)"
    elif frequency in SEASONS:
        season, name = SEASONS[frequency]
        why = f"dates in {date_column} are {name}" + (
            f", so the seasonal period is {season}" if season > 1 else ", so no seasonal period"
        )
    else:
        season, why = 1, f"dates in {date_column} step by {frequency}, which has no standard seasonal period"
    reasons.append(f"s = {season}: {why}")
    return season


def _choose_longer_season(frequency: str | None, season: int, train_rows: int, reasons: list[str]) -> int | None:
    """The longer season of sub-daily and daily data (weekly, yearly), when the training rows hold
    two of them: scored as a baseline of its own beside seasonal naive with s."""
    if season == 1 or frequency not in LONGER_SEASONS:
        return None
    longer, what = LONGER_SEASONS[frequency]
    if train_rows < 2 * longer:
        reasons.append(
            f"a {what} season of {longer} steps exists too, but the {train_rows:,} training rows hold fewer than "
            f"two of them, so it is left out (set data.season: [{season}, {longer}] to score it anyway)"
        )
        return None
    reasons.append(
        f"season: [{season}, {longer}]: a {what} season of {longer} steps too (the {train_rows:,} training rows "
        f"hold {train_rows // longer} of them); the summary scores seasonal naive with each"
    )
    return longer


def _choose_lags(target: np.ndarray, season: int, longer: int | None, reasons: list[str]) -> list[int]:
    """[longer] when copying the longer season beat copying s on the first 85% of the rows (never
    the test rows): the model then reads the target one longer season back for each step ahead."""
    if longer is None:
        return []
    values = target[: int(0.85 * len(target))]
    short, long = (float(np.abs(values[p:] - values[:-p]).mean()) for p in (season, longer))
    if long < short:
        reasons.append(
            f"lags: [{longer}]: the model reads the target {longer} steps back for each step ahead (1 input, known "
            f"for the horizon), because copying that season was closer than copying s = {season} on the rows "
            f"before the test split (mean absolute difference {long:.4g} against {short:.4g})"
        )
        return [longer]
    reasons.append(
        f"lags: none: copying the {longer}-step season was no closer than copying s = {season} on the rows before "
        f"the test split ({long:.4g} against {short:.4g}); set lags: [{longer}] and add 1 to n to try it anyway"
    )
    return []


def _choose_transform(target: np.ndarray, season: int, reasons: list[str]) -> str:
    """log for a positive series whose seasonal swing grows with its level (multiplicative
    seasonality, as AirPassengers'): judged on the first 85% of the rows, never the test rows."""
    values = target[: int(0.85 * len(target))]
    cycles = len(values) // season if season > 1 else 0
    if cycles < 4 or not np.all(values > 0):
        return "none"
    v = values[: cycles * season].reshape(cycles, season)
    level, swing = v.mean(axis=1), v.max(axis=1) - v.min(axis=1)
    if level.max() < 1.5 * level.min() or np.ptp(swing) == 0:
        return "none"  # a level that hardly moves says nothing about the swing
    r = float(np.corrcoef(level, swing)[0, 1])
    if r <= 0.6:
        return "none"
    reasons.append(
        f"transform: log, because the series is positive and its seasonal swing grows with its level "
        f"(correlation {r:.2f} between each cycle's mean and its range): multiplicative seasonality"
    )
    return "log"


def choose_size(windows: int, reasons: list[str] | None = None) -> int:
    """m for ``windows`` training windows. The default (64 units, 51,000 parameters for one input)
    suits thousands of windows; a short series gets 16 units (about 3,500 parameters), which it can
    fit. (The batch follows the windows at training time: train.batch_size: auto.)"""
    m = ModelConfig.model_fields["m"].default
    if windows < SMALL_DATA_WINDOWS:
        m = SMALL_DATA_UNITS
        if reasons is not None:
            reasons.append(
                f"m = {m}: about {max(windows, 0):,} training windows, too few for the default m = 64 "
                "(51,000 parameters) to learn from"
            )
    return m


def _default_window(season: int, reasons: list[str]) -> tuple[int, int]:
    if season > 1:
        lookback, horizon = min(2 * season, 48), min(season, 24)
        reasons.append(f"L = min(2s, 48) = {lookback} input steps, H = min(s, 24) = {horizon} forecast steps")
    else:
        lookback, horizon = 16, 4
        reasons.append("L = 16 input steps, H = 4 forecast steps (the defaults without a season)")
    return lookback, horizon


def _fit_length(rows: int, lookback: int, horizon: int, reasons: list[str]) -> tuple[int, int]:
    """Shrink H, then L, until the default 70/15/15 split gives every split a window."""
    train_rows = int(0.70 * rows)
    eval_rows = min(int(0.85 * rows) - train_rows, rows - int(0.85 * rows))  # validation and test
    L, H = lookback, max(1, min(horizon, eval_rows))
    while L > 1 and L + H > train_rows:
        L = max(1, L // 2)
    if L + H > train_rows or H > eval_rows:
        raise DataError(
            f"{rows} rows are too few for a train/validation/test split with any window; use a longer series"
        )
    if (L, H) != (lookback, horizon):
        changed = [f"{name} = {new}" for name, old, new in (("L", lookback, L), ("H", horizon, H)) if new != old]
        reasons.append(
            f"shortened to {', '.join(changed)}: {rows} rows must leave a window in each of train, validation and test"
        )
    return L, H


def render(st: Starter, data_path: str, candidates: list[str]) -> str:
    """The config as commented YAML; training settings are left at their defaults."""
    n = 1 + len(st.features) + len(st.lags)
    layers = ModelConfig.model_fields["layers"].default
    lagged = f" and {len(st.lags)} lag" if st.lags else ""
    lines = [
        f"# Starter config written by `lstm init` for {Path(st.csv).name} ({st.rows} rows).",
        "# Train it with `lstm train` on this file; every key is documented in the README.",
        "model:",
        f"  n: {n}            # inputs per time step: the target plus {len(st.features)} feature column(s){lagged}",
        f"  m: {st.m}           # units per layer",
        f"  layers: {layers}",
        "data:",
        f"  path: {_yaml_str(data_path)}   # relative to this config file",
    ]
    if st.date_column:
        lines.append(f"  date_column: {_yaml_str(st.date_column)}")
    if st.date_format:
        lines.append(f"  date_format: {json.dumps(st.date_format)}")
    if st.series_column:
        lines.append(f"  series_column: {_yaml_str(st.series_column)}   # {st.series:,} series, one global model")
    lines.append(f"  target: {_yaml_str(st.target)}")
    feats = "[" + ", ".join(_yaml_str(f) for f in st.features) + "]"
    unused = [c for c in candidates if c not in st.features]
    lines.append(f"  features: {feats}" + (f"   # other numeric columns: {', '.join(unused)}" if unused else ""))
    if st.categories:
        spec = ", ".join(f"{_yaml_str(c)}: [{', '.join(_yaml_str(v) for v in vs)}]" for c, vs in st.categories.items())
        count = sum(len(vs) for vs in st.categories.values())
        lines.append(
            f"  # static_categories: {{{spec}}}   # text constant within each series, one-hot: add {count} to n"
        )
    lines += [
        f"  lookback: {st.lookback}       # L: input steps per window",
        f"  horizon: {st.horizon}        # H: forecast steps per window",
        f"  season: {st.season}         # s: seasonal period for the seasonal-naive baseline (1 = none)"
        if st.longer_season is None
        else f"  season: [{st.season}, {st.longer_season}]   # s, then a longer season: seasonal naive with each",
    ]
    if st.lags:
        lines.append(f"  lags: {st.lags}   # the target this many steps back, for each step ahead: 1 input each")
    elif st.longer_season:
        lines.append(
            f"  # lags: [{st.longer_season}]   # the target a longer season back, for each step ahead: add 1 to n"
        )
    suggested = CALENDAR_FOR.get(st.frequency or "")
    if suggested:
        lines.append(
            f"  # calendar: [{', '.join(suggested)}]   # known-future inputs from the dates: add {2 * len(suggested)} to n"
        )
        lines.append(
            "  # holidays: US   # a country's public holidays, known ahead: add 1 to n (pip install 'lstmcli[holidays]')"
        )
    if st.count_split:
        lines.append(f"  split: {{val: {st.count_split}, test: {st.count_split}}}   # rows from each series' end")
    if st.missing != "error":
        lines.append(f"  missing: {st.missing}")
    if st.transform != "none":
        lines.append(f"  transform: {st.transform}")
    lines += ["train:", "  epochs: 200", "  seed: 0", ""]
    return "\n".join(lines)


def _yaml_str(value: str) -> str:
    """A plain YAML scalar for simple names and paths, else a quoted (JSON) string."""
    plain = value.replace("_", "").replace("-", "").replace(".", "").replace("/", "").isalnum()
    # Quote anything YAML would read as another type or value: on, yes, null, 1, 1e3, ...
    return value if plain and yaml.safe_load(value) == value else json.dumps(value)


def write(st: Starter, force: bool = False) -> None:
    """Write the config atomically; never replace an existing file without ``force``."""
    if st.out.exists() and not force:
        raise ConfigError(f"{st.out}: already exists; pass --force to replace it, or choose another --out")
    if st.out.is_dir():
        raise ConfigError(f"{st.out}: is a directory; --out takes a file name")
    st.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(st.out, st.text)


def default_out(csv_path: str | Path) -> Path:
    """``<csv name>.yaml`` in the working directory."""
    return Path(Path(csv_path).stem + ".yaml")
