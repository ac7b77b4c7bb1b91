"""``lstm tune``: an Optuna study over the config's ``tune:`` search space, judged on validation.

Layout of the study directory (``--out``, default ``<run directory>-tune``)::

    study.db          the Optuna study (SQLite; --storage names any other RDB URL instead)
    .lock             held by the one ``lstm tune`` that drives this directory
    .turn.lock        taken in turn by its --jobs workers, each to count the trials and start one
    trials/<number>/  one ordinary run directory per trial, trained with score_test=False
    best/             a copy of the best trial's run, its test split scored once, here
    best.yaml         the best trial's config: ``lstm train best.yaml`` trains it again
    trials.csv        every trial: state, parameters, validation MAE, epochs, seconds
    tune.png          validation MAE per trial with the best so far, and parameter importances

The objective is the validation MAE in original units (``metrics.json`` ``val.model.MAE``): the
per-epoch validation loss is in scaled units that change with train.loss, model.window_scale or
data.transform, so trials that tune those could not be compared by it. Pruning (Optuna's
MedianPruner) does compare the per-epoch validation loss, so it is turned off when the search space
holds a key that changes the loss's units.

The test split is never forecast by a trial; when the study has its trials, the best trial is
scored on it once (:func:`lstmcli.commands.train.score_test_split`) and the result written into
``best/``. A later ``lstm tune`` with the same best trial reads ``best/`` instead of scoring again.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from lstmcli.config import Choice, Config, TuneParam, with_values
from lstmcli.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    Interrupted,
    LstmcliError,
    MissingDependency,
    OutputError,
    TrainingError,
)
from lstmcli.fsutil import atomic_write, atomic_write_all, fsync_dir, sha256, sha256_file
from lstmcli.runs.lock import RunLock
from lstmcli.runs.run import write_json_model
from lstmcli.runs.schema import Metrics
from lstmcli.runs.store import MARKER, METRICS, PARTIAL, RunDir
from lstmcli.training.device import available_cores
from lstmcli.training.hooks import EpochReport, Hooks
from lstmcli.training.threads import cpu_quota

STUDY_DB = "study.db"
TRIALS = "trials"
BEST = "best"
BEST_CONFIG = "best.yaml"
TRIALS_CSV = "trials.csv"
PLOT = "tune.png"
TURN_LOCK = ".turn.lock"  # taken in turn by the --jobs workers (RunLock, waiting)
WORKER_ENV = "LSTMCLI_TUNE_WORKER"  # set in --jobs worker processes
# Keys whose value changes the units of the per-epoch validation loss: with one of them in the
# search space, trials' losses cannot be compared epoch by epoch, so nothing is pruned.
LOSS_UNIT_KEYS = ("train.loss", "model.window_scale", "data.transform", "model.quantiles", "model.normalize")
FAILURES_IN_A_ROW = 3  # a worker gives up after this many failed trials in a row (a broken space)
HEARTBEAT_S = 20  # a RUNNING trial whose process stopped beating for GRACE_S is failed (--storage shared)
GRACE_S = 60
MIN_FOR_IMPORTANCE = 10  # complete trials before parameter importances mean anything


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise MissingDependency("lstm tune needs Optuna: pip install 'lstmcli[tune]' (or pip install optuna)") from None
    # Optuna logs each failed trial with its traceback at WARNING; the CLI prints one line per trial.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


# ---------------------------------------------------------------------------------------------
# Typed results


@dataclass(frozen=True)
class TrialRow:
    """One trial as the summary shows it."""

    number: int
    state: str  # complete, pruned, failed, running
    params: dict[str, Choice]
    val_mae: float | None
    epochs: int | None
    seconds: float | None
    note: str = ""  # why a trial failed


@dataclass(frozen=True)
class TuneSummary:
    """A study after this command: its trials, the best one and its scores (test read once)."""

    out: Path
    space: dict[str, TuneParam]
    rows: list[TrialRow]
    best: TrialRow | None
    best_metrics: Metrics | None  # the best trial's metrics with its test scores
    ran: int  # trials this command finished
    importances: dict[str, float] | None
    importance_note: str
    storage: str


class TuneHooks:
    """What the CLI hears: each trial as it ends."""

    def on_trial_end(self, row: TrialRow, best: float | None) -> None:
        """A trial finished (complete, pruned or failed); ``best`` is the study's best MAE so far."""


