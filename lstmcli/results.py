"""What a trained run predicts: forecasts after the data, backtests from every origin, and their
files (CSV, JSON). Produced by ``commands.predict``, drawn by ``plots``, printed by ``cli``. And
what its gates do on a window of data (``commands.trace_run``, ``lstm inspect --trace``)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from lstmcli.data.dates import format_dates
from lstmcli.evaluate import IntervalSums, IntervalTable, Scores, SplitScores
from lstmcli.model.gate_trace import LayerActivity, TraceCheck
from lstmcli.model.gates import LayerTrace


@dataclass(frozen=True)
class Forecast:
    """The next ``steps`` values of every target after the last row of the data."""

    run: Path
    data: str
    targets: list[str]
    date_column: str | None
    history_index: np.ndarray  # (N,) dates, or row numbers 1..N without dates
    history: np.ndarray  # (N, k) targets in original units
    index: np.ndarray  # (K,) dates continued at the series' frequency, or steps 1..K
    values: np.ndarray  # (K, k) forecasts in original units
    frequency: str | None
    horizon: int  # H: steps per model call
    recursive: bool  # True when forecasts were fed back in (K > H)
    series: str | None = None
    # level (%) -> (lower, upper), each (K, k) original units: split-conformal prediction intervals
    intervals: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # a quantile run's own forecast quantiles, τ -> (K, k) original units (K ≤ H: one model call)
    quantiles: dict[float, np.ndarray] = field(default_factory=dict)

    def columns(self) -> list[tuple[str, np.ndarray]]:
        """The columns beside the point forecasts, each (K,): per target the quantiles ``q10``,
        ``q90``, ... (not q50: the point forecast is the median), then ``lower_80``, ``upper_80``, ... (prefixed by the target when there are several)."""
        cols = []
        for j, t in enumerate(self.targets):
            pre = f"{t}_" if len(self.targets) > 1 else ""
            cols += [(f"{pre}q{100 * tau:g}", q[:, j]) for tau, q in self.quantiles.items() if tau != 0.5]
            for lv, (lo, hi) in self.intervals.items():
                cols += [(f"{pre}lower_{lv}", lo[:, j]), (f"{pre}upper_{lv}", hi[:, j])]
        return cols

    def index_labels(self) -> list[str]:
        return (
            format_dates(self.index, like=self.history_index) if self.date_column else [str(int(i)) for i in self.index]
        )

    def last_label(self) -> str | None:
        """The date of the last row of the data (None without dates)."""
        return format_dates(self.history_index[-1:], like=self.history_index)[0] if self.date_column else None

    def to_dict(self) -> dict[str, Any]:
        last = self.last_label()
        return {
            "run": str(self.run),
            "data": self.data,
            "rows": int(self.history.shape[0]),
            "last_date": last,
            "frequency": self.frequency,
            "horizon": self.horizon,
            "steps": int(self.values.shape[0]),
            "recursive": self.recursive,
            "index_name": self.date_column or "step",
            "index": self.index_labels(),
            "forecast": {t: self.values[:, j].tolist() for j, t in enumerate(self.targets)},
            **(
                {
                    "intervals": {
                        str(lv): {
                            "lower": {t: lo[:, j].tolist() for j, t in enumerate(self.targets)},
                            "upper": {t: hi[:, j].tolist() for j, t in enumerate(self.targets)},
                        }
                        for lv, (lo, hi) in self.intervals.items()
                    }
                }
                if self.intervals
                else {}
            ),
            **(
                {
                    "quantiles": {
                        f"{tau:g}": {t: q[:, j].tolist() for j, t in enumerate(self.targets)}
                        for tau, q in self.quantiles.items()
                    }
                }
                if self.quantiles
                else {}
            ),
        }

    def to_csv(self) -> str:
        """A date (or step) column, one column per target, then the quantiles and the intervals' bounds."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        extra = self.columns()
        writer.writerow([self.date_column or "step", *self.targets, *(name for name, _ in extra)])
        for i, (label, row) in enumerate(zip(self.index_labels(), self.values, strict=True)):
            writer.writerow([label, *(repr(float(v)) for v in row), *(repr(float(c[i])) for _, c in extra)])
        return buf.getvalue()


