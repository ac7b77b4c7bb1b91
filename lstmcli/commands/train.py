"""``lstm train`` as one recipe with named parts.

1. :func:`prepare`: read and check the data, hash the config and the CSV, resolve the device, each
   once; nothing is written yet, so bad input never touches the run directory.
2. :func:`open_run`: take the run directory's lock and start a new run in ``partial/`` or find the
   one to resume (``runs.store``).
3. :func:`fit` with one hooks object: the caller's (progress) wrapped by the recipe's, which
   checkpoints every epoch and turns a signal into a stop at the next batch.
4. :func:`finish`: evaluate, write the finished files into ``partial/``, move them into place.

Ranks other than 0 of a data-parallel job run the same recipe with writing turned off: no lock, no
checkpoint, no files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from lstmcli.config import (
    SMALL_DATA_UNITS,
    SMALL_DATA_WINDOWS,
    Config,
    load_yaml,
    parse_yaml,
    read_config_text,
    validate_config,
)
from lstmcli.data.dataset import Dataset, load_dataset
from lstmcli.data.windows import Windows
from lstmcli.errors import CheckpointError, DataError, Interrupted, ResourceError, TrainingError
from lstmcli.evaluate import (
    Calibration,
    ForecastScores,
    IntervalSums,
    SplitScores,
    ThetaCombination,
    calibrate,
    choose_combination,
    evaluate_split,
    interval_scores,
)
from lstmcli.fsutil import atomic_write, check_regular, sha256, sha256_file
from lstmcli.model.forecaster import LSTMForecaster
from lstmcli.plots import loss_curve
from lstmcli.plots import preload as preload_plotting
from lstmcli.runs.checkpoints import TrainCheckpoint, load_train_state, save_train_state
from lstmcli.runs.run import load_run, run_meta, save_model, write_json_model
from lstmcli.runs.schema import METRICS_FORMAT_VERSION, Metrics
from lstmcli.runs.store import CHECKPOINT_DIR, CONFIG, HISTORY, LOSS_PLOT, MARKER, META, METRICS, STATE_POINTER, RunDir
from lstmcli.runs.tensors import refuse_pickles
from lstmcli.training.device import check_threads, resolve_device
from lstmcli.training.distributed import Dist, abandon, peers_lost_is_one_line, shutdown
from lstmcli.training.hooks import EpochReport, Hooks, Stopped
from lstmcli.training.interrupts import StopSignals
from lstmcli.training.state import restore, snapshot
from lstmcli.training.trainer import Trainer, TrainResult, fit

Mode = Literal["new", "overwrite", "resume"]


@dataclass(frozen=True)
class TrainSummary:
    """A finished training: where it is, its metrics (None on a rank that writes nothing), the model."""

    run_dir: Path
    metrics: Metrics | None
    result: TrainResult
    warnings: tuple[str, ...] = ()  # where the model loses to a baseline, and what to try


@dataclass(frozen=True)
class Prepared:
    """Everything computed once, before the run directory is touched."""

    cfg: Config  # data.path absolute
    config_text: str  # the resolved config, as config.yaml holds it
    config_sha256: str
    data_sha256: str  # of the CSV: the resume check and the parse cache's key
    ds: Dataset
    device: torch.device
    dist: Dist


@dataclass(frozen=True)
class OpenRun:
    """A run directory taken for training: where this rank writes, and the checkpoint to resume."""

    prepared: Prepared
    run: RunDir
    work: Path | None  # RUN/partial, or None on a rank that writes nothing
    saved: TrainCheckpoint | None


def train(
    cfg: Config,
    run_dir: Path,
    mode: Mode = "new",
    hooks: Hooks | None = None,
    dist: Dist | None = None,
    score_test: bool = True,
) -> TrainSummary:
    """Train ``cfg`` into ``run_dir``: a ``new`` run, one that replaces the run there
    (``overwrite``: the old one stays until the new one has finished), or ``resume`` the unfinished
    one (starting it if no epoch was saved). SIGINT/SIGTERM stop at the next batch with the last
    checkpoint intact and raise ``Interrupted``. ``score_test=False`` (a tuning trial) never
    forecasts the test split: metrics.json then has no test scores (see :func:`score_test_split`)."""
    hooks, dist = hooks or Hooks(), dist or Dist()
    with StopSignals() as stop:
        prepared = prepare(cfg, dist)
        if stop.signum:
            raise Interrupted(f"{stop.name}: stopped before training started; nothing was written", stop.exit_code)
        run = RunDir(run_dir)
        if not dist.is_main:
            saved = load_train_state(run.partial, cfg.parameters) if mode == "resume" else None
            return _fit_and_finish(OpenRun(prepared, run, None, saved), hooks, stop, score_test)
        with run.locked():
            return _fit_and_finish(open_run(prepared, run, mode), hooks, stop, score_test)


def prepare(cfg: Config, dist: Dist) -> Prepared:
    """Read and check the data, hash the config and the CSV, resolve the device: once each."""
    check_threads(cfg.train.threads)
    check_regular(cfg.data.path, "CSV file", DataError)
    data_sha = sha256_file(cfg.data.path, DataError)
    ds = load_dataset(cfg.data, content_sha256=data_sha)
    device = resolve_device(cfg.train.device, dist.local_world, dist.local_rank if dist.enabled else None)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(Path(cfg.data.path).resolve())})})
    text = cfg.to_yaml()
    return Prepared(
        cfg=cfg, config_text=text, config_sha256=sha256(text), data_sha256=data_sha, ds=ds, device=device, dist=dist
    )


def open_run(prepared: Prepared, run: RunDir, mode: Mode) -> OpenRun:
    """Start a new run in ``partial/`` (holding the lock), or find the one to resume."""
    run.check_replaceable()  # a run that could not be moved into place is refused before it trains
    if mode == "resume":
        return _resume_point(prepared, run)
    if (run.finished() or run.in_progress() or run.legacy_unfinished()) and mode != "overwrite":
        unfinished = run.in_progress() or run.legacy_unfinished()
        resume = " or --resume to continue it" if unfinished else ""
        raise CheckpointError(
            f"{run.path}: a run directory is already there; pass --overwrite to replace it{resume}, "
            "or set output.dir (--set output.dir=...)"
        )
    run.adopt_legacy()
    return OpenRun(prepared, run, run.start(prepared.config_text), None)


def _resume_point(prepared: Prepared, run: RunDir) -> OpenRun:
    """The unfinished run of this very config and data, and its checkpoint (a fresh start when no
    epoch was saved yet)."""
    refuse_pickles(run.path)
    run.adopt_legacy()
    if not run.in_progress():
        if run.finished():
            raise CheckpointError(_finished_message(run.path))
        return OpenRun(prepared, run, run.start(prepared.config_text), None)
    work = run.partial
    config_path = work / CONFIG
    stored = read_config_text(config_path) if config_path.is_file() else None
    if stored is not None and stored != prepared.config_text:
        raise CheckpointError(f"{config_path}: {_config_difference(stored, prepared.config_text)}")
    saved = load_train_state(work, prepared.cfg.parameters)
    if saved is None:
        return OpenRun(prepared, run, run.start(prepared.config_text), None)
    pointer = work / CHECKPOINT_DIR / STATE_POINTER
    if saved.info.get("config_sha256") != prepared.config_sha256:
        raise CheckpointError(
            f"{config_path}: was edited after the checkpoint in {pointer} was written; restore it or start a new run"
        )
    if saved.info.get("data_sha256") not in (None, prepared.data_sha256):
        raise CheckpointError(
            f"{pointer}: the data file changed since this run started (sha256 differs); "
            "resuming would not continue the same training, start a new run"
        )
    return OpenRun(prepared, run, work, saved)


class _RunHooks(Hooks):
    """The caller's hooks, with the recipe's part: a checkpoint after every epoch (before the caller
    hears of it), and a stop at the next batch once a signal came."""

    def __init__(self, outer: Hooks, trainer: Trainer, opened: OpenRun, stop: StopSignals) -> None:
        self.outer, self.trainer, self.opened, self.stop = outer, trainer, opened, stop

    def on_epoch_end(self, report: EpochReport) -> None:
        self._checkpoint()
        self.outer.on_epoch_end(report)

    def on_refit_start(self, epochs: int, done: int = 0) -> None:
        self.outer.on_refit_start(epochs, done)

    def on_refit_epoch(self, epoch: int, epochs: int, train_loss: float, seconds: float) -> None:
        self._checkpoint()
        self.outer.on_refit_epoch(epoch, epochs, train_loss, seconds)

    def _checkpoint(self) -> None:
        work = self.opened.work
        if work is not None:
            tensors, info = snapshot(self.trainer)
            p = self.opened.prepared
            info.update(config_sha256=p.config_sha256, data_sha256=p.data_sha256)
            save_train_state(work, tensors, info)
            self.opened.run.epoch_saved()
            preload_plotting()  # matplotlib loads on a side thread while the next epochs train

    def on_batch(self, done: int, total: int) -> None:
        self.outer.on_batch(done, total)

    def should_stop(self) -> bool:
        return self.stop.signum is not None or self.outer.should_stop()


def _fit_and_finish(opened: OpenRun, hooks: Hooks, stop: StopSignals, score_test: bool = True) -> TrainSummary:
    p = opened.prepared
    with _out_of_memory_is_one_line():
        trainer = Trainer(p.cfg, p.ds, device=p.device, dist=p.dist)
    try:
        if opened.saved is not None:
            _restore(trainer, opened)
            hooks.on_resume(opened.saved.epoch)
        hooks.on_start(p.ds, p.cfg.train.epochs, trainer.patience, trainer.state.bad_epochs)
        start = time.perf_counter()
        with _failure_says_what_is_kept(opened), _out_of_memory_is_one_line(), peers_lost_is_one_line(p.dist):
            try:
                result = fit(trainer, _RunHooks(hooks, trainer, opened, stop))
            except Stopped:
                raise _interrupted(stop, trainer, opened.run.path) from None
            shutdown(p.dist)  # the other ranks are done; rank 0 evaluates and writes alone
        if opened.work is None:
            return TrainSummary(opened.run.path, None, result)
        hooks.on_evaluate()
        metrics = finish(opened, result, time.perf_counter() - start, score_test)
        opened.run.commit()
        return TrainSummary(opened.run.path, metrics, result, losses_to_baselines(metrics, p.cfg))
    except BaseException:
        trainer.net = trainer.model  # a DDP wrapper outliving its process group aborts the process
        abandon(p.dist)
        raise


def _restore(trainer: Trainer, opened: OpenRun) -> None:
    assert opened.saved is not None
    try:
        restore(trainer, opened.saved.tensors, opened.saved.info)
    except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as exc:
        # A checkpoint with matching checksums but the wrong contents (hand-made or from another
        # version): refuse it in one line.
        what = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        pointer = opened.run.partial / CHECKPOINT_DIR / STATE_POINTER
        raise CheckpointError(
            f"{pointer}: the checkpoint does not fit this run's model and optimizer ({what})"
        ) from None


def _interrupted(stop: StopSignals, trainer: Trainer, run_dir: Path) -> Interrupted:
    epoch = trainer.state.epoch
    saved = f"the checkpoint of epoch {epoch} is saved" if epoch else "no epoch had finished"
    how = stop.name or "stopped by the caller"
    return Interrupted(
        f"{how}: stopped training; {saved}. Resume with: lstm resume {run_dir}", stop.exit_code if stop.signum else 1
    )


@contextlib.contextmanager
def _failure_says_what_is_kept(opened: OpenRun) -> Iterator[None]:
    """A runtime failure after an epoch was saved names the checkpoint, and the previous run."""
    try:
        yield
    except (TrainingError, ResourceError) as exc:
        if opened.work is None or not opened.run.in_progress():
            raise
        # The failed epoch was never checkpointed: the last checkpoint holds the best weights.
        previous = f"; the previous run in {opened.run.path} is unchanged" if opened.run.finished() else ""
        raise type(exc)(f"{exc} (checkpoint in {opened.work / CHECKPOINT_DIR}{previous})") from None


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
        tried = ""
        if size is not None:
            amount = size.group(1)
            tried = (
                f" (it tried to allocate {int(amount) / 1e9:.3g} GB more)"
                if amount.isdigit()
                else f" (it tried to allocate {amount} more)"
            )
        raise ResourceError(f"training ran out of memory{tried}; {hint}") from None


def finish(opened: OpenRun, result: TrainResult, seconds: float, score_test: bool = True) -> Metrics:
    """Evaluate the best weights and write the finished run's files into ``partial/``, metrics.json
    last (its presence marks the run finished); returns the metrics. ``score_test=False``: the
    validation split only (calibration included), the test split is never forecast."""
    p, work = opened.prepared, opened.work
    assert work is not None
    cfg, ds, windows = p.cfg, p.ds, result.windows  # evaluated on the device it was trained on
    # Validation is scored, and the intervals calibrated, by the model that never saw it (with a
    # refit, the early-stopped one); the test split and every later forecast by the saved model.
    combination = None
    theta = None
    # auto leaves a run with known-future features or holidays alone: Theta cannot see them, and the
    # average would halve the forecast's response to them (a promotion's lift, a holiday's drop)
    foreseen = bool(cfg.data.future_features or cfg.data.holidays)
    if cfg.model.combine == "theta" or (cfg.model.combine == "auto" and not foreseen):
        theta = ThetaCombination.of(ds, cfg.data.horizon, cfg.data.s)
        combination = choose_combination(result.scored_model, windows, ds, theta, cfg.model.combine == "theta")
        theta = theta if combination.used else None
    calibration = calibrate(result.scored_model, windows, ds, cfg.data.s, theta)
    test = _test_scores(result.model, windows, ds, cfg, calibration, theta) if score_test else None
    metrics = Metrics(
        format_version=METRICS_FORMAT_VERSION,
        test=None if test is None else test[0],
        val=evaluate_split(result.scored_model, windows, ds, "val", cfg.data.seasons, theta),
        windows=ds.counts(),
        best_epoch=result.state.best_epoch,
        epochs_run=result.state.epoch,
        stopped_early=result.state.stopped_early,
        best_val_loss=result.state.best_val,
        train_seconds=round(seconds, 3),
        device=result.device,
        precision=result.precision,
        processes=p.dist.world,
        batch_size=result.batch_size,
        patience=result.patience,
        refit_epochs=result.refit_epochs,
        threads=None if result.threads is None else result.threads.threads,
        threads_reason=None if result.threads is None else result.threads.why,
        calibration=calibration,
        intervals=None if test is None else test[1].table(),
        quantiles=None if test is None else test[1].quantile_table(),
        filled_timestamps=ds.table.filled,
        padded_series=ds.padded_series,
        series_without_training_windows=ds.series_without_training_windows,
        combination=combination,
    )
    weights_sha = save_model(work, result.model, p.config_sha256)
    write_json_model(work / META, run_meta(cfg, p.config_sha256, weights_sha, ds))
    atomic_write(work / HISTORY, history_csv(result.state.history))
    loss = (
        f"{cfg.train.loss} ({', '.join(f'{q:g}' for q in cfg.model.quantiles)})"
        if cfg.model.quantiles
        else cfg.train.loss
    )
    atomic_write(
        work / LOSS_PLOT, loss_curve(result.state.history, result.state.best_epoch, loss, opened.run.path.name)
    )
    write_json_model(work / METRICS, metrics)  # last: its presence marks a finished run
    return metrics


def _test_scores(
    model: LSTMForecaster,
    windows: Windows,
    ds: Dataset,
    cfg: Config,
    calibration: dict[str, Calibration],
    theta: ThetaCombination | None,
) -> tuple[SplitScores, IntervalSums]:
    """The test split's point scores and its calibrated intervals' scores."""
    uncertainty = interval_scores(model, windows, ds, "test", cfg.data.s, calibration, theta)
    return evaluate_split(model, windows, ds, "test", cfg.data.seasons, theta), uncertainty


def score_test_split(run_dir: Path) -> Metrics:
    """Forecast the test split of a finished run trained with ``score_test=False`` (a tuning trial)
    with its saved weights, as :func:`finish` would have; returns its metrics with the test scores
    (the caller writes them). Reads the CSV again and checks it is the one the run was trained on."""
    run = load_run(run_dir)
    stored = run.metrics()
    if stored is None:
        raise CheckpointError(f"{run_dir}: has no {METRICS}; the run has not finished")
    cfg = run.cfg
    data_sha = sha256_file(cfg.data.path, DataError)
    ds = load_dataset(cfg.data, content_sha256=data_sha)
    if ds.counts() != stored.windows:
        raise CheckpointError(f"{cfg.data.path}: changed since {run_dir} was trained (other window counts)")
    starts = ds.row_starts()
    windows = Windows(  # as the trainer builds them, on the CPU
        torch.as_tensor(ds.scaled),
        cfg.data.lookback,
        cfg.data.horizon,
        ds.n_targets,
        None if starts is None else torch.as_tensor(starts),
        cfg.data.future_columns,
    )
    theta = ThetaCombination.of(ds, cfg.data.horizon, cfg.data.s) if stored.averaged_with_theta else None
    calibration = stored.calibration or calibrate(run.model, windows, ds, cfg.data.s, theta)
    test, uncertainty = _test_scores(run.model, windows, ds, cfg, calibration, theta)
    return stored.model_copy(
        update={"test": test, "intervals": uncertainty.table(), "quantiles": uncertainty.quantile_table()}
    )


def _loses_to(scores: SplitScores, base: ForecastScores) -> bool:
    """Whether the model's MAE is worse than the baseline's (neither undefined)."""
    mae = scores.model.MAE
    return mae is not None and base.MAE is not None and mae > base.MAE


def losses_to_baselines(metrics: Metrics, cfg: Config) -> tuple[str, ...]:
    """Where the model's MAE is worse than a baseline's on the validation or the test split, in
    words, with what to try when there are few training windows for the model's size."""
    found = []
    unused: set[int] = set()  # longer seasons that beat the model and that it does not read as lags
    for split, scores in (("validation", metrics.val), ("test", metrics.test)):
        if scores is None:
            continue
        mae = scores.model.MAE
        worse = [f"{label} ({base.MAE:.4g})" for label, base in scores.baselines() if _loses_to(scores, base)]
        longer = (scores.longer_seasons or {}).items()
        unused |= {int(p) for p, base in longer if _loses_to(scores, base) and int(p) not in cfg.data.lags}
        if worse:
            found.append(f"on the {split} split the LSTM's MAE ({mae:.4g}) is worse than " + " and ".join(worse))
    if unused:
        lags = sorted({*cfg.data.lags, *unused})
        n = cfg.model.n + len(unused) * len(cfg.data.target)
        found.append(
            f"the model sees only its lookback of {cfg.data.lookback} steps; give it the longer season as a lag: "
            f"--set 'data.lags=[{', '.join(map(str, lags))}]' --set model.n={n}"
        )
    elif found:
        windows, params = metrics.windows["train"], cfg.parameters // cfg.train.ensemble  # one member's
        few = f"{windows:,} training windows for {params:,} parameters; " if params > 20 * windows else ""
        # Smaller than init's small-data size measured no better (BENCHMARKS.md), so only down to it.
        small = windows < SMALL_DATA_WINDOWS and cfg.model.m > SMALL_DATA_UNITS
        model = f"init's size for so few windows (--set model.m={SMALL_DATA_UNITS}), " if small else ""
        found.append(
            f"{few}try {model}more data (a longer history, or related series in one long file with "
            "data.series_column, for one model of them all) or another data.lookback; a forecast that loses to "
            "a baseline is not worth using"
        )
    return tuple(found)