@dataclass(frozen=True)
class TuneOptions:
    """What ``lstm tune`` was asked for."""

    config_path: Path
    overrides: tuple[str, ...]
    trials: int
    jobs: int = 1
    storage: str | None = None
    out: Path | None = None
    worker_threads: int | None = None  # set in a --jobs worker: train.threads for its trials
    quiet: bool = False  # no line per trial (the workers are told too)


def study_dir(opts: TuneOptions, cfg: Config) -> Path:
    """``--out``, or the config's run directory with ``-tune`` appended."""
    from lstmcli.config import default_run_dir

    if opts.out is not None:
        return opts.out
    run = default_run_dir(opts.config_path, cfg)
    return run.with_name(run.name + "-tune")


def storage_url(opts: TuneOptions, out: Path) -> str:
    return opts.storage or f"sqlite:///{(out / STUDY_DB).resolve()}"


def threads_per_job(jobs: int) -> int:
    """CPU threads per trial process so that jobs × threads stays within the cores this process may
    use (its affinity mask and cgroup quota, as training.threads counts them)."""
    quota = cpu_quota()
    cores = min(available_cores(), math.floor(quota) if quota else available_cores())
    return max(1, cores // jobs)


def check_jobs(jobs: int) -> None:
    quota = cpu_quota()
    cores = max(1, min(available_cores(), math.floor(quota) if quota else available_cores()))
    if jobs > cores:
        raise ConfigError(
            f"--jobs {jobs}: this process may use {cores} core(s); run at most {cores} trials at once "
            "(more processes than cores only wait for each other)"
        )


# ---------------------------------------------------------------------------------------------
# The study


def _storage(optuna: Any, url: str) -> Any:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several worker processes write one SQLite file: wait for its lock instead of failing.
        kwargs = {"connect_args": {"timeout": 60}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
            )
    except Exception as exc:  # sqlalchemy's errors: a bad URL, a missing driver, an unreachable server
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"--storage {url}: cannot open it as an Optuna RDB storage ({first})") from None


IDENTITY_KEYS = ("config_sha256", "space", "data_sha256")  # what _identity returns, as the study stores it


def _identity(cfg: Config) -> dict[str, str]:
    """What a study is of: the base config (without tune), the search space and the data's content.
    A study created for another one is refused rather than continued with trials that do not compare."""
    space = json.dumps({k: v.model_dump(mode="json") for k, v in (cfg.tune or {}).items()}, sort_keys=True)
    values = (sha256(cfg.to_yaml()), space, sha256_file(cfg.data.path, DataError))
    return dict(zip(IDENTITY_KEYS, values, strict=True))


