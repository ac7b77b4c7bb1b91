"""``lstm inspect``: the textbook view of a config's model or a trained run, as typed facts.

Named ``inspect_run`` because a module named ``inspect`` would hide the standard library's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lstmcli.commands.trace_run import TraceRequest, trace_run
from lstmcli.config import load_config
from lstmcli.errors import DataError, ResourceError
from lstmcli.evaluate import CombinationChoice
from lstmcli.model import gates
from lstmcli.model.forecaster import LSTMForecaster
from lstmcli.results import Traced, TraceFacts
from lstmcli.runs.run import Run, load_run
from lstmcli.runs.schema import Metrics
from lstmcli.training.device import available_memory

CHECK_TOLERANCE = 1e-10  # float64: the two computations differ only by rounding


class CheckFacts(BaseModel):
    """The proof: the largest difference between the gate equations and the fused layer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_abs_diff: float
    tolerance: float

    @property
    def same_function(self) -> bool:
        return self.max_abs_diff <= self.tolerance


class SeriesSummary(BaseModel):
    """One series of a multi-series run's training data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    rows: int
    first_date: str | None
    last_date: str | None


class RunSummary(BaseModel):
    """What a trained run was trained on and how training went."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    data: str
    rows: int
    first_date: str | None
    last_date: str | None
    frequency: str | None
    series_column: str | None = None
    series: list[SeriesSummary] = []  # a multi-series run's, in the order of the file
    target: list[str]
    features: list[str]
    static_features: list[str] = []
    static_categories: dict[str, list[str]] = {}
    future_features: list[str] = []
    calendar: list[str] = []
    holidays: str | None = None
    lags: list[int] = []
    lookback: int
    horizon: int
    season: int | list[int]  # data.season: s, or s and the longer seasons
    best_epoch: int | None = None
    epochs_run: int | None = None
    stopped_early: bool | None = None
    refit_epochs: int = 0
    best_val_loss: float | None = None
    train_seconds: float | None = None
    device: str | None = None
    precision: str | None = None
    windows: dict[str, int] | None = None
    loss: str = "mse"
    quantiles: list[float] | None = None  # a quantile run's (train.loss: quantile)
    window_scale: bool = False
    normalize: str = "last"  # what the network's output is added to (model.normalize)
    seasonal_base: bool = False  # normalize season with a season that fits the lookback
    drift: bool = False  # and whether that base continues the window's trend (model.drift)
    batch_size: int | None = None
    calibration_windows: int | None = None  # validation windows behind the prediction intervals
    interval_levels: list[int] | None = None  # the levels predict --level takes
    interval_bands: bool = False  # intervals widen quantile bands (CQR) rather than the point forecast
    combination: CombinationChoice | None = None  # model.combine: whether the forecast is averaged with Theta's


