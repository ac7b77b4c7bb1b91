"""A finished run: writing its weights and metadata, and loading it back for predict and inspect."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel

from lstmcli import __version__
from lstmcli.config import MAX_CONFIG_BYTES, Config, parse_yaml, validate_config
from lstmcli.data.dataset import Dataset
from lstmcli.data.dates import describe_dates
from lstmcli.errors import CheckpointError, ResourceError
from lstmcli.fsutil import (
    atomic_write,
    json_text,
    read_text,
    sha256,
)
from lstmcli.model.forecaster import LSTMForecaster
from lstmcli.runs.schema import ColumnsMeta, DataMeta, Metrics, RunMeta, ScalerStats, SeriesMeta, SplitRows, read_model
from lstmcli.runs.store import CONFIG, META, METRICS, WEIGHTS, RunDir
from lstmcli.runs.tensors import read_weights, refuse_pickles, save_tensors

FORMAT = "lstmcli-run"
MOVE_WAIT_SECONDS = 10.0
FORMAT_VERSION = 1


def run_meta(cfg: Config, config_sha256: str, weights_sha256: str, ds: Dataset) -> RunMeta:
    """The metadata every run records next to its weights: columns, and per series its scaler, split
    rows and dates (one series, id None, for a single-series run)."""
    series = [
        SeriesMeta(
            id=s.id,
            rows=s.stop - s.start,
            scaler=ScalerStats(**s.scaler.to_dict()),
            split=SplitRows(
                n_rows=s.split.n_rows,
                train_end=s.split.train_end,
                val_end=s.split.val_end,
                min_history=s.split.min_history,
            ),
            **describe_dates(None if ds.table.dates is None else ds.table.dates[s.start : s.stop]),
        )
        for s in ds.series
    ]
    return RunMeta(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        lstmcli_version=__version__,
        torch_version=torch.__version__,
        config_sha256=config_sha256,
        columns=ColumnsMeta(
            target=list(cfg.data.target),
            features=list(cfg.data.features),
            future_features=list(cfg.data.future_features),
            date_column=cfg.data.date_column,
        ),
        weights_sha256=weights_sha256,
        series=series,
        data=DataMeta(path=cfg.data.path, rows=ds.table.n_rows, **describe_dates(ds.table.dates)),
    )


def write_json_model(path: Path, model: BaseModel) -> None:
    """One of the run's JSON files, atomically, in strict JSON (absent optional parts left out)."""
    atomic_write(path, json_text(model.model_dump(mode="json", exclude_defaults=True)))


def save_model(run_dir: Path, model: torch.nn.Module, config_sha: str) -> str:
    """Write ``model.safetensors`` atomically; return its sha256 for the metadata."""
    return save_tensors(run_dir / WEIGHTS, model.state_dict(), {"format": FORMAT, "config_sha256": config_sha})


# ---------------------------------------------------------------------------------------------
# Loading a run directory


@dataclass(frozen=True)
class Run:
    """A trained run: its config, metadata and model with the trained weights."""

    path: Path
    cfg: Config
    meta: RunMeta
    model: LSTMForecaster

    def metrics(self) -> Metrics | None:
        path = self.path / METRICS
        return read_model(path, Metrics) if path.exists() else None


def load_run(run_dir: str | Path) -> Run:
    """Rebuild the model from the stored config, check every weight's shape, then load it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file, not a run directory" if run_dir.is_file() else "run directory not found"
        raise CheckpointError(f"{run_dir}: {what} (runs are the directories lstm train writes)")
    store = RunDir(run_dir)
    missing = [name for name in (CONFIG, META, WEIGHTS) if not (run_dir / name).is_file()]
    if store.awaiting_commit():
        _complete_move(store)
    if missing and (store.in_progress() or store.legacy_unfinished()):
        raise CheckpointError(
            f"{run_dir}: {missing[0]} is missing: the run has not finished (it stopped after a checkpoint); "
            f"continue it with: lstm resume {run_dir}"
        )
    if missing:
        raise CheckpointError(f"{run_dir}: {missing[0]} is missing; not a complete lstm run directory")
    refuse_pickles(run_dir)
    meta = read_model(run_dir / META, RunMeta)
    config_path = run_dir / CONFIG
    config_text = read_text(config_path, "run config", CheckpointError, MAX_CONFIG_BYTES)
    if sha256(config_text) != meta.config_sha256:
        raise CheckpointError(
            f"{config_path}: was edited after training (its checksum differs from {META}); "
            "the weights belong to the original config — retrain, or restore the file"
        )
    cfg = validate_config(parse_yaml(config_text, str(config_path)), str(config_path), stored=True)
    model = LSTMForecaster.from_config(cfg)
    tensors = read_weights(run_dir / WEIGHTS, meta.weights_sha256, model)
    model.load_state_dict(tensors)
    model.eval()
    return Run(path=run_dir, cfg=cfg, meta=meta, model=model)


def _complete_move(store: RunDir) -> None:
    """A finished run whose move into place is under way (it takes milliseconds) or was interrupted
    by a kill: wait for the trainer to finish it, or complete it, as SQLite's readers roll back a
    hot journal; either way the reader gets the new run."""
    deadline = time.monotonic() + MOVE_WAIT_SECONDS
    while store.awaiting_commit():
        try:
            with store.locked():
                return  # taking the lock completed the move (RunDir.recover)
        except CheckpointError as exc:
            if time.monotonic() > deadline:
                raise ResourceError(
                    f"{store.path}: a finished run is being moved into place here and the move has not "
                    f"completed in {MOVE_WAIT_SECONDS:.0f} s ({exc}); try again"
                ) from None
            time.sleep(0.05)  # the trainer holds the lock while it moves the files