def _pruner(optuna: Any, cfg: Config) -> Any:
    if any(key in LOSS_UNIT_KEYS for key in cfg.tune or {}):
        return optuna.pruners.NopPruner()
    from lstmcli.training.trainer import MIN_PATIENCE  # (imports torch: only once a study is opened)

    patience = cfg.train.patience if isinstance(cfg.train.patience, int) else MIN_PATIENCE  # auto: at least 20
    warmup = max(1, min(patience, cfg.train.epochs // 4))
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)


def open_study(cfg: Config, url: str, name: str, worker: int = 0) -> Any:
    """Create the study or continue the one of this name (refusing one of another config or space)."""
    optuna = _optuna()
    storage = _storage(optuna, url)
    study = optuna.create_study(
        study_name=name, storage=storage, direction="minimize", pruner=_pruner(optuna, cfg), load_if_exists=True
    )
    # TPE seeded from train.seed, the trials already there and the worker: one process's study is
    # reproducible, and a continued study or a second worker does not draw the same points again.
    seed = (cfg.train.seed + len(study.trials) + 7919 * worker) % 2**32
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    wanted = _identity(cfg)
    have = {k: study.user_attrs.get(k) for k in wanted}
    if all(v is None for v in have.values()) and not study.trials:
        for k, v in wanted.items():
            study.set_user_attr(k, v)
    elif have != wanted:
        what = "config"
        if have.get("config_sha256") == wanted["config_sha256"]:
            same_space = have.get("space") == wanted["space"]
            what = "version of the data (data.path's content changed)" if same_space else "search space (tune:)"
        raise ConfigError(
            f"{url}: study '{name}' was made for another {what}; continuing it would mix trials that do not "
            "compare. Use another --out (or --storage), or delete the study to start again"
        )
    return study


def config_values(cfg: Config) -> dict[str, Choice]:
    """The config's own value of each key of the search space, where the space holds it."""
    values: dict[str, Choice] = {}
    raw = cfg.to_dict()
    for key, p in (cfg.tune or {}).items():
        node: Any = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        inside = (
            node in (p.choices or [])
            if p.kind == "choice"
            else isinstance(node, int | float) and not isinstance(node, bool) and (p.low or 0) <= node <= (p.high or 0)
        )
        if inside and not (p.kind == "int" and isinstance(node, float)):
            values[key] = node
    return values


def enqueue_config_as_written(study: Any, cfg: Config) -> None:
    """Trial 0 of a new study is the config as written (where its values lie in the space): the
    best trial is then never worse on validation than the config the user started from."""
    values = config_values(cfg)
    if values:
        study.enqueue_trial(values)


def _fail_stale(study: Any) -> int:
    """Mark the trials left RUNNING by a killed ``lstm tune`` as failed (only called holding the
    study directory's lock with its own SQLite file, where no other process can be running one)."""
    optuna = _optuna()
    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in stale:
        study._storage.set_trial_user_attr(t._trial_id, "note", "killed while running")
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    return len(stale)


def _counts(study: Any) -> tuple[int, int]:
    """Finished (complete or pruned) and running trials."""
    TrialState = _optuna().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return done, running


class _Stop(KeyboardInterrupt):
    """A signal stopped a trial: Optuna marks it failed and re-raises this."""

    def __init__(self, interrupted: Interrupted) -> None:
        super().__init__(str(interrupted))
        self.interrupted = interrupted


class _TrialHooks(Hooks):
    """Report each epoch's validation loss to the trial; stop training once Optuna prunes it."""

    def __init__(self, trial: Any, prune: bool, parent: int | None = None) -> None:
        self.trial, self.prune = trial, prune
        self.pruned = False
        self.epochs = 0
        self.parent = parent  # a --jobs worker's lstm tune: the worker stops once that process is gone

    def on_epoch_end(self, report: EpochReport) -> None:
        # The best validation loss so far, not this epoch's: a trial ends with its best epoch's
        # weights (early stopping restores them), and one noisy epoch should not prune it.
        self.epochs = report.epoch
        if self.prune and math.isfinite(report.best_val):
            self.trial.report(report.best_val, report.epoch)
            self.pruned = self.trial.should_prune()

    def should_stop(self) -> bool:
        # An orphaned worker (its lstm tune killed, its terminal closed) stops at the next batch
        # rather than training on without the study directory's lock.
        return self.pruned or (self.parent is not None and os.getppid() != self.parent)


def suggest(trial: Any, space: dict[str, TuneParam]) -> dict[str, Choice]:
    """The trial's value for every key of the search space."""
    values: dict[str, Choice] = {}
    for key, p in space.items():
        if p.kind == "choice":
            values[key] = trial.suggest_categorical(key, p.choices)
        elif p.kind == "int":
            values[key] = trial.suggest_int(key, int(p.low or 0), int(p.high or 0), log=p.log)
        else:
            values[key] = trial.suggest_float(key, float(p.low or 0), float(p.high or 0), log=p.log)
    return values


def trial_config(base: Config, values: dict[str, Choice], run_dir: Path, threads: int | None, source: str) -> Config:
    """The base config with the trial's values, its own run directory, and the worker's thread count
    unless the config sets one."""
    from lstmcli.config import validate_config

    raw = with_values(base.to_dict(), {**values, "output.dir": str(run_dir)})
    if threads and base.train.threads is None and "train.threads" not in values:  # a tuned count is the trial's
        raw = with_values(raw, {"train.threads": threads})
    return validate_config(raw, f"{source} (trial with {_short(values)})")


def _short(values: dict[str, Choice]) -> str:
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in values.items())


