"""``lstm train`` as one library call: read, check, fit, evaluate, write the run directory."""

from __future__ import annotations

import io
import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstmcli import checkpoint as ck
from lstmcli.config import Config
from lstmcli.data import Dataset, describe_dates, load_dataset
from lstmcli.evaluate import evaluate_split
from lstmcli.plots import loss_curve
from lstmcli.plots import preload as preload_plotting
from lstmcli.train import EpochReport, TrainResult, fit


@dataclass(frozen=True)
class TrainSummary:
    run_dir: Path
    metrics: dict[str, Any]
    result: TrainResult


def train_run(
    cfg: Config,
    run_dir: Path,
    overwrite: bool = False,
    on_start: Callable[[Dataset], None] | None = None,
    on_epoch_end: Callable[[EpochReport], None] | None = None,
) -> TrainSummary:
    """Train ``cfg`` into ``run_dir`` and return the test metrics.

    The data is read and checked before the run directory is touched.
    """
    ds = load_dataset(cfg.data)
    ck.claim_run_dir(run_dir, overwrite)
    cfg = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"path": str(Path(cfg.data.path).resolve())})}
    )
    config_text = cfg.to_yaml()
    ck.atomic_write(run_dir / ck.CONFIG, config_text)
    if on_start is not None:
        on_start(ds)

    def epoch_end(report: EpochReport) -> None:
        preload_plotting()  # matplotlib loads on a side thread while the next epochs train
        if on_epoch_end is not None:
            on_epoch_end(report)

    start = time.perf_counter()
    result = fit(cfg, ds, on_epoch_end=epoch_end)
    seconds = time.perf_counter() - start
    windows = result.windows  # evaluated on the device it was trained on
    metrics = {
        "test": evaluate_split(result.model, windows, ds, "test", cfg.data.season),
        "val": evaluate_split(result.model, windows, ds, "val", cfg.data.season),
        "windows": ds.split.counts(),
        "best_epoch": result.state.best_epoch,
        "epochs_run": result.state.epoch,
        "stopped_early": result.state.stopped_early,
        "best_val_loss": result.state.best_val,
        "train_seconds": round(seconds, 3),
        "device": result.device,
        "precision": result.precision,
    }
    weights_sha = ck.save_model(run_dir, result.model, ck.sha256(config_text))
    meta = ck.run_meta(
        cfg,
        config_text,
        {
            "weights_sha256": weights_sha,
            "scaler": ds.scaler.to_dict(),
            "split": {"n_rows": ds.split.n_rows, "train_end": ds.split.train_end, "val_end": ds.split.val_end},
            "data": {"path": cfg.data.path, "rows": ds.table.n_rows, **describe_dates(ds.table.dates)},
        },
    )
    ck.atomic_write_json(run_dir / ck.META, meta)
    ck.atomic_write(run_dir / ck.HISTORY, history_csv(result.state.history))
    loss_curve(result.state.history, result.state.best_epoch, run_dir / ck.LOSS_PLOT)
    ck.atomic_write_json(run_dir / ck.METRICS, metrics)  # last: its presence marks a finished run
    return TrainSummary(run_dir=run_dir, metrics=metrics, result=result)


def history_csv(history: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", "train_loss", "val_loss", "lr", "seconds"])
    for h in history:
        writer.writerow([h["epoch"], f"{h['train_loss']:.8g}", f"{h['val_loss']:.8g}", f"{h['lr']:.6g}", f"{h['seconds']:.4f}"])
    return buf.getvalue()
