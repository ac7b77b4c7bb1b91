"""The run directory's JSON files as typed, validated models.

Each file is written from one of these models and read back through it, so a file of the wrong
shape (hand-edited, truncated to valid JSON, from another tool) is refused in one line naming the
file and the key, and a renamed field fails here, loudly, instead of as a ``KeyError`` in a reader.
The models accept exactly what lstmcli 0.1.0 wrote (tests/fixtures/v0_1_0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lstmcli.errors import CheckpointError
from lstmcli.evaluate import Calibration, CombinationChoice, IntervalTable, QuantileScores, SplitScores
from lstmcli.fsutil import SMALL_FILE_BYTES, read_bytes

RUN_FORMAT = "lstmcli-run"
RUN_FORMAT_VERSION = 1


class _Schema(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScalerStats(_Schema):
    """Per input column: z = (t(x) - mean) / std, t = log where ``log``."""

    mean: list[float]
    std: list[float]
    log: list[bool]


class SplitRows(_Schema):
    """Row boundaries of one series' chronological split."""

    n_rows: int = Field(ge=0)
    train_end: int = Field(ge=0)
    val_end: int = Field(ge=0)
    min_history: int | None = None  # a series padded for want of a full lookback: real rows per window


class DatesMeta(_Schema):
    first_date: str | None
    last_date: str | None
    frequency: str | None


class SeriesMeta(DatesMeta):
    """One series of the training data: its rows, scaler and split (id None for a single series)."""

    id: str | None
    rows: int = Field(ge=0)
    scaler: ScalerStats
    split: SplitRows


class ColumnsMeta(_Schema):
    target: list[str]
    features: list[str]
    future_features: list[str] = Field(default_factory=list)  # known for the horizon (since 0.2.0)
    date_column: str | None


class DataMeta(DatesMeta):
    path: str
    rows: int = Field(ge=0)


class RunMeta(_Schema):
    """``meta.json``: what predict needs besides the weights and the config."""

    format: Literal["lstmcli-run"]
    format_version: Literal[1]
    lstmcli_version: str
    torch_version: str
    config_sha256: str
    columns: ColumnsMeta
    weights_sha256: str
    series: list[SeriesMeta] = Field(min_length=1)
    data: DataMeta


METRICS_FORMAT_VERSION = 2  # 2: MASE as Hyndman & Koehler define it, and relMAE; 1 (0.1.0): MASE was relMAE


class Metrics(_Schema):
    """``metrics.json``: the finished run's scores and how training went."""

    format_version: Literal[2]
    test: SplitScores | None  # None: a tuning trial, scored on validation only (lstm tune scores the best)
    val: SplitScores
    windows: dict[Literal["train", "val", "test"], int]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    best_val_loss: float
    train_seconds: float
    device: str
    precision: str
    processes: int
    threads: int | None = None  # CPU threads trained with, and why (None on a GPU, and before 0.2.0)
    threads_reason: str | None = None
    batch_size: int | None = None  # the batch trained with (train.batch_size: auto chooses it); None before 0.2.0
    patience: int | None = None  # the early-stopping patience trained with (train.patience: auto chooses it)
    refit_epochs: int = 0  # epochs of train.refit on the training and validation windows (0: no refit)
    calibration: dict[str, Calibration] | None = None  # model, seasonal_naive: conformal radii (None before 0.2.0)
    intervals: dict[str, IntervalTable] | None = None  # test split, per level: the calibrated intervals' scores
    quantiles: dict[str, QuantileScores] | None = None  # test split, a quantile run's quantiles
    filled_timestamps: int = 0  # missing timestamps inserted and filled by data.missing
    padded_series: int = 0  # series too short for a full lookback (windows padded with their first row)
    series_without_training_windows: int = 0
    # model.combine: whether the forecast is the network's averaged with Theta's (None: never considered)
    combination: CombinationChoice | None = None

    def to_dict(self) -> dict[str, Any]:
        """As JSON, without the per-target and per-series parts a single target or series lacks."""
        return self.model_dump(mode="json", exclude_defaults=True)

    @property
    def averaged_with_theta(self) -> bool:
        """Whether the run's forecasts are the network's averaged with Theta's (``model.combine``)."""
        return self.combination is not None and self.combination.used

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        # 0.1.0 wrote no format_version, and called the ratio to seasonal naive's MAE on the same
        # windows "MASE": that is relMAE now; the in-sample MASE of those runs is unknown.
        if isinstance(data, dict) and "format_version" not in data:
            return {**_v1_scores(data), "format_version": METRICS_FORMAT_VERSION}
        return data


def _v1_scores(node: Any) -> Any:
    if isinstance(node, dict):
        if {"MAE", "RMSE", "sMAPE", "MASE"} <= set(node) and "relMAE" not in node:
            return {**node, "MASE": None, "relMAE": node["MASE"]}
        return {k: _v1_scores(v) for k, v in node.items()}
    return node


M = TypeVar("M", bound=BaseModel)


def read_model(path: Path, model: type[M]) -> M:
    """Read and validate one of the run's JSON files; any problem is one CheckpointError line."""
    data = read_bytes(path, "JSON file", CheckpointError, SMALL_FILE_BYTES)
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(the whole file)"
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise CheckpointError(
            f"{path}: key '{key}': {err['msg'].lower()}{more}; not the {model.__name__} an lstm run writes"
        ) from None