def _fmt_value(v: Choice) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _objective(base: Config, out: Path, threads: int | None, source: str, prune: bool, started: list[int]) -> Any:
    from lstmcli.commands.train import train

    optuna = _optuna()
    parent = os.getppid() if threads is not None else None  # a --jobs worker's lstm tune, at its start

    def objective(trial: Any) -> float:
        started.append(trial.number)
        start = time.perf_counter()
        values = suggest(trial, base.tune or {})
        run_dir = out / TRIALS / str(trial.number)
        try:
            cfg = trial_config(base, values, run_dir, threads, source)
        except ConfigError as exc:
            trial.set_user_attr("note", str(exc)[:300])
            raise
        hooks = _TrialHooks(trial, prune, parent)
        try:
            summary = train(cfg, run_dir, "new", hooks, score_test=False)
        except Interrupted as exc:
            trial.set_user_attr("epochs", hooks.epochs)
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
            if hooks.pruned:
                raise optuna.TrialPruned(f"pruned at epoch {hooks.epochs}") from None
            raise _Stop(exc) from None
        except LstmcliError as exc:
            trial.set_user_attr("note", str(exc)[:300])
            raise
        metrics = summary.metrics
        assert metrics is not None
        trial.set_user_attr("epochs", metrics.epochs_run)
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
        mae = metrics.val.model.MAE
        if mae is None or not math.isfinite(mae):
            trial.set_user_attr("note", "no finite validation MAE")
            raise TrainingError(f"{run_dir}: no finite validation MAE")
        return float(mae)

    return objective


def run_trials(study: Any, base: Config, out: Path, opts: TuneOptions, hooks: TuneHooks) -> int:
    """Run trials in this process until the study has ``opts.trials`` finished ones (counting those
    of every process); returns how many this process finished. A signal raises Interrupted."""
    from lstmcli.training.interrupts import StopSignals

    started: list[int] = []  # the numbers of this process's trials
    train_one = _objective(base, out, opts.worker_threads, str(opts.config_path), _prunes(study), started)
    # The workers of one study directory take turns from counting the trials to starting one: two
    # that counted at once could both see a trial missing and both start it. (Machines sharing a
    # --storage study each have their own directory, so they can still overshoot by a trial.)
    turn = RunLock(out, TURN_LOCK, wait=True)

    def objective(trial: Any) -> float:
        turn.release()  # the trial is in the storage, running: the other workers count it from now
        return float(train_one(trial))

    ran = failures = 0
    with StopSignals() as stop:
        while True:
            turn.acquire()
            try:
                done, running = _counts(study)
                if done + running >= opts.trials:
                    return ran
                if stop.signum:
                    raise Interrupted(stop.name, stop.exit_code)
                study.optimize(objective, n_trials=1, catch=(LstmcliError,))
            except _Stop as exc:
                raise exc.interrupted from None
            finally:
                turn.release()
            mine = [t for t in study.get_trials(deepcopy=False) if started and t.number == started[-1]]
            row = _row(mine[0]) if mine else None
            if row is not None:
                hooks.on_trial_end(row, _best_value(study))
                failures = failures + 1 if row.state == "failed" else 0
                ran += row.state != "failed"
            if failures >= FAILURES_IN_A_ROW:
                note = row.note if row is not None else ""
                raise TrainingError(f"{FAILURES_IN_A_ROW} trials failed in a row; the last: {note or 'no reason'}")


def _waiting(study: Any) -> bool:
    """Whether the study holds an enqueued trial no process has taken yet."""
    import optuna

    return any(t.state == optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False))


def _prunes(study: Any) -> bool:
    return type(study.pruner).__name__ != "NopPruner"


def _best_value(study: Any) -> float | None:
    try:
        return float(study.best_value)
    except ValueError:  # no complete trial yet
        return None


def _row(t: Any) -> TrialRow:
    state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}.get(
        t.state.name, t.state.name.lower()
    )
    epochs = t.user_attrs.get("epochs")
    seconds = t.user_attrs.get("seconds")
    return TrialRow(
        number=t.number,
        state=state,
        params=dict(t.params),
        val_mae=t.value if state == "complete" else None,
        epochs=epochs if isinstance(epochs, int) else None,
        seconds=float(seconds) if isinstance(seconds, int | float) else None,
        note=str(t.user_attrs.get("note", "")),
    )


# ---------------------------------------------------------------------------------------------
# --jobs K: worker processes


def _worker_command(opts: TuneOptions, out: Path, url: str, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "lstmcli", "tune", str(opts.config_path), "--trials", str(opts.trials)]
    for item in opts.overrides:
        cmd += ["--set", item]
    return [*cmd, "--out", str(out), "--storage", url, "--worker", str(threads), *(["-q"] if opts.quiet else [])]


