"""``lstm train`` as one library call: read, check, fit, evaluate, write the run directory."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstmcli.config import Config, load_yaml, parse_yaml, read_config_text, validate_config
from lstmcli.data.dataset import Dataset, load_dataset
from lstmcli.data.dates import describe_dates
from lstmcli.errors import CheckpointError, DataError, Interrupted, ResourceError, TrainingError
from lstmcli.evaluate import evaluate_split
from lstmcli.fsutil import atomic_write, atomic_write_json, check_regular, sha256, sha256_file
from lstmcli.plots import loss_curve
from lstmcli.plots import preload as preload_plotting
from lstmcli.runs import checkpoints as ck
from lstmcli.runs.store import CHECKPOINT_DIR, CONFIG, HISTORY, LOSS_PLOT, MARKER, META, METRICS, STATE_POINTER, RunDir
from lstmcli.training.device import check_threads, resolve_device
from lstmcli.training.distributed import Dist, peers_lost_is_one_line, shutdown
from lstmcli.training.interrupts import StopSignals
from lstmcli.training.trainer import EpochReport, Trainer, TrainResult, fit


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
    resume: bool = False,
    on_resume: Callable[[int], None] | None = None,
    dist: Dist | None = None,
) -> TrainSummary:
    """Train ``cfg`` into ``run_dir`` and return the test metrics.

    The data is read and checked before the run directory is touched. The run trains in
    ``run_dir/partial`` with a checkpoint every epoch, and its files are moved into ``run_dir``
    only once it has finished (``runs.store``), so a run that fails leaves the previous one as it
    was. With ``resume`` the run continues from its checkpoint (or starts, if no epoch was saved
    yet). SIGINT/SIGTERM stop at the next batch with the last checkpoint intact and raise
    ``Interrupted``. Under torchrun every rank trains; rank 0 alone locks, checkpoints, evaluates
    and writes the run directory.
    """
    dist = dist or Dist()
    if not dist.is_main:
        return _follow(cfg, run_dir, resume, dist)
    with StopSignals() as stop:
        check_threads(cfg.train.threads)
        check_regular(cfg.data.path, "CSV file", DataError)
        data_sha = sha256_file(cfg.data.path, DataError)  # once: the resume check and the parse cache's key
        ds = load_dataset(cfg.data, content_sha256=data_sha)
        resolve_device(cfg.train.device, dist.local_world)  # an unavailable device fails before the run directory is touched
        cfg = cfg.model_copy(
            update={"data": cfg.data.model_copy(update={"path": str(Path(cfg.data.path).resolve())})}
        )
        config_text = cfg.to_yaml()
        if stop.signum:
            raise Interrupted(f"{stop.name}: stopped before training started; nothing was written", stop.exit_code)
        run = RunDir(run_dir)
        with run.locked():
            work, saved = _prepare_resume(run, config_text, data_sha, cfg.parameters) if resume else (_start_new(run, overwrite, config_text), None)
            with _out_of_memory_is_one_line():
                trainer = Trainer(cfg, ds, dist=dist)
            if saved is not None:
                try:
                    trainer.restore(saved.tensors, saved.info)
                except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as exc:
                    # A checkpoint with matching checksums but the wrong contents (hand-made or
                    # from another version): refuse it in one line.
                    what = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                    raise CheckpointError(
                        f"{work / CHECKPOINT_DIR / STATE_POINTER}: the checkpoint does not fit this run's model and optimizer ({what})"
                    ) from None
                if on_resume is not None:
                    on_resume(saved.epoch)
            if on_start is not None:
                on_start(ds)
            trainer.poll = lambda: _poll(stop, trainer, run_dir)

            def epoch_end(report: EpochReport) -> None:
                preload_plotting()  # matplotlib loads on a side thread while the next epochs train
                if on_epoch_end is not None:
                    on_epoch_end(report)

            def save_checkpoint(tr: Trainer) -> None:
                tensors, info = tr.snapshot()
                info.update(config_sha256=sha256(config_text), data_sha256=data_sha)
                ck.save_train_state(work, tensors, info)
                run.epoch_saved()

            start = time.perf_counter()
            try:
                with _out_of_memory_is_one_line(), peers_lost_is_one_line(dist):
                    result = fit(cfg, ds, on_epoch_end=epoch_end, after_epoch=save_checkpoint, trainer=trainer)
            except (TrainingError, ResourceError) as exc:
                if not run.in_progress():
                    raise
                # The failed epoch was never checkpointed: the last checkpoint holds the best weights.
                previous = f"; the previous run in {run_dir} is unchanged" if run.finished() else ""
                raise type(exc)(f"{exc} (checkpoint in {work / CHECKPOINT_DIR}{previous})") from None
            with peers_lost_is_one_line(dist):
                shutdown(dist)  # the other ranks are done; rank 0 evaluates and writes alone
            seconds = time.perf_counter() - start
            summary = _finish(cfg, ds, config_text, work, result, seconds, dist.world)
            run.commit()
            return TrainSummary(run_dir=run_dir, metrics=summary, result=result)


@contextlib.contextmanager
def _out_of_memory_is_one_line() -> Iterator[None]:
    """Running out of memory (torch's allocators, numpy) is a runtime failure of one line, exit 1."""
    hint = "use a smaller model.m, model.layers or train.batch_size"
    try:
        yield
    except MemoryError:
        raise ResourceError(f"training ran out of memory; {hint}") from None
    except RuntimeError as exc:  # torch.OutOfMemoryError (CUDA) is a RuntimeError too
        text = str(exc)
        if "out of memory" not in text.lower() and "can't allocate memory" not in text.lower():
            raise
        size = re.search(r"allocate (\d+) bytes", text) or re.search(r"allocate ([\d.]+ ?[KMGT]i?B)", text)
        amount = size.group(1) if size is None or not size.group(1).isdigit() else f"{int(size.group(1)) / 1e9:.3g} GB"
        tried = f" (it tried to allocate {amount} more)" if size else ""
        raise ResourceError(f"training ran out of memory{tried}; {hint}") from None


def _start_new(run: RunDir, overwrite: bool, config_text: str) -> Path:
    """``partial/`` for a new run; a finished or unfinished run already there needs ``--overwrite``
    (and stays in place until the new run has something to replace it with)."""
    if (run.finished() or run.in_progress() or run.legacy_unfinished()) and not overwrite:
        unfinished = run.in_progress() or run.legacy_unfinished()
        resume = " or --resume to continue it" if unfinished else ""
        raise CheckpointError(
            f"{run.path}: a run directory is already there; pass --overwrite to replace it{resume}, "
            "or set output.dir (--set output.dir=...)"
        )
    run.adopt_legacy()
    return run.start(config_text)


def _follow(cfg: Config, run_dir: Path, resume: bool, dist: Dist) -> TrainSummary:
    """A rank other than 0: train in step with rank 0 (from its checkpoint when resuming), write nothing."""
    ds = load_dataset(cfg.data)
    trainer = Trainer(cfg, ds, dist=dist)
    saved = ck.load_train_state(RunDir(run_dir).partial, cfg.parameters) if resume else None
    if saved is not None:
        trainer.restore(saved.tensors, saved.info)
    with peers_lost_is_one_line(dist):
        result = fit(cfg, ds, trainer=trainer)
        shutdown(dist)
    return TrainSummary(run_dir=run_dir, metrics={}, result=result)


def resume_run(
    run_dir: Path,
    on_start: Callable[[Dataset], None] | None = None,
    on_epoch_end: Callable[[EpochReport], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> TrainSummary:
    """Continue the run in ``run_dir`` with its own config (the one it started with)."""
    run = RunDir(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run directory not found")
    if not run.is_ours():
        raise CheckpointError(f"{run_dir}: not an lstm run directory (no {MARKER} marker); nothing to resume")
    ck.refuse_pickles(run_dir)
    config_path = run.partial / CONFIG if (run.partial / CONFIG).is_file() else run_dir / CONFIG
    if run.awaiting_commit():
        with run.locked():
            pass  # taking the lock completes the interrupted move into place (RunDir.recover)
        raise CheckpointError(_finished_message(run_dir) + "; its interrupted move into place was completed now")
    if run.finished() and not run.in_progress():
        raise CheckpointError(_finished_message(run_dir))
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: missing, so there is no run to resume here; start it with lstm train CONFIG --resume")
    source = str(config_path)
    cfg = validate_config(parse_yaml(read_config_text(config_path), source), source)
    return train_run(cfg, run_dir, resume=True, on_start=on_start, on_epoch_end=on_epoch_end, on_resume=on_resume)


def _finished_message(run_dir: Path) -> str:
    return (
        f"{run_dir}: this run already finished ({METRICS} is there); nothing to resume "
        "(to train it again: lstm train CONFIG --overwrite)"
    )


def _poll(stop: StopSignals, trainer: Trainer, run_dir: Path) -> None:
    if stop.signum is None:
        return
    epoch = trainer.state.epoch
    saved = f"the checkpoint of epoch {epoch} is saved" if epoch else "no epoch had finished"
    raise Interrupted(f"{stop.name}: stopped training; {saved}. Resume with: lstm resume {run_dir}", stop.exit_code)


def _prepare_resume(
    run: RunDir, config_text: str, data_sha: str, parameters: int
) -> tuple[Path, ck.TrainCheckpoint | None]:
    """The unfinished run of this very config and data in ``run``, and its checkpoint (None, and a
    fresh ``partial/``, when no epoch was saved yet)."""
    ck.refuse_pickles(run.path)
    run.adopt_legacy()
    if not run.in_progress():
        if run.finished():
            raise CheckpointError(_finished_message(run.path))
        return run.start(config_text), None
    work = run.partial
    config_path = work / CONFIG
    stored = read_config_text(config_path) if config_path.is_file() else None
    if stored is not None and stored != config_text:
        raise CheckpointError(f"{config_path}: {_config_difference(stored, config_text)}")
    saved = ck.load_train_state(work, parameters)
    if saved is None:
        return run.start(config_text), None
    pointer = work / CHECKPOINT_DIR / STATE_POINTER
    if saved.info.get("config_sha256") != sha256(config_text):
        raise CheckpointError(
            f"{config_path}: was edited after the checkpoint in {pointer} was written; restore it or start a new run"
        )
    if saved.info.get("data_sha256") not in (None, data_sha):
        raise CheckpointError(
            f"{pointer}: the data file changed since this run started (sha256 differs); "
            "resuming would not continue the same training, start a new run"
        )
    return work, saved


def _config_difference(stored: str, wanted: str) -> str:
    """Name the first keys where the run's config and the given one differ."""
    def flat(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for k, v in node.items():
                out.update(flat(v, f"{prefix}{k}."))
            return out
        return {prefix[:-1]: node}

    a, b = flat(load_yaml(stored, "the run's config")), flat(load_yaml(wanted, "the config"))
    keys = [k for k in [*a, *(k for k in b if k not in a)] if a.get(k) != b.get(k)]
    shown = ", ".join(f"{k} is {a.get(k)!r} in the run but {b.get(k)!r} now" for k in keys[:3])
    return (
        f"the run was started with a different config ({shown or 'formatting differs'}); resume with the run's "
        "own config (lstm resume RUN), or train a new run (--overwrite or another output.dir)"
    )


def _finish(
    cfg: Config, ds: Dataset, config_text: str, run_dir: Path, result: TrainResult, seconds: float, processes: int = 1
) -> dict[str, Any]:
    """Evaluate and write the finished run's files into ``run_dir`` (``partial/``); metrics.json
    last marks it finished. Returns the metrics."""
    windows = result.windows  # evaluated on the device it was trained on
    metrics = {
        "test": evaluate_split(result.model, windows, ds, "test", cfg.data.season),
        "val": evaluate_split(result.model, windows, ds, "val", cfg.data.season),
        "windows": ds.counts(),
        "best_epoch": result.state.best_epoch,
        "epochs_run": result.state.epoch,
        "stopped_early": result.state.stopped_early,
        "best_val_loss": result.state.best_val,
        "train_seconds": round(seconds, 3),
        "device": result.device,
        "precision": result.precision,
        "processes": processes,
    }
    weights_sha = ck.save_model(run_dir, result.model, sha256(config_text))
    meta = ck.run_meta(
        cfg,
        config_text,
        {
            "weights_sha256": weights_sha,
            **series_meta(ds),
            "data": {"path": cfg.data.path, "rows": ds.table.n_rows, **describe_dates(ds.table.dates)},
        },
    )
    atomic_write_json(run_dir / META, meta)
    atomic_write(run_dir / HISTORY, history_csv(result.state.history))
    loss_curve(result.state.history, result.state.best_epoch, run_dir / LOSS_PLOT)
    atomic_write_json(run_dir / METRICS, metrics)  # last: its presence marks a finished run
    return metrics


def series_meta(ds: Dataset) -> dict[str, Any]:
    """Scaler, split rows and dates per series (one record, id null, for a single series)."""
    series = [
        {
            "id": s.id,
            "rows": s.stop - s.start,
            "scaler": s.scaler.to_dict(),
            "split": {"n_rows": s.split.n_rows, "train_end": s.split.train_end, "val_end": s.split.val_end},
            **describe_dates(None if ds.table.dates is None else ds.table.dates[s.start : s.stop]),
        }
        for s in ds.series
    ]
    return {"series": series}


def history_csv(history: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", "train_loss", "val_loss", "lr", "seconds"])
    for h in history:
        writer.writerow([h["epoch"], f"{h['train_loss']:.8g}", f"{h['val_loss']:.8g}", f"{h['lr']:.6g}", f"{h['seconds']:.4f}"])
    return buf.getvalue()
