"""The one config schema: YAML -> dict -> ``--set`` overrides -> validated, frozen ``Config``."""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lstmcli.errors import ConfigError
from lstmcli.fsutil import MiB, expand, read_text

MAX_CONFIG_BYTES = MiB  # a config is a few hundred bytes; a bigger file is not one
MAX_YAML_DEPTH = 32  # a config nests 3 levels; composing YAML is recursive, so deeper is refused
MAX_LAYERS = 64
MAX_QUANTILES = 99
MAX_CATEGORY_INPUTS = 1000  # one-hot inputs of data.static_categories, all columns together
# Features computed from the dates (data.calendar); lstmcli.data.calendar_features computes them.
CalendarFeature = Literal["month", "weekday", "dayofmonth", "dayofyear", "hour", "minute"]


def calendar_columns(features: list[str]) -> list[str]:
    """The generated columns' names, two per calendar feature: ``month_sin``, ``month_cos``, ..."""
    return [f"{f}_{part}" for f in features for part in ("sin", "cos")]


DEFAULT_QUANTILES = [0.1, 0.5, 0.9]
MAX_PARAMETERS = 1_000_000_000  # 24 GB of weights, gradients, Adam moments and best weights in fp32
# Fewer training windows than SMALL_DATA_WINDOWS: `lstm init` gives SMALL_DATA_UNITS units per layer
# (BENCHMARKS.md: on 32 single M3 series, 8 or 32 units or one layer did no better).
SMALL_DATA_WINDOWS = 256
SMALL_DATA_UNITS = 16