def run_workers(opts: TuneOptions, out: Path, url: str) -> list[int]:
    """Start ``opts.jobs`` worker processes sharing the storage, wait for them, return their exit
    codes. A Ctrl-C (or SIGTERM) here is passed on to each once; they finish their epoch, mark their
    trial failed and exit 130."""
    threads = threads_per_job(opts.jobs)
    procs: list[subprocess.Popen[bytes]] = []
    forwarded: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        if forwarded:
            return
        forwarded.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    # The handler goes in before the workers start: a caught signal is reset to its default in a
    # child, where an ignored one (a script's background job ignores SIGINT) would stay ignored.
    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for k in range(1, opts.jobs + 1):
            # Own sessions: a terminal's Ctrl-C reaches them only through this process, once.
            env = {**os.environ, WORKER_ENV: str(k)}
            procs.append(subprocess.Popen(_worker_command(opts, out, url, threads), env=env, start_new_session=True))
            if forwarded:
                procs[-1].send_signal(forwarded[0])
        codes = [p.wait() for p in procs]
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if forwarded and any(c == 128 + forwarded[0] for c in codes):  # else every worker had finished
        raise Interrupted("Ctrl-C (SIGINT)" if forwarded[0] == signal.SIGINT else "SIGTERM", 128 + forwarded[0])
    return codes


# ---------------------------------------------------------------------------------------------
# The command


def tune(cfg: Config, opts: TuneOptions, hooks: TuneHooks | None = None) -> TuneSummary:
    """Run the study to ``opts.trials`` finished trials (continuing the one in the storage), then
    score the best trial's test split once and write the summary files."""
    hooks = hooks or TuneHooks()
    if not cfg.tune:
        raise ConfigError(
            f"{opts.config_path}: has no tune: section; add one, e.g. tune: {{model.m: [8, 64, log], "
            "train.lr: [1.0e-4, 1.0e-2, log]}"
        )
    _optuna()
    out = study_dir(opts, cfg)
    url = storage_url(opts, out)
    name = opts.config_path.stem
    if opts.worker_threads is not None:  # a --jobs worker: trials only
        study = open_study(cfg, url, name, worker=int(os.environ.get(WORKER_ENV) or 1))
        ran = run_trials(study, cfg, out, opts, hooks)
        return _summary(study, cfg, out, url, ran, None, importances=False)
    check_jobs(opts.jobs)
    created = not out.exists()
    _make_dir(out)
    with RunLock(out):
        try:
            study = open_study(cfg, url, name)
        except BaseException:
            if created:  # a bad --storage (or any failure to open it): leave no study directory behind
                shutil.rmtree(out, ignore_errors=True)
            raise
        if opts.storage is None:
            _fail_stale(study)
        else:
            _fail_stale_by_heartbeat(study)
        if not study.trials:
            _refuse_leftover_trials(out)
            enqueue_config_as_written(study, cfg)
        before = _counts(study)[0]
        try:
            _run_all(study, cfg, out, opts, hooks, url)
        except Interrupted as exc:
            done = _counts(study)[0]
            if opts.storage is None:
                _fail_stale(study)  # a worker killed by the second Ctrl-C left its trial running
            write_summary_files(study, cfg, out, None)
            signal_name = str(exc).split(":", 1)[0]
            raise Interrupted(
                f"{signal_name}: stopped; a trial in progress is marked failed and the study keeps {done} "
                f"finished trial(s) of {opts.trials} in {url.removeprefix('sqlite:///')}. Continue with: "
                f"{continue_command(opts)}",
                exc.exit_code,
            ) from None
        except LstmcliError:  # trials failing in a row, a worker failing: the study so far is still written
            write_summary_files(study, cfg, out, None)
            raise
        ran = _counts(study)[0] - before
        write_summary_files(study, cfg, out, None)  # kept even if scoring the best fails
        best_metrics = score_best(study, cfg, out)
        summary = _summary(study, cfg, out, url, ran, best_metrics)
        write_summary_files(study, cfg, out, summary)
        return summary


