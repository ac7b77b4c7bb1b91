"""New data read with a trained run's columns, scaled with the scaler stored at training (never refitted)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lstmcli.data.categories import read_categories
from lstmcli.data.dataset import Scaler, check_log_positive, model_columns
from lstmcli.data.reader import Table, read_header, read_table
from lstmcli.errors import CheckpointError, DataError
from lstmcli.runs.run import Run
from lstmcli.runs.schema import SeriesMeta


@dataclass(frozen=True)
class Series:
    """A CSV read with a run's columns and scaled with the run's stored scaler."""

    table: Table  # original units, columns in model order (targets first)
    scaled: np.ndarray  # (N, n) float32, exactly as train scales its series
    scaler: Scaler
    id: str | None = None  # the series id in a multi-series (long-format) run
    stored: SeriesMeta | None = None  # what meta.json recorded of this series in training


def read_series(run: Run, path: str | Path, min_rows: int, purpose: str, only: str | None = None) -> list[Series]:
    """Read the run's columns from ``path`` (any order) and scale them with the stored scaler(s).

    The run's date column is used when the file has it; without it, rows are numbered. A
    multi-series run reads the file in long format and returns every series (or ``only`` one),
    each scaled with the statistics that series had in training.
    """
    cfg = run.cfg.data
    path = str(path)
    header = read_header(path)
    keys = [cfg.series_column] if cfg.series_column else []
    missing = [c for c in [*keys, *cfg.file_columns, *cfg.static_categories] if c not in header]
    if missing:
        kinds = (
            ("features", cfg.features),
            ("static features", cfg.static_features),
            ("static categories", list(cfg.static_categories)),
            ("known-future features", cfg.future_features),
            ("series column", keys),
        )
        listed = "".join(f"; {name} {', '.join(cols)}" for name, cols in kinds if cols)
        raise DataError(
            f"{path}: lacks column(s) {', '.join(repr(c) for c in missing)} that run {run.path} was trained on "
            f"(target {', '.join(cfg.target)}{listed}); the file has: {', '.join(header)}"
        )
    if only is not None and not cfg.series_column:
        raise DataError(f"--series {only}: run {run.path} was trained on a single series (no data.series_column)")
    date_column = cfg.date_column if cfg.date_column in header else None
    generated = cfg.generated_columns
    if generated and date_column is None:
        raise DataError(
            f"{path}: lacks the date column '{cfg.date_column}', from which run {run.path} computes its inputs "
            f"{', '.join(generated)}"
        )
    table = read_table(path, cfg.file_columns, date_column, cfg.missing, cfg.series_column, cfg.date_format)
    if generated or cfg.static_categories or cfg.lags:
        read = model_columns(
            table.column, cfg, table.dates, table.series_parts(), read_categories(path, cfg, only), table.n_rows
        )
        values = np.column_stack([read(j) for j in range(len(cfg.columns))])
        table = replace(table, columns=list(cfg.columns), values=values)
    parts = table.series_parts()
    if only is not None:
        parts = [p for p in parts if p[0] == only]
        if not parts:
            found = ", ".join(str(p[0]) for p in table.series_parts())
            raise DataError(f"{path}: has no rows of series '{only}' (column '{cfg.series_column}'); it has: {found}")
    result = []
    for sid, start, stop in parts:
        part = (
            table
            if sid is None
            else replace(
                table,
                path=f"{path}: series '{sid}'",
                values=table.values[start:stop],
                dates=None if table.dates is None else table.dates[start:stop],
                parts=None,
            )
        )
        if part.n_rows < min_rows:
            raise DataError(f"{part.path}: has {part.n_rows} row(s), but {purpose}")
        stored = stored_series(run, sid)
        scaler = stored_scaler(run, stored)
        check_log_positive(
            part.path,
            part.columns,
            part.values,
            scaler.log,
            "but the run models this column as log(x) (data.transform: log)",
        )
        scaled = scaler.to_float32(part.path, part.columns, part.values)  # as data.prepare scales
        result.append(Series(table=part, scaled=scaled, scaler=scaler, id=sid, stored=stored))
    return result


def stored_series(run: Run, sid: str | None) -> SeriesMeta:
    """meta.json's record of series ``sid`` (scaler, split rows, dates); id None for a single series."""
    for entry in run.meta.series:
        if entry.id == sid:
            return entry
    if sid is None:
        raise CheckpointError(f"{run.path / 'meta.json'}: records no single series (the run was trained on several)")
    trained = ", ".join(str(e.id) for e in run.meta.series)
    raise DataError(
        f"series '{sid}' was not in the training data of run {run.path} (trained on: {trained}); "
        "its scaling statistics are unknown, so the run cannot forecast it"
    )


def stored_scaler(run: Run, stored: SeriesMeta) -> Scaler:
    """The scaler fitted on one series' training rows, as recorded in meta.json."""
    scaler = Scaler.from_dict(stored.scaler.model_dump())
    n = run.cfg.model.n
    if not (scaler.mean.shape == scaler.std.shape == scaler.log.shape == (n,)):
        raise CheckpointError(f"{run.path / 'meta.json'}: scaler statistics are not for n = {n} columns")
    if not (np.isfinite(scaler.mean).all() and np.isfinite(scaler.std).all() and (scaler.std > 0).all()):
        raise CheckpointError(f"{run.path / 'meta.json'}: scaler statistics must be finite, with positive std")
    return scaler
