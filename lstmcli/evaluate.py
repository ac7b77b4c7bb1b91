"""Forecast every window of a split and score it against naive baselines, in original units."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from lstmcli.data.dataset import Dataset, Scaler
from lstmcli.data.windows import Windows
from lstmcli.intervals import band, conformal_radius, conformity, pinball_loss, windows_needed
from lstmcli.model.forecaster import LSTMForecaster
from lstmcli.model.theta import theta_forecast

METRICS = ("MAE", "RMSE", "sMAPE", "MASE", "relMAE")


class _Scores(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ForecastScores(_Scores):
    """One forecast's errors in original units (None where undefined).

    MASE (Hyndman & Koehler 2006): the MAE over the in-sample MAE of the seasonal naive forecast on
    the series' training rows (its mean absolute seasonal difference), so below 1 beats what copying
    last season did in-sample; over several series, the mean of the per-series MASE (the M3/M4
    convention). relMAE: the MAE over seasonal naive's MAE on these very windows (below 1 beats it).
    """

    MAE: float | None
    RMSE: float | None
    sMAPE: float | None
    MASE: float | None
    relMAE: float | None


class TargetScores(_Scores):
    """The model and the baselines, on the same windows: naive, seasonal naive with the season s,
    and, with longer seasons (data.season: [24, 168]), seasonal naive with each of them."""

    model: ForecastScores
    naive: ForecastScores
    seasonal_naive: ForecastScores
    longer_seasons: dict[str, ForecastScores] | None = None  # by period: {"168": ...}

    def baselines(self) -> list[tuple[str, ForecastScores]]:
        """Each baseline with its label: seasonal naive, then at each longer season, then naive."""
        longer = [(forecast_label(longer_name(int(p))), f) for p, f in (self.longer_seasons or {}).items()]
        return [("seasonal naive", self.seasonal_naive), *longer, ("naive", self.naive)]


class SeriesMeans(_Scores):
    """A forecast's per-series MASE and sMAPE, averaged over series (the competitions' figures)."""

    MASE: float | None
    sMAPE: float | None


class SplitScores(TargetScores):
    """A split's scores pooled over every window, per target when there are several, per series
    (and averaged over series) when there are several, as metrics.json holds them."""

    per_target: dict[str, TargetScores] | None = None
    per_series: dict[str, SplitScores] | None = None
    series_means: dict[str, SeriesMeans] | None = None

    def series_mean_rows(self) -> list[tuple[str, SeriesMeans]]:
        """``series_means`` labelled, in the order scored: LSTM, naive, seasonal naive, longer seasons."""
        return [(forecast_label(name), m) for name, m in (self.series_means or {}).items()]

    def to_dict(self) -> dict[str, Any]:
        """As JSON, without the parts that a single target or series lacks."""
        return self.model_dump(mode="json", exclude_defaults=True)


def mase_scale(train: np.ndarray, season: int) -> np.ndarray:
    """(k,) in-sample MAE of the seasonal naive forecast on training rows (n, k): the mean of
    |y_t - y_(t-s)|; lag 1 when the training rows are no longer than a season."""
    lag = season if len(train) > season else 1
    if len(train) <= lag:
        return np.full(train.shape[1], np.nan)
    return np.abs(train[lag:] - train[:-lag]).mean(axis=0)


@torch.no_grad()
def forecast_scaled(
    model: nn.Module,
    windows: Windows,
    origins: np.ndarray,
    batch_size: int | None = None,
    quantiles: bool = False,
    theta: ThetaCombination | None = None,
) -> np.ndarray:
    """Model forecasts for ``origins`` in scaled units, shape (W, H, k), float64; with
    ``quantiles``, every forecast quantile, (W, H, k, Q) (Q = 1 for a point model). With
    ``theta``, the forecast is the network's averaged with Theta's (:func:`combined`)."""
    batch_size = batch_size or windows.eval_chunk()
    was_training = model.training
    model.eval()
    device = windows.series.device
    out = []
    for start in range(0, len(origins), batch_size):
        o = torch.as_tensor(origins[start : start + batch_size], device=device)
        x = windows.inputs(o)
        out.append((model(x, quantiles=True) if quantiles else model(x)).float().cpu())
    model.train(was_training)
    if not out:
        shape = (0, windows.out_offsets.numel(), windows.n_targets)
        return np.zeros((*shape, getattr(model, "outputs", 1)) if quantiles else shape)
    net = torch.cat(out).double().numpy()
    if theta is None:
        return net
    return combined(net, theta.scaled(origins), getattr(model, "median", 0) if quantiles else None)


def combined(net: np.ndarray, theta: np.ndarray, median: int | None = None) -> np.ndarray:
    """The network's forecast (W, H, k) averaged with Theta's (W, H, k), both in the model's
    units; a quantile forecast (W, H, k, Q) (``median``: the point forecast's index) has every
    quantile moved by half of Theta's distance from its median. Where Theta has no forecast
    (NaN), the network's stands alone."""
    point = net if median is None else net[..., median]
    shift = np.where(np.isfinite(theta), 0.5 * (theta - point), 0.0)
    return net + (shift if median is None else shift[..., None])


# Theta reads this many seasons of each window's history, at least THETA_MIN_ROWS rows and at
# most THETA_MAX_ROWS: enough for its decomposition (two seasons) and trend, and a bound on the cost
# of a window (its seasonality test is O(s · rows)): about 0.5 ms at s = 365, 0.05 ms at s = 12.
THETA_SEASONS = 10
THETA_MIN_ROWS = 100
THETA_MAX_ROWS = 1000
THETA_BATCH = 4096  # histories per theta_forecast call: its SES holds (batch, 100) levels
# Forecasts kept per origin, so that an evaluation's several passes over the same windows (the
# choice, the calibration, the scores) fit Theta once: 200,000 × H × k floats (38 MB at H·k = 24).
THETA_MEMO = 200_000


def theta_rows(season: int) -> int:
    """The rows of history before an origin that Theta is fitted to, at most."""
    return min(max(THETA_SEASONS * season, THETA_MIN_ROWS), THETA_MAX_ROWS)


class ThetaCombination:
    """Theta's forecasts (for ``model.combine``) from window origins, in the model's units: each
    origin's history is the rows of its own series before it (the last :func:`theta_rows`), in
    original units, each target alone; the forecast is then scaled as its series' scaler scales
    the targets (a log run's Theta forecast that is not positive has no scaled value: NaN)."""

    def __init__(
        self, values: np.ndarray, starts: np.ndarray, scalers: list[Scaler], horizon: int, season: int
    ) -> None:
        """``values`` (N, k) the targets in original units; ``starts`` (S,) the first row of each
        series, increasing, and ``scalers`` theirs."""
        self.values = np.asarray(values, dtype=np.float64)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.scalers = scalers
        self.horizon, self.season = horizon, season
        self.rows = theta_rows(season)
        self._memo: dict[int, np.ndarray] = {}  # origin -> (H, k) forecast, original units

    @classmethod
    def of(cls, ds: Dataset, horizon: int, season: int) -> ThetaCombination:
        starts = np.array([s.start for s in ds.series], dtype=np.int64)
        return cls(ds.table.values[:, : ds.n_targets], starts, [s.scaler for s in ds.series], horizon, season)

    def forecast(self, origins: np.ndarray) -> np.ndarray:
        """(W, H, k) Theta's forecasts from ``origins`` in original units (NaN: no history, or
        one that is not finite), each origin fitted once."""
        known = np.array([int(o) in self._memo for o in origins], dtype=bool)
        out = np.empty((len(origins), self.horizon, self.values.shape[1]))
        if known.any():
            out[known] = np.stack([self._memo[int(o)] for o in origins[known]])
        if not known.all():
            fresh = self._fit(origins[~known])
            out[~known] = fresh
            for o, f in zip(origins[~known][: max(0, THETA_MEMO - len(self._memo))], fresh, strict=False):
                self._memo[int(o)] = f
        return out

    def _series(self, origins: np.ndarray) -> np.ndarray:
        """(W,) the series of each origin, as positions in ``starts``."""
        return np.searchsorted(self.starts, origins, side="right") - 1

    def _fit(self, origins: np.ndarray) -> np.ndarray:
        H, k = self.horizon, self.values.shape[1]
        length = np.minimum(origins - self.starts[self._series(origins)], self.rows)
        out = np.full((len(origins), H, k), np.nan)
        for n in np.unique(length[length > 0]):  # histories of one length form one batch
            sel = np.flatnonzero(length == n)
            for lo in range(0, len(sel), THETA_BATCH):
                part = sel[lo : lo + THETA_BATCH]
                hist = self.values[origins[part, None] - n + np.arange(n)]  # (w, n, k)
                flat = hist.transpose(0, 2, 1).reshape(-1, n)  # (w * k, n)
                ok = np.isfinite(flat).all(axis=1)
                f = np.full((len(flat), H), np.nan)
                with np.errstate(all="ignore"):  # a runaway fit is not finite, and left out below
                    f[ok] = theta_forecast(flat[ok], H, self.season)
                out[part] = f.reshape(len(part), k, H).transpose(0, 2, 1)
        return out

    def scaled(self, origins: np.ndarray) -> np.ndarray:
        """(W, H, k) Theta's forecasts from ``origins`` in the model's units (NaN where none)."""
        f = self.forecast(origins)
        z = np.full_like(f, np.nan)
        which = self._series(origins)
        order = np.argsort(which, kind="stable")
        targets = slice(0, f.shape[-1])
        for rows in np.split(order, np.flatnonzero(np.diff(which[order])) + 1) if len(order) else []:
            with np.errstate(all="ignore"):  # a log run's forecast that is not positive has no log
                z[rows] = self.scalers[which[rows[0]]].transform(f[rows], targets)
        return np.where(np.isfinite(z), z, np.nan)


def actuals(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """values (N, k) original units -> (W, H, k) targets of each window."""
    return values[origins[:, None] + np.arange(horizon)]


def naive(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """Repeat the last observed value y[o-1] for every step."""
    return np.repeat(values[origins - 1][:, None, :], horizon, axis=1)


def seasonal_offsets(horizon: int, season: int) -> np.ndarray:
    """(H,) row offsets from the origin of seasonal naive's step h = 1..H: -s + ((h - 1) mod s)."""
    return -season + (np.arange(horizon) % season)


def seasonal_naive(values: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Step h = 1..H takes y[o - s + ((h - 1) mod s)]: the same point one season earlier."""
    return values[origins[:, None] + seasonal_offsets(horizon, season)]


SCORE_CHUNK = 4096  # windows per forecast and partial sum: training and backtests chunk alike, so agree to the bit


def forecast_chunks(
    model: nn.Module, windows: Windows, scaler: Scaler, origins: np.ndarray, theta: ThetaCombination | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(origins, model forecast (W, H, k) in original units) in chunks of ``SCORE_CHUNK`` windows,
    so that scoring a split of millions of windows never holds all its forecasts."""
    for lo in range(0, len(origins), SCORE_CHUNK):
        chunk = origins[lo : lo + SCORE_CHUNK]
        forecast = forecast_scaled(model, windows, chunk, theta=theta)
        yield chunk, scaler.inverse(forecast, slice(0, windows.n_targets))


class Scores:
    """Running sums of |error|, error², the sMAPE terms and the count, per forecast and target.

    Metrics are means over every value, so sums added chunk by chunk (``SCORE_CHUNK`` windows at a
    time) and series by series give them without keeping the forecasts. ``scale`` (per target, the
    training rows' in-sample seasonal naive MAE, from :func:`mase_scale`) turns an MAE into a MASE;
    a pooled score keeps its series to average their MASE and sMAPE.
    """

    FORECASTS = ("model", "naive", "seasonal_naive")

    def __init__(self, n_targets: int, scale: np.ndarray | None = None, longer: tuple[int, ...] = ()) -> None:
        """``longer``: the seasons after s, each scored as a seasonal naive baseline of its own."""
        self.longer = longer
        self.names = (*self.FORECASTS, *(longer_name(p) for p in longer))
        self.sums = {name: np.zeros((4, n_targets)) for name in self.names}
        self.scale = np.full(n_targets, np.nan) if scale is None else np.asarray(scale, dtype=np.float64)
        self.parts: list[Scores] = []  # the series of a pooled score

    def add(self, actual: np.ndarray, forecasts: dict[str, np.ndarray]) -> Scores:
        """Add windows: ``actual`` and each forecast (W, H, k), original units."""
        for lo in range(0, len(actual), SCORE_CHUNK):
            a = actual[lo : lo + SCORE_CHUNK]
            self._add_chunk(a, {name: f[lo : lo + SCORE_CHUNK] for name, f in forecasts.items()})
        return self

    @np.errstate(invalid="ignore", over="ignore")  # a runaway (inf) forecast scores inf or NaN, without a warning
    def _add_chunk(self, a: np.ndarray, forecasts: dict[str, np.ndarray]) -> None:
        for name, f in forecasts.items():
            err = f - a
            denom = np.abs(a) + np.abs(f)
            smape = np.divide(200.0 * np.abs(err), denom, out=np.zeros_like(denom), where=denom > 0)
            part = [np.abs(err).sum(axis=(0, 1)), (err**2).sum(axis=(0, 1)), smape.sum(axis=(0, 1))]
            self.sums[name] += np.stack([*part, np.full(a.shape[-1], a.shape[0] * a.shape[1])])

    @classmethod
    def pooled(cls, parts: list[Scores]) -> Scores:
        """The windows of several series together (MASE and the series means from the parts)."""
        total = cls(parts[0].sums["model"].shape[1], longer=parts[0].longer)
        for part in parts:
            for name in total.names:
                total.sums[name] += part.sums[name]
        total.parts = list(parts)
        return total

    def summary(self, targets: list[str]) -> SplitScores:
        """Scores pooled over every value, plus ``per_target`` when there are several targets and
        ``series_means`` when there are several series."""
        pooled = self._table(slice(None))
        per_target = {t: self._table(slice(j, j + 1)) for j, t in enumerate(targets)} if len(targets) > 1 else None
        means = None
        if len(self.parts) > 1:
            means = {
                name: SeriesMeans(MASE=self._mase(name, slice(None)), sMAPE=self._mean_smape(name))
                for name in self.names
            }
        return SplitScores(**dict(pooled), per_target=per_target, series_means=means)

    def _table(self, cols: slice) -> TargetScores:
        table: dict[str, dict[str, float | None]] = {}
        for name, sums in self.sums.items():
            abs_err, sq_err, smape, count = sums[:, cols].sum(axis=1)
            table[name] = (
                {"MAE": abs_err / count, "RMSE": math.sqrt(sq_err / count), "sMAPE": smape / count}
                if count
                else {"MAE": None, "RMSE": None, "sMAPE": None}
            )
        ref_mae = table["seasonal_naive"]["MAE"]
        for name, row in table.items():
            mae = row["MAE"]
            row["relMAE"] = mae / ref_mae if ref_mae and mae is not None else None
            row["MASE"] = self._mase(name, cols)
        longer = {str(p): table.pop(longer_name(p)) for p in self.longer}
        return TargetScores.model_validate({**table, "longer_seasons": longer or None})

    def _mase(self, name: str, cols: slice) -> float | None:
        """This series' MASE over the ``cols`` targets (their mean), or the mean over the parts'."""
        if self.parts:
            values = [v for v in (p._mase(name, cols) for p in self.parts) if v is not None]
        else:
            abs_err, count, scale = self.sums[name][0, cols], self.sums[name][3, cols], self.scale[cols]
            ok = (count > 0) & (scale > 0) & np.isfinite(scale)  # a constant training series has no scale
            values = (abs_err[ok] / count[ok] / scale[ok]).tolist()
        return float(np.mean(values)) if values else None

    def _mean_smape(self, name: str) -> float | None:
        values = [p.sums[name][2].sum() / p.sums[name][3].sum() for p in self.parts if p.sums[name][3].sum()]
        return float(np.mean(values)) if values else None


_LONGER = "seasonal_naive_"
_LABELS = {"model": "LSTM", "naive": "naive", "seasonal_naive": "seasonal naive"}


def longer_name(period: int) -> str:
    """The name a longer season's seasonal naive baseline goes by among a Scores' forecasts."""
    return f"{_LONGER}{period}"


def forecast_label(name: str) -> str:
    """A Scores' forecast in words: LSTM, naive, seasonal naive, seasonal naive (s = 168)."""
    return _LABELS.get(name) or f"seasonal naive (s = {name.removeprefix(_LONGER)})"


def evaluate_split(
    model: nn.Module,
    windows: Windows,
    ds: Dataset,
    name: str,
    seasons: tuple[int, ...],
    theta: ThetaCombination | None = None,
) -> SplitScores:
    """Scores of the model (averaged with ``theta``'s forecasts, if given) and the baselines on
    every window of split ``name``; ``seasons``: the seasonal periods, s first (``DataConfig.seasons``).

    With several series: pooled over all of them, plus ``per_series`` (each with its own
    baselines, in its own units).
    """
    k, targets = ds.n_targets, ds.table.columns[: ds.n_targets]
    values = ds.table.values[:, :k]  # original units
    parts = []
    for s in ds.series:
        scores = Scores(k, mase_scale(values[s.start : s.start + s.split.train_end], seasons[0]), seasons[1:])
        for origins, model_f in forecast_chunks(model, windows, s.scaler, s.origins(name), theta):
            scores.add(*forecast_set(values, origins, s.split.horizon, seasons, model_f))
        parts.append(scores)
    result = Scores.pooled(parts).summary(targets)
    if len(ds.series) > 1:
        per_series = {str(s.id): part.summary(targets) for s, part in zip(ds.series, parts, strict=True)}
        result = result.model_copy(update={"per_series": per_series})
    return result


def forecast_set(
    values: np.ndarray, origins: np.ndarray, horizon: int, seasons: tuple[int, ...], model_forecast: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Actuals (W, H, k) and the model's and the baselines' forecasts for ``origins`` (``seasons``:
    s, then the longer seasons, each a seasonal naive baseline)."""
    return actuals(values, origins, horizon), {
        "model": model_forecast,
        "naive": naive(values, origins, horizon),
        "seasonal_naive": seasonal_naive(values, origins, horizon, seasons[0]),
        **{longer_name(p): seasonal_naive(values, origins, horizon, p) for p in seasons[1:]},
    }


# ---------------------------------------------------------------------------------------------
# Prediction intervals: split conformal on the validation windows, scored on the test windows

CALIBRATED_LEVELS = tuple(range(50, 100))  # the levels (%) a run is calibrated for: predict --level takes these
SCORED_LEVELS = (80, 95)  # the levels metrics.json scores on the test split


class Calibration(_Scores):
    """Split-conformal radii of the model's forecasts, from the validation windows of every series
    pooled. Each window's absolute errors are divided by its scale (the model's window scale, the
    mean absolute step of its target inputs, in the series' standardised units; 1 without
    ``model.window_scale``), so one radius per level and step serves series of any variability:
    the interval is the forecast ± radius × the window's scale, in the model's units, then mapped
    back to original units (so a log run's intervals are multiplicative). With fewer windows than a
    level needs (``intervals.windows_needed``: 4 for 80%, 19 for 95%) its radius is the largest
    error seen, which promises only windows / (windows + 1).

    A quantile run's interval at a level is built around a band of two of its quantiles
    (``intervals.band``, e.g. q10 and q90 for 80%) rather than the point forecast: the radius is
    CQR's, of how far values fell outside that band (negative when the band was too wide), and
    ``bands`` names the pair per level. The interval never excludes the point forecast."""

    split: Literal["val"] = "val"
    windows: int
    levels: list[int]
    radius: list[list[list[float | None]]]  # (levels, H, k) in window scales; None: not finite
    bands: list[tuple[float, float]] | None = None  # per level, the quantiles (lo, hi) widened; None: the point
    # Multi-series runs: a series with PER_SERIES_WINDOWS validation windows or more has its own
    # radii (calibrated on its own errors); the others use the pooled ones above.
    per_series: dict[str, Calibration] | None = None

    def for_series(self, series: str | None) -> Calibration:
        """The calibration of ``series``: its own where it had enough windows, else the pooled one."""
        own = (self.per_series or {}).get(series) if series is not None else None
        return own if own is not None else self

    def guaranteed(self, level: int) -> bool:
        """Whether the validation windows were enough for ``level`` percent to be promised."""
        return self.windows >= windows_needed(level / 100)

    def radius_for(self, level: int) -> np.ndarray:
        """(H, k) radius at ``level`` percent (inf where it was not finite)."""
        rows = self.radius[self.levels.index(level)]
        return np.array([[math.inf if v is None else v for v in step] for step in rows], dtype=np.float64)

    def band_for(self, level: int) -> tuple[float, float]:
        """The forecast quantiles the interval at ``level`` widens: (0.5, 0.5), the point, unless a band."""
        return (0.5, 0.5) if self.bands is None else self.bands[self.levels.index(level)]

    def interval(
        self, forecast: np.ndarray, quantiles: tuple[float, ...], scale: np.ndarray, level: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds (..., K, k) at ``level``, in the model's units, of a forecast
        (..., K, k, Q) of quantiles ``quantiles`` (Q = 1 and () for a point forecast) from windows
        of scale ``scale`` (broadcast against (..., K, k)): the band's quantiles minus and plus the
        radius times the window's scale, the point forecast inside."""
        lo_q, hi_q = self.band_for(level)
        r = self.radius_for(level)[: forecast.shape[-3]] * scale
        point = forecast[..., _index(quantiles, 0.5)]
        with np.errstate(invalid="ignore"):  # an inf radius (too few windows) times a scale
            lower = np.minimum(forecast[..., _index(quantiles, lo_q)] - r, point)
            upper = np.maximum(forecast[..., _index(quantiles, hi_q)] + r, point)
        return lower, upper


def _index(quantiles: tuple[float, ...], tau: float) -> int:
    """Position of quantile ``tau`` in a forecast's last axis (0: a point forecast's only entry)."""
    return quantiles.index(tau) if quantiles else 0


class IntervalScores(_Scores):
    """A forecast's central intervals at one level on a split, in original units: empirical
    coverage (fraction), mean width, mean interval score (Gneiting & Raftery 2007) and MSIS (M4:
    the interval score over the in-sample seasonal naive MAE, averaged over series)."""

    coverage: float | None
    width: float | None
    interval_score: float | None
    MSIS: float | None


class QuantileScores(_Scores):
    """A quantile forecast on a split, in original units: the fraction of values at or below it (τ
    for a calibrated τ-quantile) and its mean pinball loss."""

    below: float | None
    pinball: float | None


class IntervalTable(_Scores):
    """The model's conformal intervals and seasonal naive's, calibrated alike on validation."""

    model: IntervalScores
    seasonal_naive: IntervalScores


def _scaled_windows(
    model: LSTMForecaster, windows: Windows, origins: np.ndarray, season: int, theta: ThetaCombination | None
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """For ``origins``, in the model's (scaled) units: actuals (W, H, k), the model's and seasonal
    naive's forecasts as quantiles (W, H, k, Q) (Q = 1: a point forecast), and each window's scale
    (W, 1, k)."""
    k, H, device = windows.n_targets, windows.out_offsets.numel(), windows.series.device
    chunks: list[np.ndarray] = []
    with torch.no_grad():
        for lo in range(0, len(origins), windows.eval_chunk()):
            o = torch.as_tensor(origins[lo : lo + windows.eval_chunk()], device=device)
            chunks.append(model.scale(windows.inputs(o)).float().cpu().double().numpy())
    scale = np.concatenate(chunks) if chunks else np.ones((0, 1, k))
    # Only these windows' rows leave the device: never a copy of the whole series per call.
    o = torch.as_tensor(origins, device=device)
    snaive = windows.series[o[:, None] + torch.as_tensor(seasonal_offsets(H, season), device=device), :k]
    return (
        windows.targets(o).double().cpu().numpy(),
        {
            "model": forecast_scaled(model, windows, origins, quantiles=True, theta=theta),
            "seasonal_naive": snaive.double().cpu().numpy()[..., None],
        },
        scale,
    )


PER_SERIES_WINDOWS = windows_needed(0.95)  # 19: enough for a series' own 95% interval
# A rank statistic needs no more: 20,000 windows pin the 95% radius within about ±0.15 percentage
# points of coverage, and bound calibration's memory (W·H·k float64 arrays) on a 10M-row file.
MAX_CALIBRATION_WINDOWS = 20_000


def _spread(origins: np.ndarray, at_most: int) -> np.ndarray:
    """At most ``at_most`` of ``origins``, evenly spaced (deterministic), in order."""
    if len(origins) <= at_most:
        return origins
    return origins[np.linspace(0, len(origins) - 1, at_most).round().astype(np.int64)]


COMBINE_WINDOWS = 2_000  # validation windows (spread over every series) that decide model.combine: auto


class CombinationChoice(_Scores):
    """Whether the forecast is the network's averaged with the Theta method's (``model.combine``),
    and why: the MAE on ``windows`` validation windows, in the model's units (each series
    standardised), of the network alone and of the average. ``auto`` combines when the average's
    is lower; ``theta`` always does (``chosen_by: config``)."""

    method: Literal["theta"] = "theta"
    used: bool
    chosen_by: Literal["validation", "config"]
    windows: int
    network_mae: float | None
    combined_mae: float | None


def choose_combination(
    model: nn.Module, windows: Windows, ds: Dataset, theta: ThetaCombination, always: bool = False
) -> CombinationChoice:
    """Score the network alone and averaged with ``theta`` on validation windows, and choose
    (``always``: the average, whatever the scores)."""
    per = [_spread(s.origins("val"), COMBINE_WINDOWS) for s in ds.series]
    origins = _spread(np.concatenate(per), COMBINE_WINDOWS) if per else np.zeros(0, dtype=np.int64)
    chosen_by: Literal["validation", "config"] = "config" if always else "validation"
    if not len(origins):
        return CombinationChoice(used=always, chosen_by=chosen_by, windows=0, network_mae=None, combined_mae=None)
    net = forecast_scaled(model, windows, origins)
    actual = windows.targets(torch.as_tensor(origins, device=windows.series.device)).double().cpu().numpy()
    both = combined(net, theta.scaled(origins))
    with np.errstate(invalid="ignore", over="ignore"):
        alone, averaged = float(np.mean(np.abs(net - actual))), float(np.mean(np.abs(both - actual)))
    return CombinationChoice(
        used=always or averaged < alone,
        chosen_by=chosen_by,
        windows=len(origins),
        network_mae=_finite(alone),
        combined_mae=_finite(averaged),
    )


def _calibration(
    actual: np.ndarray, forecast: np.ndarray, quantiles: tuple[float, ...], scale: np.ndarray
) -> Calibration:
    """Radii at every level in ``CALIBRATED_LEVELS`` from windows' actuals (W, H, k), forecast
    quantiles (W, H, k, Q) and scales (W, 1, k): conformity scores to each level's band, in window scales."""
    bands = [band(quantiles, level / 100) for level in CALIBRATED_LEVELS]
    scores: dict[tuple[float, float], np.ndarray] = {}
    radii = []
    for level, (lo, hi) in zip(CALIBRATED_LEVELS, bands, strict=True):
        if (lo, hi) not in scores:
            lower, upper = forecast[..., _index(quantiles, lo)], forecast[..., _index(quantiles, hi)]
            scores[lo, hi] = conformity(actual, lower, upper) / scale
        radii.append(conformal_radius(scores[lo, hi], level / 100, clamp=True))
    radius = [[[_finite(float(v)) for v in step] for step in lv] for lv in radii]
    point = all(b == (0.5, 0.5) for b in bands)
    return Calibration(
        windows=len(actual), levels=list(CALIBRATED_LEVELS), radius=radius, bands=None if point else bands
    )


def calibrate(
    model: LSTMForecaster, windows: Windows, ds: Dataset, season: int, theta: ThetaCombination | None = None
) -> dict[str, Calibration]:
    """Conformal radii of the model and of seasonal naive from the validation windows: pooled over
    every series, and per series for each series of a multi-series run with PER_SERIES_WINDOWS
    validation windows or more."""
    per = [_spread(s.origins("val"), MAX_CALIBRATION_WINDOWS) for s in ds.series]
    if sum(len(o) for o in per) > MAX_CALIBRATION_WINDOWS:  # many series: thin each alike
        per = [_spread(o, max(PER_SERIES_WINDOWS, MAX_CALIBRATION_WINDOWS // len(per))) for o in per]
    origins = np.concatenate(per) if per else np.zeros(0, dtype=np.int64)
    actual, forecasts, scale = _scaled_windows(model, windows, origins, season, theta)
    bounds = np.cumsum([0, *(len(o) for o in per)])
    out = {}
    for name, f in forecasts.items():
        q = _quantiles(model, name)
        pooled = _calibration(actual, f, q, scale)
        if len(ds.series) > 1:
            own = {
                str(s.id): _calibration(actual[lo:hi], f[lo:hi], q, scale[lo:hi])
                for s, lo, hi in zip(ds.series, bounds[:-1], bounds[1:], strict=True)
                if hi - lo >= PER_SERIES_WINDOWS
            }
            pooled = pooled.model_copy(update={"per_series": own or None})
        out[name] = pooled
    return out


def _quantiles(model: LSTMForecaster, forecaster: str) -> tuple[float, ...]:
    """The quantiles of a forecaster's (W, H, k, Q) forecasts: the model's, or () for a point forecast."""
    return model.quantiles if forecaster == "model" else ()


class IntervalSums:
    """Running sums behind :class:`IntervalTable` (coverage, width, interval score, count, and each
    series' MSIS), added series by series, so a backtest can pool its series as training does."""

    def __init__(self, levels: tuple[int, ...] | list[int] = SCORED_LEVELS) -> None:
        self.levels = list(levels)
        self.sums: dict[tuple[int, str], np.ndarray] = {}
        self.msis: dict[tuple[int, str], list[float]] = {}
        self.quantile_sums: dict[float, np.ndarray] = {}  # a quantile run's: values below, pinball, count

    def add(
        self,
        model: LSTMForecaster,
        windows: Windows,
        scaler: Scaler,
        origins: np.ndarray,
        values: np.ndarray,
        in_sample: np.ndarray,
        season: int,
        calibrations: dict[str, Calibration],
        series: str | None,
        theta: ThetaCombination | None = None,
    ) -> IntervalSums:
        """One series' windows at ``origins``: ``values`` (N, k) its targets in original units,
        ``in_sample`` (k,) its MSIS scale."""
        if not len(origins):
            return self
        k = windows.n_targets
        mine: dict[tuple[int, str], np.ndarray] = {}  # this series' sums
        per_target: dict[tuple[int, str], np.ndarray] = {}  # its interval score summed per target
        for c in range(0, len(origins), SCORE_CHUNK):  # bounded memory, whatever the split's size
            chunk = origins[c : c + SCORE_CHUNK]
            _, forecasts, scale = _scaled_windows(model, windows, chunk, season, theta)
            actual = actuals(values, chunk, windows.out_offsets.numel())
            for j, tau in enumerate(model.quantiles):
                with np.errstate(invalid="ignore", over="ignore"):
                    q = scaler.inverse(forecasts["model"][..., j], slice(0, k))
                    pinball = pinball_loss(actual, q, tau) * actual.size
                part = np.array([float(np.sum(actual <= q)), pinball, actual.size])
                self.quantile_sums[tau] = self.quantile_sums.get(tau, np.zeros(3)) + part
            for level in self.levels:
                alpha = 1 - level / 100
                for fname, f in forecasts.items():
                    cal = calibrations[fname].for_series(series)
                    lo_s, hi_s = cal.interval(f, _quantiles(model, fname), scale, level)  # (W, H, k)
                    with np.errstate(invalid="ignore", over="ignore"):
                        lo = scaler.inverse(lo_s, slice(0, k))
                        hi = scaler.inverse(hi_s, slice(0, k))
                        below, above = np.clip(lo - actual, 0, None), np.clip(actual - hi, 0, None)
                        score = (hi - lo) + (2 / alpha) * (below + above)
                    covered = float(np.sum((actual >= lo) & (actual <= hi)))
                    part = np.array([covered, float(np.sum(hi - lo)), float(np.sum(score)), actual.size])
                    key = (level, fname)
                    mine[key] = mine.get(key, np.zeros(4)) + part
                    per_target[key] = per_target.get(key, np.zeros(k)) + score.sum(axis=(0, 1))
        values_per_target = len(origins) * windows.out_offsets.numel()
        for key, part in mine.items():
            self.sums[key] = self.sums.get(key, np.zeros(4)) + part
            if np.all(np.isfinite(in_sample) & (in_sample > 0)):
                self.msis.setdefault(key, []).append(float(np.mean(per_target[key] / values_per_target / in_sample)))
        return self

    def merge(self, other: IntervalSums) -> IntervalSums:
        for key, part in other.sums.items():
            self.sums[key] = self.sums.get(key, np.zeros(4)) + part
        for key, parts in other.msis.items():
            self.msis.setdefault(key, []).extend(parts)
        for tau, part in other.quantile_sums.items():
            self.quantile_sums[tau] = self.quantile_sums.get(tau, np.zeros(3)) + part
        return self

    def quantile_table(self) -> dict[str, QuantileScores] | None:
        """Per quantile of a quantile run (keyed "0.1", ...); None for a point model."""
        if not self.quantile_sums:
            return None
        return {
            str(tau): QuantileScores(
                below=below / count if count else None, pinball=_finite(pinball / count) if count else None
            )
            for tau, (below, pinball, count) in sorted(self.quantile_sums.items())
        }

    def table(self) -> dict[str, IntervalTable]:
        out: dict[str, IntervalTable] = {}
        for level in self.levels:
            rows = {}
            for fname in ("model", "seasonal_naive"):
                covered, width, score, count = self.sums.get((level, fname), np.zeros(4))
                parts = self.msis.get((level, fname), [])
                rows[fname] = IntervalScores(
                    coverage=covered / count if count else None,
                    width=_finite(width / count) if count else None,
                    interval_score=_finite(score / count) if count else None,
                    MSIS=_finite(float(np.mean(parts))) if parts else None,
                )
            out[str(level)] = IntervalTable(**rows)
        return out


def interval_scores(
    model: LSTMForecaster,
    windows: Windows,
    ds: Dataset,
    name: str,
    season: int,
    calibrations: dict[str, Calibration],
    theta: ThetaCombination | None = None,
) -> IntervalSums:
    """The sums behind the coverage, width, interval score and MSIS of the calibrated intervals on
    split ``name``, per level in ``SCORED_LEVELS``, for the model and for seasonal naive, pooled
    over the series (and of a quantile run's quantiles)."""
    values = ds.table.values[:, : ds.n_targets]
    sums = IntervalSums()
    for s in ds.series:
        in_sample = mase_scale(values[s.start : s.start + s.split.train_end], season)
        sums.add(model, windows, s.scaler, s.origins(name), values, in_sample, season, calibrations, str(s.id), theta)
    return sums


def _finite(v: float) -> float | None:
    """None for an infinite figure (too few validation windows for the level), as JSON has no inf."""
    return float(v) if math.isfinite(v) else None