def _run_all(study: Any, cfg: Config, out: Path, opts: TuneOptions, hooks: TuneHooks, url: str) -> None:
    """The trials still missing: in this process, or in ``opts.jobs`` worker processes."""
    if opts.jobs == 1:
        run_trials(study, cfg, out, opts, hooks)
        return
    if _waiting(study):
        # The config as written, enqueued as trial 0, is run here first: two workers asking at once
        # could both pop it (SQLite has no row locks) and train into one directory.
        trials = min(opts.trials, _counts(study)[0] + 1)
        run_trials(study, cfg, out, replace(opts, trials=trials, worker_threads=threads_per_job(opts.jobs)), hooks)
    codes = run_workers(opts, out, url)
    bad = [c for c in codes if c != 0]
    if bad:
        raise TrainingError(f"{len(bad)} of {opts.jobs} worker processes failed (exit {bad[0]})")


def _fail_stale_by_heartbeat(study: Any) -> None:
    """A shared --storage: trials whose process stopped sending heartbeats are failed before the
    finished ones are counted (Optuna does it only inside optimize, after the count)."""
    import optuna

    try:
        optuna.storages.fail_stale_trials(study)
    except Exception:  # noqa: S110 - a storage without heartbeats has nothing to fail
        pass


def _refuse_leftover_trials(out: Path) -> None:
    """A new study in a directory whose trials/ holds another study's runs would train into them."""
    trials = out / TRIALS
    if trials.is_dir() and any(trials.iterdir()):
        raise OutputError(
            f"{trials}: holds the runs of an earlier study, but the study here is new; choose another --out "
            "(or move that directory away)"
        )


def continue_command(opts: TuneOptions) -> str:
    """The command line that continues this study (the same config, overrides and places)."""
    args = ["lstm", "tune", str(opts.config_path), "--trials", str(opts.trials)]
    for item in opts.overrides:
        args += ["--set", item]
    if opts.jobs > 1:
        args += ["--jobs", str(opts.jobs)]
    if opts.out is not None:
        args += ["--out", str(opts.out)]
    if opts.storage is not None:
        args += ["--storage", opts.storage]
    return shlex.join(args)


def _make_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a directory; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from lstmcli.fsutil import os_error

        raise os_error(out, exc, "create the study directory", CheckpointError) from None


def _summary(
    study: Any, cfg: Config, out: Path, url: str, ran: int, best_metrics: Metrics | None, importances: bool = True
) -> TuneSummary:
    rows = [_row(t) for t in study.get_trials(deepcopy=False)]
    complete = [r for r in rows if r.state == "complete" and r.val_mae is not None]
    best = min(complete, key=lambda r: (r.val_mae or 0.0, r.number)) if complete else None
    found, note = importances_of(study) if importances else (None, "")
    return TuneSummary(
        out=out,
        space=dict(cfg.tune or {}),
        rows=rows,
        best=best,
        best_metrics=best_metrics,
        ran=ran,
        importances=found,
        importance_note=note,
        storage=url,
    )


def importances_of(study: Any) -> tuple[dict[str, float] | None, str]:
    """PED-ANOVA importances (Optuna's, numpy only: fANOVA and MDI need scikit-learn), or why none."""
    optuna = _optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_FOR_IMPORTANCE:
        return None, f"importances need {MIN_FOR_IMPORTANCE} complete trials ({len(complete)} so far)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as exc:  # an evaluator's numerical corner case must not lose the study's summary
        return None, f"no importances ({type(exc).__name__}: {str(exc)[:80]})"
    return {k: float(v) for k, v in values.items()}, "PED-ANOVA (Optuna's, no scikit-learn needed)"


def score_best(study: Any, cfg: Config, out: Path) -> Metrics | None:
    """The best trial's metrics with its test scores: from ``best/`` when it already holds this
    trial, else scored now, once, and ``best/`` replaced by a copy of its run with them."""
    from lstmcli.commands.train import score_test_split
    from lstmcli.runs.schema import read_model

    try:
        best = study.best_trial
    except ValueError:
        return None
    run_dir = out / TRIALS / str(best.number)
    best_dir = out / BEST
    marker = best_dir / TRIAL_FILE
    which = _best_identity(study, best)
    if marker.is_file() and (best_dir / METRICS).is_file():
        try:
            if json.loads(marker.read_text()) == which:
                atomic_write(out / BEST_CONFIG, best_yaml(best_dir, cfg, best.number, best.params, best.value))
                return read_model(best_dir / METRICS, Metrics)
        except (OSError, ValueError):
            pass
    if not run_dir.is_dir():  # trained by another machine sharing the --storage: scored there
        return None
    metrics = score_test_split(run_dir)
    _replace_best(run_dir, best_dir, metrics, which)
    atomic_write(out / BEST_CONFIG, best_yaml(run_dir, cfg, best.number, best.params, best.value))
    return metrics