class InspectFacts(gates.ModelFacts):
    """The model's facts, and what was asked for besides: the proof, the units, the run, the trace."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    check: CheckFacts | None = None
    units: dict[str, list[gates.UnitFacts]] | None = None
    metrics: Metrics | None = None
    run: RunSummary | None = None
    trace: TraceFacts | None = None
    traced: Traced | None = Field(default=None, exclude=True)  # the arrays behind the trace, for --plot

    def to_dict(self) -> dict[str, Any]:
        """As JSON, without the parts that were not asked for (or that a config has not)."""
        return self.model_dump(mode="json", exclude_defaults=True)


def inspect(
    target: Path, overrides: list[str], check: bool = False, units: bool = False, trace: TraceRequest | None = None
) -> InspectFacts:
    """Facts about the model of a config (its initial weights, seeded) or of a trained run (its
    weights, their statistics, its metrics); with ``check`` the proof that the gate equations are
    the fused layer's function, with ``units`` the per-unit view, with ``trace`` what the gates
    do on windows of a CSV (a run only). A directory is taken for a run."""
    run = load_run(target) if target.is_dir() else None
    if trace is not None and run is None:
        raise DataError(f"--trace: {target} is a config; a trace needs a trained run's weights (a run directory)")
    model = run.model if run is not None else _untrained(target, overrides)
    facts = gates.describe(model, stats=run is not None)
    extra: dict[str, Any] = {}
    if check:
        _check_fits_in_memory(model)
        extra["check"] = CheckFacts(max_abs_diff=gates.check_equivalence(model.lstm), tolerance=CHECK_TOLERANCE)
    if units:
        extra["units"] = {str(layer): gates.unit_view(model, layer) for layer in range(1, model.layers + 1)}
    if run is not None:
        metrics = run.metrics()
        extra.update(metrics=metrics, run=run_summary(run, metrics))
    if trace is not None:
        assert run is not None
        traced = trace_run(run, trace)
        extra.update(trace=traced.facts, traced=traced)
    return InspectFacts(**dict(facts), **extra)


def _check_fits_in_memory(model: LSTMForecaster) -> None:
    """The proof runs on a float64 copy of the LSTM, sliced per gate: about 16 bytes per parameter.
    A model that needs more than the machine has is refused in one line, not left to the OOM killer."""
    need = 16 * sum(p.numel() for p in model.lstm.parameters())
    free = available_memory()
    if free is not None and need > free:
        raise ResourceError(
            f"--check: the float64 proof for this model ({model.m} units x {model.layers} layer(s)) needs about "
            f"{need / 1e9:.1f} GB and {free / 1e9:.1f} GB are available; the gate equations are the same for any m, "
            "so check a smaller config"
        )


def _untrained(config: Path, overrides: list[str]) -> LSTMForecaster:
    import torch

    cfg = load_config(config, overrides)
    torch.manual_seed(cfg.train.seed)
    return LSTMForecaster.from_config(cfg)


def run_summary(run: Run, metrics: Metrics | None) -> RunSummary:
    """What a trained run was trained on and how training went."""
    data, cfg = run.meta.data, run.cfg.data
    trained: dict[str, Any] = {}
    if metrics is not None:
        trained = {
            "best_epoch": metrics.best_epoch,
            "epochs_run": metrics.epochs_run,
            "stopped_early": metrics.stopped_early,
            "refit_epochs": metrics.refit_epochs,
            "best_val_loss": metrics.best_val_loss,
            "train_seconds": metrics.train_seconds,
            "device": metrics.device,
            "precision": metrics.precision,
            "windows": dict(metrics.windows),
            "batch_size": metrics.batch_size,
            "combination": metrics.combination,
        }
        if metrics.calibration:
            cal = metrics.calibration["model"]
            trained.update(
                calibration_windows=cal.windows, interval_levels=list(cal.levels), interval_bands=cal.bands is not None
            )
    return RunSummary(
        path=str(run.path),
        data=data.path,
        rows=data.rows,
        first_date=data.first_date,
        last_date=data.last_date,
        frequency=data.frequency,
        series_column=cfg.series_column,
        series=[
            SeriesSummary(id=m.id, rows=m.rows, first_date=m.first_date, last_date=m.last_date)
            for m in run.meta.series
            if m.id is not None
        ],
        target=list(cfg.target),
        features=list(cfg.features),
        static_features=list(cfg.static_features),
        static_categories={k: list(v) for k, v in cfg.static_categories.items()},
        future_features=list(cfg.future_features),
        calendar=list(cfg.calendar),
        holidays=cfg.holidays,
        lags=list(cfg.lags),
        lookback=cfg.lookback,
        horizon=cfg.horizon,
        season=cfg.season,
        loss=run.cfg.train.loss,
        quantiles=run.cfg.model.quantiles,
        window_scale=run.cfg.model.window_scale,
        normalize=run.cfg.model.normalize,
        seasonal_base=run.model.seasonal_base,
        drift=run.cfg.model.drift,
        **trained,
    )