def history_csv(history: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", "train_loss", "val_loss", "lr", "seconds"])
    for h in history:
        writer.writerow(
            [h["epoch"], f"{h['train_loss']:.8g}", f"{h['val_loss']:.8g}", f"{h['lr']:.6g}", f"{h['seconds']:.4f}"]
        )
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# lstm resume RUN


def resume(run_dir: Path, hooks: Hooks | None = None) -> TrainSummary:
    """Continue the run in ``run_dir`` with its own config (the one it started with)."""
    run = RunDir(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run directory not found")
    if not run.is_ours():
        raise CheckpointError(f"{run_dir}: not an lstm run directory (no {MARKER} marker); nothing to resume")
    refuse_pickles(run_dir)
    if run.awaiting_commit():
        with run.locked():
            pass  # taking the lock completes the interrupted move into place (RunDir.recover)
        raise CheckpointError(_finished_message(run_dir) + "; its interrupted move into place was completed now")
    if run.finished() and not run.in_progress():
        raise CheckpointError(_finished_message(run_dir))
    config_path = run.partial / CONFIG if (run.partial / CONFIG).is_file() else run_dir / CONFIG
    if not config_path.is_file():
        raise CheckpointError(
            f"{config_path}: missing, so there is no run to resume here; start it with lstm train CONFIG --resume"
        )
    source = str(config_path)
    cfg = validate_config(parse_yaml(read_config_text(config_path), source), source, stored=True)
    return train(cfg, run_dir, "resume", hooks)


def _finished_message(run_dir: Path) -> str:
    return (
        f"{run_dir}: this run already finished ({METRICS} is there); nothing to resume "
        "(to train it again: lstm train CONFIG --overwrite)"
    )


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