@dataclass(frozen=True)
class Backtest:
    """Forecasts from every chosen origin of a file, scored like ``train``'s evaluation."""

    run: Path
    data: str
    targets: list[str]
    date_column: str | None
    split: str  # all | train | val | test
    split_source: str  # how the origins were chosen, in words
    history_index: np.ndarray  # (N,) dates or row numbers 1..N
    history: np.ndarray  # (N, k) targets in original units
    origins: np.ndarray  # (W,) row of each window's first target
    forecasts: np.ndarray  # (W, H, k) original units
    metrics: SplitScores  # as metrics.json's "test": model, naive, seasonal_naive (+ per_target)
    scores: Scores  # the sums behind ``metrics``, for pooling over series
    split_rows: tuple[int, int] = (0, 0)  # the rows where the val and the test split start
    series: str | None = None
    intervals: dict[str, IntervalTable] | None = None  # with --level: the calibrated intervals' scores
    interval_sums: IntervalSums | None = None  # the sums behind ``intervals``, for pooling over series

    @property
    def horizon(self) -> int:
        return int(self.forecasts.shape[1])

    def origin_labels(self) -> tuple[str, str]:
        """The date (or 1-based row) of the first and the last origin."""
        first, last = (self._label(int(o)) for o in self.origins[[0, -1]])
        return first, last

    def to_dict(self) -> dict[str, Any]:
        first, last = self.origin_labels()
        return {
            "run": str(self.run),
            "data": self.data,
            "split": self.split,
            "split_source": self.split_source,
            "windows": int(self.origins.size),
            "horizon": self.horizon,
            "first_origin": first,
            "last_origin": last,
            "metrics": self.metrics.to_dict(),
            **(
                {"intervals": {lv: t.model_dump(mode="json") for lv, t in self.intervals.items()}}
                if self.intervals
                else {}
            ),
        }

    def _label(self, row: int) -> str:
        """The date (or 1-based row number) of row ``row``."""
        if self.date_column:
            return format_dates(self.history_index[row : row + 1], like=self.history_index)[0]
        return str(int(self.history_index[row]))

    def to_csv(self) -> str:
        """One row per origin and step: origin, h, date (or row), and forecast and actual per target."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        where = self.date_column or "row"
        cols = [c for t in self.targets for c in (t, f"{t}_actual")]
        writer.writerow([f"origin_{where}", "h", where, *cols])
        labels = format_dates(self.history_index) if self.date_column else [str(int(i)) for i in self.history_index]
        for w, o in enumerate(self.origins):
            for h in range(self.horizon):
                cells = [
                    repr(float(v))
                    for j in range(len(self.targets))
                    for v in (self.forecasts[w, h, j], self.history[o + h, j])
                ]
                writer.writerow([labels[o], h + 1, labels[o + h], *cells])
        return buf.getvalue()


@dataclass(frozen=True)
class Results:
    """Forecasts or backtests of every series in the file (one for a single-series run)."""

    items: list[Any]  # Forecast or Backtest, one per series
    series_column: str | None  # set for a multi-series run
    metrics: SplitScores | None = None  # backtests: pooled over all series, as metrics.json
    intervals: dict[str, IntervalTable] | None = None  # backtests with --level: pooled over all series

    def to_dict(self) -> dict[str, Any]:
        if self.series_column is None:
            return self.items[0].to_dict()
        d: dict[str, Any] = {"series_column": self.series_column, "series": {i.series: i.to_dict() for i in self.items}}
        if self.metrics is not None:
            d["metrics"] = self.metrics.to_dict()
        if self.intervals is not None:
            d["intervals"] = {lv: t.model_dump(mode="json") for lv, t in self.intervals.items()}
        return d

    def to_csv(self) -> str:
        """One item's CSV; several series in long format, the series column first."""
        if self.series_column is None:
            return self.items[0].to_csv()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for n, item in enumerate(self.items):
            header, *rows = csv.reader(io.StringIO(item.to_csv()))
            if n == 0:
                writer.writerow([self.series_column, *header])
            writer.writerows([item.series, *row] for row in rows)
        return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# A trace of the gates (lstm inspect --trace)


class TraceWindow(BaseModel):
    """The traced window (the last of them with --windows), in the CSV's rows and dates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: str
    series: str | None = None
    index: int  # 0-based: window K covers rows K+1 … K+L (1-based)
    count: int  # full windows in the file: N − L + 1
    traced: int  # windows traced, ending with this one
    first_row: int  # 1-based
    last_row: int
    first_date: str | None = None
    last_date: str | None = None
    steps: int  # L


class TraceFacts(BaseModel):
    """What ``--trace`` found: the window, the check against the fused layer, the per-layer summaries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: TraceWindow
    lookback: int
    season: int
    check: TraceCheck
    layers: list[LayerActivity]


@dataclass(frozen=True)
class Traced:
    """The traced window's arrays, for the plot: one window, (L, ·) each."""

    facts: TraceFacts
    run: str
    index: np.ndarray  # (L,) dates, or 1-based row numbers without a date column
    dated: bool
    columns: list[str]  # the model's input columns, targets first
    targets: int  # k
    values: np.ndarray  # (L, n) original units
    lstm_input: np.ndarray  # (L, n) what the first layer reads: scaled, window-normalised
    layers: list[LayerTrace]  # (1, L, m) tensors of the plotted window