class _Section(BaseModel):
    # Lax mode on purpose: PyYAML reads `lr: 1e-3` as a string and pydantic converts it.
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(_Section):
    """The stacked LSTM: n inputs per step, m units per layer, `layers` layers."""

    n: int = Field(gt=0, description="inputs per time step: the target columns plus the feature columns")
    m: int = Field(64, gt=0, description="units per layer: the size of y_t and c_t")
    layers: int = Field(2, gt=0, le=MAX_LAYERS, description="stacked LSTM layers")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout between stacked layers")
    normalize: Literal["last", "mean", "season", "none"] = Field(
        "last",
        description="window-relative level: subtract each window's last (or mean) target value "
        "from its target inputs and add it back to the forecast; season: add the network's output "
        "to the window's seasonal naive forecast instead (it learns the correction to last season)",
    )
    drift: bool = Field(
        False,
        description="with normalize last or season: the forecast's base also continues the window's trend "
        "(its mean change over a season, over a step for s = 1; the lookback must be longer than s), so the "
        "network learns the correction to a drifting forecast",
    )
    window_scale: bool = Field(
        True,
        description="divide each window's target inputs (less their level) by the window's mean absolute step, "
        "and its forecast errors in training too: every window, whatever its series' level, weighs alike",
    )
    quantiles: list[float] | None = Field(
        None,
        description="with train.loss: quantile, the quantiles forecast per step and target (they include 0.5, "
        "the point forecast); default [0.1, 0.5, 0.9]",
    )
    combine: Literal["auto", "theta", "none"] = Field(
        "auto",
        description="average the network's forecast with the Theta method's (fitted to each window's own history): "
        "auto does when that lowers the validation MAE and the run has no data.future_features or data.holidays "
        "(whose effect the average would halve), theta always, none never",
    )

    @field_validator("quantiles")
    @classmethod
    def _quantile_levels(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if any(not 0.0 < q < 1.0 for q in v):
            raise ValueError("each quantile must lie strictly between 0 and 1")
        if sorted(set(v)) != v:
            raise ValueError("list each quantile once, in increasing order")
        if 0.5 not in v:
            raise ValueError("include 0.5: the median is the point forecast")
        if len(v) > MAX_QUANTILES:
            raise ValueError(f"at most {MAX_QUANTILES} quantiles")
        return v

    @property
    def outputs_per_value(self) -> int:
        """Forecasts per step and target: one per quantile, or the point forecast alone."""
        return len(self.quantiles) if self.quantiles else 1


class SplitConfig(_Section):
    """How each series is split in time: fractions of its rows (``train``, ``val``; test takes the
    rest), or counts of rows from its end (``val``, ``test``; train takes the rest), the way the
    forecasting competitions hold out the last h rows of every series."""

    train: float | None = Field(0.70, gt=0.0, lt=1.0, description="fraction of rows (fraction split)")
    val: float | int = Field(0.15, gt=0, description="fraction of rows, or a count of rows before the test rows")
    test: int | None = Field(None, ge=1, description="count of rows at the end of each series (count split)")

    @model_validator(mode="before")
    @classmethod
    def _counts_have_no_train_fraction(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("test") is not None and "train" not in data:
            return {**data, "train": None}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> SplitConfig:
        if self.test is not None:
            if self.train is not None:
                raise ValueError("a count split gives val and test as rows and train takes the rest; drop train")
            if isinstance(self.val, float) and not self.val.is_integer():
                raise ValueError(f"with test given as rows, val must be rows too, got {self.val}")
            return self
        if not (isinstance(self.val, float) and self.val < 1.0) or isinstance(self.val, bool):
            raise ValueError(f"val is a fraction below 1 (or give test as rows too, for a count split), got {self.val}")
        train = 0.70 if self.train is None else self.train
        if train + self.val >= 1.0:
            raise ValueError(f"train + val must be below 1 to leave a test split, got {train} + {self.val}")
        return self

    @property
    def counts(self) -> bool:
        """Rows counted from each series' end, rather than fractions."""
        return self.test is not None


class DataConfig(_Section):
    """Where the series is and how windows are cut from it."""

    path: str = Field(description="CSV file, relative to the config file")
    date_column: str | None = Field(None, description="optional date column (ISO dates), checked to be increasing")
    date_format: str | None = Field(
        None, description="the dates' strptime format when they are not ISO, e.g. '%d/%m/%Y' (no time zone: %z)"
    )
    series_column: str | None = Field(
        None, description="long format: column naming the series of each row; one global model over all series"
    )
    target: list[str] = Field(min_length=1, description="column(s) to forecast")
    features: list[str] = Field(default_factory=list, description="extra input columns (covariates), past values only")
    static_features: list[str] = Field(
        default_factory=list,
        description="long format: numeric columns constant within each series (a size, a one-hot category), "
        "scaled across series so that they tell the series apart; inputs at every step",
    )
    static_categories: dict[str, list[str]] = Field(
        default_factory=dict,
        description="long format: text columns constant within each series (a region, a product family), "
        "each with the list of its values; the tool one-hot encodes them (one input per value, counted in n), "
        "scaled across series like static_features",
    )
    future_features: list[str] = Field(
        default_factory=list,
        description="covariates whose values are known for the horizon too (a holiday, a planned price): the "
        "lookback sees their past and the head their H future values; predict reads those from --future",
    )
    calendar: list[CalendarFeature] = Field(
        default_factory=list,
        description="features computed from the dates, each a sin/cos pair known for the future (month, "
        "weekday, dayofmonth, dayofyear, hour, minute); needs date_column",
    )
    lags: list[int] = Field(
        default_factory=list,
        description="known-future inputs: each target's value this many steps earlier, one input per target "
        "and lag (counted in n), e.g. [336], last week, for half-hourly data; each at least H, so that it is "
        "known for the whole horizon: the lookback stays short and the model still sees the longer season",
    )
    lookback: int = Field(gt=0, description="L: input steps per window")
    horizon: int = Field(gt=0, description="H: forecast steps per window")
    season: int | list[int] = Field(
        1,
        description="s: seasonal period of the seasonal-naive baseline and of MASE (1 = none); a list, shortest "
        "first (hourly: [24, 168]), scores a seasonal-naive baseline for each longer period too",
    )
    split: SplitConfig = Field(default_factory=SplitConfig)
    missing: Literal["error", "interpolate", "ffill", "zero"] = Field(
        "error", description="what to do with empty or NaN cells and missing timestamps (error: refuse them)"
    )
    transform: Literal["none", "log"] = Field(
        "none", description="log: model log(y) (positive series with multiplicative seasonality)"
    )

    @field_validator("target", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("season", mode="before")
    @classmethod
    def _periods(cls, v: Any) -> Any:
        """A whole number of steps, or a list of them, each once, shortest first; one clear message
        otherwise (a union's errors would name each branch), and a bare true or false is no period."""
        periods = v if isinstance(v, list) else [v]
        periods = [int(p) if isinstance(p, float) and p.is_integer() else p for p in periods]  # 24.0
        for p in periods:
            if isinstance(p, bool) or not isinstance(p, int | str) or (isinstance(p, str) and not p.strip().isdigit()):
                held = f"the list holds {p!r}: " if isinstance(v, list) else ""
                raise ValueError(
                    f"{held}a seasonal period is a whole number of steps, or a list of them shortest first "
                    "(e.g. 12, or [24, 168])"
                )
        whole = [int(p) for p in periods]
        if not whole or any(p < 1 for p in whole):
            raise ValueError("each seasonal period is a whole number of steps, 1 or more")
        if sorted(set(whole)) != whole:
            raise ValueError("list each seasonal period once, shortest first (e.g. [24, 168])")
        return whole[0] if len(whole) == 1 else whole

    @field_validator("lags")
    @classmethod
    def _lags_once(cls, v: list[int]) -> list[int]:
        if any(p < 1 for p in v) or sorted(set(v)) != v:
            raise ValueError("list each lag once, in increasing order, as whole numbers of steps (1 or more)")
        return v

    @model_validator(mode="after")
    def _lags_known_ahead(self) -> DataConfig:
        if self.lags and self.lags[0] < self.horizon:
            raise ValueError(
                f"lags: {self.lags[0]} is shorter than the horizon H = {self.horizon}; a lag's values are known "
                "for every step of the horizon only when it is H or more"
            )
        return self

    @property
    def seasons(self) -> tuple[int, ...]:
        """Every seasonal period, shortest first; the first is ``s``."""
        return tuple(self.season) if isinstance(self.season, list) else (self.season,)

    @property
    def s(self) -> int:
        """The seasonal period of MASE, relMAE, the intervals' baseline and normalize: season."""
        return self.seasons[0]

    holidays: str | None = Field(
        None,
        description="a country code (US, GB, DE...): the public holidays in each date's period as a known-future "
        "input (1 more in n), through the holidays package (pip install 'lstmcli[holidays]')",
    )

    @field_validator("holidays")
    @classmethod
    def _known_country(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            import holidays
        except ImportError:
            raise ValueError("needs the holidays package: pip install 'lstmcli[holidays]'") from None
        if v not in holidays.list_supported_countries():
            raise ValueError("is not a country code the holidays package knows (e.g. US, GB, DE, FR)")
        return v

    @field_validator("static_categories", mode="before")
    @classmethod
    def _categories_are_text(cls, value: Any) -> Any:
        """Values as the file's stripped cells; YAML reads an unquoted yes, no or 1 as a bool or a number."""
        if not isinstance(value, dict):
            return value
        for name, values in value.items():
            for v in values if isinstance(values, list) else []:
                if not isinstance(v, str):
                    raise ValueError(
                        f"static_categories.{name}: {v!r} is not text; quote each value in the YAML "
                        "(a bare yes, no, on, off or number is read as a bool or a number)"
                    )
        return {k: [v.strip() for v in vs] if isinstance(vs, list) else vs for k, vs in value.items()}

    @model_validator(mode="after")
    def _categories_listed(self) -> DataConfig:
        for name, values in self.static_categories.items():
            if not values or len(set(values)) != len(values) or not all(v.strip() for v in values):
                raise ValueError(f"static_categories.{name}: list each of the column's values once, as text")
            if name in (*self.file_columns, self.date_column, self.series_column):
                raise ValueError(f"static_categories.{name}: the column is already used as another input or key")
        if len(self.category_columns) > MAX_CATEGORY_INPUTS:
            raise ValueError(
                f"static_categories: {len(self.category_columns)} values in all; at most {MAX_CATEGORY_INPUTS} "
                "one-hot inputs (group the rare ones)"
            )
        return self

    @model_validator(mode="after")
    def _distinct_columns(self) -> DataConfig:
        seen: set[str] = set()
        for name in self.columns:
            if name in seen:
                raise ValueError(
                    f"column '{name}' is listed twice in target/features/future_features (or is a calendar column)"
                )
            seen.add(name)
        for key in ("date_column", "series_column"):
            value = getattr(self, key)
            if value is not None and value in seen:
                raise ValueError(f"{key} '{value}' cannot also be a target or feature")
        if self.date_format is not None and ("%z" in self.date_format or "%Z" in self.date_format):
            raise ValueError("date_format: dates are read as local times, without a time zone (%z, %Z)")
        if self.date_format is not None and self.date_column is None:
            raise ValueError("date_format needs date_column")
        if (self.calendar or self.holidays) and self.date_column is None:
            raise ValueError("calendar features are computed from the dates: set date_column too")
        if len(set(self.calendar)) != len(self.calendar):
            raise ValueError("list each calendar feature once")
        if (self.static_features or self.static_categories) and self.series_column is None:
            raise ValueError("static features tell the series of a long-format file apart: set series_column too")
        if self.series_column is not None and self.series_column == self.date_column:
            raise ValueError("series_column and date_column must be different columns")
        return self

    @property
    def columns(self) -> list[str]:
        """The input columns in model order: targets, features, static features and the categories'
        one-hot columns (``region=north``), future features, then the columns computed from the dates."""
        past = [*self.target, *self.features, *self.static_features, *self.category_columns]
        return [*past, *self.future_features, *self.generated_columns, *self.lag_columns]

    @property
    def file_columns(self) -> list[str]:
        """The numeric input columns read from the CSV."""
        return [*self.target, *self.features, *self.static_features, *self.future_features]

    @property
    def category_pairs(self) -> list[tuple[str, str]]:
        """(column, value) of each one-hot input of ``static_categories``, in the config's order."""
        return [(name, value) for name, values in self.static_categories.items() for value in values]

    @property
    def category_columns(self) -> list[str]:
        """The one-hot columns' names: ``column=value``."""
        return [f"{name}={value}" for name, value in self.category_pairs]

    @property
    def generated_columns(self) -> list[str]:
        """The input columns computed from the dates (calendar, holidays): the last ones."""
        return [*calendar_columns(list(self.calendar)), *(["holiday"] if self.holidays else [])]

    @property
    def lag_columns(self) -> list[str]:
        """The lagged targets' names, ``demand_lag336``, lag by lag: the last input columns."""
        return [f"{t}_lag{p}" for p in self.lags for t in self.target]

    @property
    def lag_targets(self) -> list[int]:
        """The target each lag column lags (its position among the targets), in column order."""
        return [j for _ in self.lags for j in range(len(self.target))]

    @property
    def static_columns(self) -> list[int]:
        """Positions of the static features (numeric, then one-hot) among the input columns."""
        start = len(self.target) + len(self.features)
        return list(range(start, start + len(self.static_features) + len(self.category_columns)))

    @property
    def future_columns(self) -> list[int]:
        """Positions of the columns known for the horizon (future features, calendar: the last ones)."""
        n = len(self.columns)
        known = len(self.future_features) + len(self.generated_columns) + len(self.lag_columns)
        return list(range(n - known, n))

    def source_of(self, j: int) -> tuple[str, int]:
        """Where model input ``j`` comes from: ("file", position in ``file_columns``), ("category",
        position in ``category_columns``), ("dates", position in ``generated_columns``) or ("lag",
        position in ``lag_columns``)."""
        a = len(self.target) + len(self.features) + len(self.static_features)
        c, f, g = len(self.category_columns), len(self.file_columns), len(self.generated_columns)
        if j < a:
            return "file", j
        if j < a + c:
            return "category", j - a
        if j < f + c:
            return "file", j - c
        if j < f + c + g:
            return "dates", j - f - c
        return "lag", j - f - c - g


class TrainConfig(_Section):
    """The optimisation loop."""

    epochs: int = Field(200, gt=0)
    batch_size: int | Literal["auto"] = Field(
        "auto",
        description="windows per optimiser step; auto: 64, halved (to 8 at least) until an epoch takes 16 "
        "steps, doubled (to 1024 at most) until it takes at most 256",
    )
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    optimizer: Literal["adam", "adamw"] = "adamw"
    loss: Literal["mse", "mae", "huber", "quantile"] = Field(
        "mae",
        description="what training minimises (and early stopping watches), on the scaled targets; quantile: "
        "the pinball loss of each of model.quantiles, averaged",
    )
    grad_clip: float | None = Field(1.0, gt=0.0, description="max gradient norm; null turns clipping off")
    schedule: Literal["plateau", "cosine", "none"] = Field(
        "plateau", description="plateau halves lr when val loss stalls; cosine anneals over epochs"
    )
    patience: int | Literal["auto"] = Field(
        "auto",
        description="epochs without a better val loss before stopping; auto: enough epochs for 400 optimiser "
        "steps, 20 to 100 (a short series' epochs are a few steps each)",
    )
    ensemble: int = Field(
        1,
        ge=1,
        le=64,
        description="members trained side by side from their own initial weights (one seed stream): the forecast "
        "is their mean; on a CPU K members cost 0.6 K (a short series) to about K times one model's training",
    )
    refit: bool = Field(
        False,
        description="once early stopping has chosen the epoch, train a fresh model on the training and validation "
        "windows for as many epochs: the saved model, scored on test (validation scores and the intervals' "
        "calibration stay the early-stopped model's); not the default: on M3 it gained nothing on average",
    )
    seed: int = Field(0, ge=0, le=2**63 - 1)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="autocast dtype on CUDA")
    threads: int | None = Field(
        None,
        gt=0,
        description="CPU threads (default: one per 8M multiply-adds of a step, within the cores and cgroup quota)",
    )
    cuda_graphs: bool = Field(
        True, description="on one GPU, replay each full batch's whole step as a captured CUDA graph"
    )

    @field_validator("batch_size", "patience")
    @classmethod
    def _positive_or_auto(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v <= 0:
            raise ValueError("Input should be greater than 0 (or auto)")
        return v


class OutputConfig(_Section):
    """Where the run directory goes."""

    dir: str | None = Field(None, description="run directory (default runs/<config name>)")


# ---------------------------------------------------------------------------------------------
# The search space of ``lstm tune`` (the config's ``tune:`` section)

Choice = bool | int | float | str | None
TUNE_GRAMMAR = "[low, high], [low, high, log] or {choices: [a, b, ...]} (or a list of non-numbers)"
# Keys a trial may not take from the search space: where its run directory goes is lstm tune's.
UNTUNABLE = ("output.",)


class TuneParam(_Section):
    """One dimension of the search space: an int range (both ends ints), a float range, or choices."""

    kind: Literal["int", "float", "choice"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Choice] | None = None

    def probes(self) -> list[Choice]:
        """The values that stand for the whole dimension when the config checks it: both ends (and,
        for a float range, a value between them, which an int key refuses), or every choice."""
        if self.kind == "choice":
            return list(self.choices or [])
        if self.kind == "int":
            return [int(self.low), int(self.high)]  # type: ignore[arg-type]
        low, high = float(self.low), float(self.high)  # type: ignore[arg-type]
        middle = low + (high - low) * 0.382  # a fraction wherever the ends are whole numbers
        return [low, high] if low == high else [low, high, middle]

    def describe(self) -> str:
        """As the user wrote it: ``[16, 128, log]``, ``{choices: [mse, mae]}``."""
        if self.kind == "choice":
            return "{choices: [" + ", ".join(_flow(c) for c in self.choices or []) + "]}"
        low, high = self.probes()[:2]
        return f"[{low}, {high}{', log' if self.log else ''}]"


def _flow(value: Any) -> str:
    return str(yaml.safe_dump(value, default_flow_style=True)).removesuffix("\n...\n").strip()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_tune_param(key: str, raw: Any) -> TuneParam:
    """One ``tune:`` entry in the grammar of TUNE_GRAMMAR; a bad one is a ValueError naming the key."""
    where = f"tune.{key}"
    if isinstance(raw, dict):
        if set(raw) != {"choices"} or not isinstance(raw["choices"], list):
            raise ValueError(f"{where}: expected {TUNE_GRAMMAR}, got {_flow(raw)}")
        return _choices(where, raw["choices"])
    if not isinstance(raw, list):
        raise ValueError(f"{where}: expected {TUNE_GRAMMAR}, got {_flow(raw)}")
    if not any(_is_number(v) for v in raw):
        return _choices(where, raw)
    log = len(raw) == 3 and raw[2] == "log"
    if not (len(raw) == 2 or log) or not all(_is_number(v) for v in raw[:2]):
        raise ValueError(
            f"{where}: a range is [low, high] or [low, high, log] of two numbers; for numeric choices "
            f"write {{choices: [...]}}, got {_flow(raw)}"
        )
    low, high = raw[0], raw[1]
    kind: Literal["int", "float"] = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ValueError(f"{where}: a range needs low < high, got {_flow(raw)}")
    if log and low <= 0:
        raise ValueError(f"{where}: a log range needs low > 0, got {_flow(raw)}")
    return TuneParam(kind=kind, low=low, high=high, log=log)


def _choices(where: str, values: list[Any]) -> TuneParam:
    if len(values) < 2:
        raise ValueError(f"{where}: list at least two choices, got {_flow(values)}")
    if any(isinstance(v, list | dict) for v in values):
        raise ValueError(
            f"{where}: each choice is one value (a number, a word, true/false or null), got {_flow(values)}"
        )
    if len({_flow(v) for v in values}) != len(values):
        raise ValueError(f"{where}: a choice is listed twice, got {_flow(values)}")
    return TuneParam(kind="choice", choices=values)


def check_tune_key(key: str) -> None:
    """``key`` names one value of the config schema (``model.m``, ``data.split.val``), not a section."""
    parts = key.split(".")
    section: type[BaseModel] = Config
    for depth, part in enumerate(parts):
        fields = {name: f for name, f in section.model_fields.items() if name != "tune"}
        if part not in fields:
            prefix = ".".join(parts[:depth])
            close = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.5)
            hint = (
                f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)"
                if close
                else f"; valid keys{' in ' + prefix if prefix else ''}: {', '.join(fields)}"
            )
            raise ValueError(f"tune.{key}: unknown config key '{key}'{hint}")
        annotation = fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            if depth < len(parts) - 1:
                raise ValueError(f"tune.{key}: {'.'.join(parts[: depth + 1])} is a value, not a section")
            break
        if depth == len(parts) - 1:
            first = next(iter(annotation.model_fields))
            raise ValueError(f"tune.{key}: {key} is a section; name one of its keys (e.g. {key}.{first})")
        section = annotation
    if key.startswith(UNTUNABLE):
        raise ValueError(f"tune.{key}: lstm tune chooses where each trial's run goes (--out); {key} cannot be tuned")


def _flat_tune(node: dict[Any, Any], prefix: str = "") -> dict[str, Any]:
    """``{model: {m: [8, 64]}}`` (what ``--set tune.model.m=[8,64]`` makes) as ``{"model.m": [8, 64]}``;
    a mapping other than ``{choices: [...]}`` is a section of keys."""
    flat: dict[str, Any] = {}
    for key, raw in sorted(node.items(), key=lambda kv: isinstance(kv[1], dict) and "choices" not in kv[1]):
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise ValueError(f"tune: {prefix}{key!r} is not a config key such as model.m")
        full = prefix + key
        inner = _flat_tune(raw, full + ".") if isinstance(raw, dict) and "choices" not in raw else {full: raw}
        flat.update(inner)
    # A key both flat and nested: the nested one wins, since that is what `--set tune.a.b=...` writes.
    return flat


def with_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``key.path`` set to its value (the trial's config, before validation)."""
    result = _deep_copy(raw)
    for key, value in values.items():
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


class Config(_Section):
    """A whole run: model, data, train, output (and the search space of lstm tune)."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    # Not part of a run: never written into a run's config.yaml (exclude), so lstm train ignores it.
    tune: dict[str, TuneParam] | None = Field(
        None,
        exclude=True,
        description=f"lstm tune's search space: config key -> {TUNE_GRAMMAR}",
    )

    @field_validator("tune", mode="before")
    @classmethod
    def _tune_grammar(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict) or not value:
            raise ValueError(f"tune: expected a mapping of config keys to {TUNE_GRAMMAR}, got {_flow(value)}")
        parsed = {}
        for key, raw in _flat_tune(value).items():
            if raw is None:  # `--set tune.a.b=null` takes a key out of the space
                continue
            if isinstance(raw, TuneParam):
                parsed[key] = raw
                continue
            check_tune_key(key)
            parsed[key] = parse_tune_param(key, raw)
        return parsed

    @model_validator(mode="before")
    @classmethod
    def _default_quantiles(cls, data: Any) -> Any:
        """train.loss: quantile without model.quantiles trains DEFAULT_QUANTILES (written into the run's config)."""
        if isinstance(data, dict) and isinstance(data.get("model"), dict) and isinstance(data.get("train"), dict):
            if data["train"].get("loss") == "quantile" and data["model"].get("quantiles") is None:
                return {**data, "model": {**data["model"], "quantiles": list(DEFAULT_QUANTILES)}}
        return data

    @model_validator(mode="after")
    def _n_matches_columns(self) -> Config:
        cols = self.data.columns
        if self.model.n != len(cols):
            raise ValueError(
                f"model.n is {self.model.n} but data.target + data.features"
                f"{' + data.static_features' if self.data.static_features else ''}"
                f"{' + one per data.static_categories value' if self.data.static_categories else ''}"
                f"{' + data.future_features' if self.data.future_features else ''}"
                f"{' + 2 per data.calendar feature' if self.data.calendar else ''}"
                f"{' + 1 for data.holidays' if self.data.holidays else ''}"
                f"{' + one per target and data.lags lag' if self.data.lags else ''} name {len(cols)} "
                f"column(s) ({', '.join(cols)}); n must equal the number of input columns"
            )
        if self.model.quantiles is not None and self.train.loss != "quantile":
            raise ValueError(
                f"model.quantiles is set but train.loss is {self.train.loss!r}; quantiles are trained with "
                "train.loss: quantile (a point model gets calibrated intervals without them)"
            )
        if self.parameters > MAX_PARAMETERS:
            raise ValueError(
                f"the model would have {self.parameters:,} parameters (m = {self.model.m}, layers = "
                f"{self.model.layers}, horizon = {self.data.horizon}"
                + (f", {self.train.ensemble} members" if self.train.ensemble > 1 else "")
                + f"); lstm trains at most {MAX_PARAMETERS:,}"
            )
        return self

    @model_validator(mode="after")
    def _drift_has_a_trend_to_read(self) -> Config:
        if not self.model.drift:
            return self
        if self.model.normalize not in ("last", "season"):
            raise ValueError(
                f"model.drift continues model.normalize's base, so it needs normalize last or season, "
                f"got {self.model.normalize!r}"
            )
        s, L = self.data.s, self.data.lookback
        if L <= s:
            raise ValueError(
                f"model.drift reads the trend as the change over a whole season (s = {s}), so it needs "
                f"data.lookback longer than {s}, got {L}"
            )
        return self

    @model_validator(mode="after")
    def _tune_values_fit(self) -> Config:
        """Each end of a range and each choice, set alone in this config, must give a valid config."""
        if not self.tune:
            return self
        base = self.to_dict()
        for key, param in self.tune.items():
            for value in param.probes():
                try:
                    Config.model_validate(with_values(base, {key: value}))
                except ValidationError as exc:
                    raise ValueError(
                        f"tune.{key}: {_flow(value)} (from {param.describe()}) is not a valid value: "
                        f"{describe_validation_error(exc)}"
                    ) from None
        return self

    @property
    def parameters(self) -> int:
        """The forecaster's parameter count: per layer 4m(n_l + m) weights and two 4m biases (PyTorch's
        layout), then the head (m + H·f future values) -> H·k·Q; times the members of an ensemble."""
        n, m, layers = self.model.n, self.model.m, self.model.layers
        lstm = sum(4 * m * ((n if layer == 0 else m) + m) + 8 * m for layer in range(layers))
        out = self.data.horizon * len(self.data.target) * self.model.outputs_per_value
        head_in = m + self.data.horizon * len(self.data.future_columns)
        return (lstm + head_in * out + out) * self.train.ensemble

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON output."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply ``key.path=value`` overrides, validate once.

    ``data.path`` is resolved relative to the config file's directory.
    """
    path = Path(path)
    text = read_config_text(path)
    raw = parse_yaml(text, str(path))
    raw = apply_overrides(raw, overrides)
    cfg = validate_config(raw, str(path))
    data_path = Path(expand(cfg.data.path))
    if not data_path.is_absolute():
        data_path = Path(os.path.normpath(path.parent / data_path))
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(data_path)})})


def read_config_text(path: Path) -> str:
    """A config file's text: a regular UTF-8 file of at most MAX_CONFIG_BYTES."""
    return read_text(path, "YAML config file", ConfigError, MAX_CONFIG_BYTES)


class _Refused(yaml.composer.ComposerError):
    """Valid YAML that a config may not use (an alias, a duplicate key, deep nesting)."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader made strict for configs.

    - No aliases (``*name``): PyYAML shares an aliased node, but everything after it (pydantic,
      copies, dumps) walks each reference, so nine lines of nested aliases become 10^9 values.
      A config has no use for them.
    - No duplicate keys: PyYAML keeps the last silently, so a repeated key hides the first value.
    - At most MAX_YAML_DEPTH levels: composing is recursive, and 100,000 nested brackets would
      exhaust the interpreter's stack.
    """

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                None,
                None,
                f"aliases (*{event.anchor}) are not allowed in a config; write the value out",
                event.start_mark,
            )
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise _Refused(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first is not key_node:
                raise _Refused(
                    None,
                    None,
                    f"key {key!r} appears twice (first on line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML with the strict loader; every problem becomes one ConfigError line with the position."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        if isinstance(exc, _Refused):
            raise ConfigError(f"{source}: {where}: {exc.problem}") from None
        raise ConfigError(f"{source}: malformed YAML at {where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: malformed YAML: {exc}") from None
    except ValueError as exc:  # Python refuses to read an integer of more than 4,300 digits
        what = "a number of more than 4,300 digits" if "digits" in str(exc) else str(exc).splitlines()[0][:200]
        raise ConfigError(f"{source}: cannot read a value: {what}") from None


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """A YAML mapping (the strict loader), turning syntax errors into one line with the position."""
    raw = load_yaml(text, source)
    if raw is None:
        raise ConfigError(f"{source}: config is empty; expected a mapping with model and data sections")
    if not isinstance(raw, dict):
        kind = {"str": "plain text (a CSV file?)", "list": "a list"}.get(type(raw).__name__, type(raw).__name__)
        raise ConfigError(f"{source}: not a config: expected a mapping with model and data sections, got {kind}")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b.c=VALUE`` set (VALUE parsed as YAML)."""
    result = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. train.lr=0.001")
        try:
            value = load_yaml(text, f"--set {item!r}") if text.strip() else None
        except ConfigError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None
        node = result
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {item!r}: {where} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


# Keys whose default changed after a release, with the value a run that does not name them was
# trained with. A run stores its whole config, so a key is absent only from a run an older
# version wrote, which must keep meaning what it meant then.
BEFORE_DEFAULT_CHANGED: dict[tuple[str, str], Any] = {
    ("model", "window_scale"): False,  # default true since 0.2.0
    ("train", "loss"): "mse",  # default mae since 0.2.0
    ("train", "batch_size"): 64,  # default auto since 0.2.0
    ("model", "combine"): "none",  # default auto since the average with Theta came; runs before never averaged
}


def validate_config(raw: dict[str, Any], source: str, stored: bool = False) -> Config:
    """Validate a dict into a ``Config``; the first problem becomes a one-line ``ConfigError``.
    ``stored``: a config a run wrote, whose absent keys take their older defaults."""
    if stored:
        raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
        for (section, key), value in BEFORE_DEFAULT_CHANGED.items():
            part = raw.get(section)
            if isinstance(part, dict):
                part.setdefault(key, value)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line for the first error, with the key's full path and what was expected."""
    errors = exc.errors()
    err = errors[0]
    loc = [str(p) for p in err["loc"]]
    # `target: [a, b]` reports loc ('data', 'target', 0): the key is data.target[0].
    key = ".".join(p for p in loc if not p.isdigit())
    index = "".join(f"[{p}]" for p in loc if p.isdigit())
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    kind = err["type"]
    if loc[:1] == ["tune"] and kind == "value_error":  # the message names the key and shows the value
        return str(err["msg"]).removeprefix("Value error, ") + more
    if kind == "extra_forbidden":
        hint = _nearest_key(loc)
        return f"unknown key '{key}'{hint}{more}"
    if kind == "missing":
        return f"missing required key '{key}'{more}"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if not key:
        return f"{msg}{more}"
    got = err.get("input")
    shown = (
        ""  # a section's own check (split, drift): its message names the values; the input is the section
        if isinstance(got, dict) and kind == "value_error"
        else ", got a mapping"
        if isinstance(got, dict)
        else ", got a list"
        if isinstance(got, list)
        else f", got {got!r}"
    )
    return f"{key}{index}: {msg[0].lower()}{msg[1:]}{shown}{more}"


def _nearest_key(loc: list[str]) -> str:
    section: type[BaseModel] = Config
    for part in loc[:-1]:
        field = section.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        section = annotation
    valid = list(section.model_fields)
    close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
    prefix = ".".join(loc[:-1])
    if close:
        return f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)"
    return f"; valid keys{' in ' + prefix if prefix else ''}: {', '.join(valid)}"


def _deep_copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _deep_copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_deep_copy(v) for v in node]
    return node


def default_run_dir(config_path: str | os.PathLike[str], cfg: Config) -> Path:
    """``output.dir`` if set (relative to the working directory), else ``runs/<config name>``."""
    if cfg.output.dir:
        return Path(expand(cfg.output.dir))
    return Path("runs") / Path(config_path).stem