def _best_identity(study: Any, best: Any) -> dict[str, Any]:
    """What best/ holds: this study's trial, its values and score (a best/ of another study or
    another trial of the same number is scored again, never reused). The study's identity is the one
    open_study checked and stored, not hashed from the data again."""
    return {
        "study": study.study_name,
        **{k: study.user_attrs.get(k) for k in IDENTITY_KEYS},
        "trial": best.number,
        "params": best.params,
        "value": best.value,
    }


TRIAL_FILE = "tune-trial.json"


def _replace_best(run_dir: Path, best_dir: Path, metrics: Metrics, which: dict[str, Any]) -> None:
    """``best/`` becomes a copy of the trial's finished run with the test-scored metrics.json, put in
    place by renames: a reader sees the old best or the new one, whole."""
    tmp = best_dir.with_name(f".{best_dir.name}.new")
    old = best_dir.with_name(f".{best_dir.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(run_dir, tmp, ignore=shutil.ignore_patterns(PARTIAL, ".lock", ".*lstmcli-tmp-*"))
    write_json_model(tmp / METRICS, metrics)
    atomic_write(tmp / TRIAL_FILE, json.dumps(which, indent=2) + "\n")
    if not (tmp / MARKER).is_file():
        RunDir(tmp).mark()
    if best_dir.exists():
        os.replace(best_dir, old)
    os.replace(tmp, best_dir)
    fsync_dir(best_dir.parent)
    shutil.rmtree(old, ignore_errors=True)


def best_yaml(run_dir: Path, base: Config, number: int, params: dict[str, Any], value: float) -> str:
    """The best trial's config as ``lstm train`` takes it: its own config.yaml without output.dir,
    and without the thread count a --jobs worker gave it (unless the config or the space set one)."""
    from lstmcli.config import parse_yaml, read_config_text

    raw = parse_yaml(read_config_text(run_dir / "config.yaml"), str(run_dir / "config.yaml"))
    raw.pop("output", None)  # lstm train best.yaml writes to runs/best, not into the trial
    if base.train.threads is None and "train.threads" not in params and isinstance(raw.get("train"), dict):
        raw["train"].pop("threads", None)
    shown = ", ".join(f"{k}={_fmt_value(v)}" for k, v in params.items())
    head = f"# lstm tune: trial {number} ({shown}), validation MAE {value:.6g}\n"
    return head + yaml.safe_dump(raw, sort_keys=False)


# ---------------------------------------------------------------------------------------------
# trials.csv and tune.png


def trials_csv(rows: Sequence[TrialRow], keys: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", "state", *keys, "val_mae", "epochs", "seconds", "note"])
    for r in rows:
        writer.writerow(
            [
                r.number,
                r.state,
                *("" if r.params.get(k) is None else r.params[k] for k in keys),
                "" if r.val_mae is None else f"{r.val_mae:.8g}",
                "" if r.epochs is None else r.epochs,
                "" if r.seconds is None else f"{r.seconds:.2f}",
                r.note,
            ]
        )
    return buf.getvalue()


def write_summary_files(study: Any, cfg: Config, out: Path, summary: TuneSummary | None) -> None:
    """trials.csv and tune.png, written together (atomically)."""
    from lstmcli.plots import tune_plot

    s = summary or _summary(study, cfg, out, "", 0, None)
    keys = list(cfg.tune or {})
    if not s.rows:
        return
    plot = tune_plot(
        [r.number for r in s.rows],
        [r.val_mae for r in s.rows],
        [r.state for r in s.rows],
        s.importances,
        out.name,
    )
    atomic_write_all({out / TRIALS_CSV: trials_csv(s.rows, keys), out / PLOT: plot})


def refuse_if_worker_misused(opts: TuneOptions) -> None:
    if opts.worker_threads is not None and not os.environ.get(WORKER_ENV):
        raise ConfigError("--worker is internal to lstm tune --jobs; run lstm tune without it")
