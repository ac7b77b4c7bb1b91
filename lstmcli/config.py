"""The one config schema: YAML -> dict -> ``--set`` overrides -> validated, frozen ``Config``."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lstmcli.errors import ConfigError


class _Section(BaseModel):
    # Lax mode on purpose: PyYAML reads `lr: 1e-3` as a string and pydantic converts it.
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(_Section):
    """The stacked LSTM: n inputs per step, m units per layer, `layers` layers."""

    n: int = Field(gt=0, description="inputs per time step: the target columns plus the feature columns")
    m: int = Field(64, gt=0, description="units per layer: the size of y_t and c_t")
    layers: int = Field(2, gt=0, description="stacked LSTM layers")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout between stacked layers")
    normalize: Literal["last", "mean", "none"] = Field(
        "last",
        description="window-relative level: subtract each window's last (or mean) target value "
        "from its target inputs and add it back to the forecast",
    )


class SplitConfig(_Section):
    """Chronological split fractions by row; test takes the rest."""

    train: float = Field(0.70, gt=0.0, lt=1.0)
    val: float = Field(0.15, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _leaves_a_test_split(self) -> SplitConfig:
        if self.train + self.val >= 1.0:
            raise ValueError(f"train + val must be below 1 to leave a test split, got {self.train} + {self.val}")
        return self


class DataConfig(_Section):
    """Where the series is and how windows are cut from it."""

    path: str = Field(description="CSV file, relative to the config file")
    date_column: str | None = Field(None, description="optional date column (ISO dates), checked to be increasing")
    series_column: str | None = Field(
        None, description="long format: column naming the series of each row; one global model over all series"
    )
    target: list[str] = Field(min_length=1, description="column(s) to forecast")
    features: list[str] = Field(default_factory=list, description="extra input columns (covariates)")
    lookback: int = Field(gt=0, description="L: input steps per window")
    horizon: int = Field(gt=0, description="H: forecast steps per window")
    season: int = Field(1, ge=1, description="s: seasonal period for the seasonal-naive baseline (1 = none)")
    split: SplitConfig = Field(default_factory=SplitConfig)
    missing: Literal["error", "interpolate", "ffill"] = Field(
        "error", description="what to do with empty or NaN cells"
    )
    transform: Literal["none", "log"] = Field(
        "none", description="log: model log(y) (positive series with multiplicative seasonality)"
    )

    @field_validator("target", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _distinct_columns(self) -> DataConfig:
        seen: set[str] = set()
        for name in self.columns:
            if name in seen:
                raise ValueError(f"column '{name}' is listed twice in target/features")
            seen.add(name)
        for key in ("date_column", "series_column"):
            value = getattr(self, key)
            if value is not None and value in seen:
                raise ValueError(f"{key} '{value}' cannot also be a target or feature")
        if self.series_column is not None and self.series_column == self.date_column:
            raise ValueError("series_column and date_column must be different columns")
        return self

    @property
    def columns(self) -> list[str]:
        """The input columns in model order: targets first, then features."""
        return [*self.target, *self.features]


class TrainConfig(_Section):
    """The optimisation loop."""

    epochs: int = Field(200, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    optimizer: Literal["adam", "adamw"] = "adamw"
    grad_clip: float | None = Field(1.0, gt=0.0, description="max gradient norm; null turns clipping off")
    schedule: Literal["plateau", "cosine", "none"] = Field(
        "plateau", description="plateau halves lr when val loss stalls; cosine anneals over epochs"
    )
    patience: int = Field(20, ge=1, description="epochs without a better val loss before stopping")
    seed: int = Field(0, ge=0, le=2**63 - 1)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="autocast dtype on CUDA")
    threads: int | None = Field(None, gt=0, description="torch CPU threads (default: torch's choice)")
    cuda_graphs: bool = Field(
        True, description="on one GPU, replay each full batch's whole step as a captured CUDA graph"
    )


class OutputConfig(_Section):
    """Where the run directory goes."""

    dir: str | None = Field(None, description="run directory (default runs/<config name>)")


class Config(_Section):
    """A whole run: model, data, train, output."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _n_matches_columns(self) -> Config:
        cols = self.data.columns
        if self.model.n != len(cols):
            raise ValueError(
                f"model.n is {self.model.n} but data.target + data.features name {len(cols)} "
                f"column(s) ({', '.join(cols)}); n must equal the number of input columns"
            )
        return self

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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from None
    raw = parse_yaml(text, str(path))
    raw = apply_overrides(raw, overrides)
    cfg = validate_config(raw, str(path))
    data_path = Path(cfg.data.path)
    if not data_path.is_absolute():
        data_path = Path(os.path.normpath(path.parent / data_path))
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(data_path)})})


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """``yaml.safe_load`` a mapping, turning syntax errors into one line with the position."""
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(f"{source}: malformed YAML at {where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: malformed YAML: {exc}") from None
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
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
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


def validate_config(raw: dict[str, Any], source: str) -> Config:
    """Validate a dict into a ``Config``; the first problem becomes a one-line ``ConfigError``."""
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
    shown = ", got a mapping" if isinstance(got, dict) else ", got a list" if isinstance(got, list) else f", got {got!r}"
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
        return Path(cfg.output.dir)
    return Path("runs") / Path(config_path).stem
