"""Training progress on stderr, as users of Keras and Lightning expect it.

On a terminal: a spinner while the data is read, then one row per epoch that stays on screen
(epoch, train and validation loss, a best marker, learning rate, time) above a live bar for the
epoch in progress (batches done, and an ETA bounded by early stopping). Not on a terminal (a log
file, CI): one plain line per epoch. Everything fits 80 columns.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console

from lstmcli.cli.render import err, plural
from lstmcli.training.hooks import EpochReport, Hooks

if TYPE_CHECKING:
    from lstmcli.data.dataset import Dataset

HEADER = " epoch        train        val       best        lr     time      win/s"
RECENT = 5  # epochs whose mean time predicts the next ones
REFRESH_S = 0.1  # the bar is redrawn ten times a second; batch updates closer together are dropped


def clock(seconds: float) -> str:
    """``0:07``, ``12:30``, ``1:02:05``."""
    s = max(int(round(seconds)), 0)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def epoch_row(r: EpochReport) -> str:
    """One row of the epoch table under :data:`HEADER`; ``*`` marks a new best validation loss."""
    counter = f"{r.epoch}/{r.epochs}"
    mark = "*" if r.improved else " "
    return (
        f"{counter:>9} {r.train_loss:>#10.4g} {r.val_loss:>#10.4g}{mark}"
        f"{r.best_val:>#10.4g} {r.lr:>9.2g} {r.seconds:>7.2f}s {r.windows_per_s:>10,.0f}"
    )


def stop_line(r: EpochReport) -> str | None:
    """What ended training after this epoch, when it was early stopping."""
    if r.epochs_left and not r.epochs_left_unless_better:
        return (
            f"early stop after epoch {r.epoch}: no better validation loss for {plural(r.patience, 'epoch')} "
            f"(best {r.best_val:.4g} at epoch {r.best_epoch})"
        )
    return None


class Eta:
    """Time left, from the mean of the last epochs' times and the epoch in progress.

    Two figures, because early stopping makes the end uncertain: the first assumes the validation
    loss does not improve again (training ends ``patience`` epochs after the best one), ``max`` that
    every allowed epoch runs. The first is what a user usually waits; the second bounds it."""

    def __init__(self, epochs: int = 0, patience: int = 0, done: int = 0, bad: int = 0) -> None:
        # Epochs still to run at most, and until early stopping if val does not improve: what
        # EpochReport.epochs_left and .epochs_left_unless_better say, known before the first report.
        self.epochs = epochs
        self.most = max(epochs - done, 0)
        self.unless_better = min(self.most, max(patience - bad, 0))
        self.times: list[float] = []

    def add(self, report: EpochReport) -> None:
        self.times = [*self.times[-(RECENT - 1) :], report.seconds]
        self.epochs, self.most, self.unless_better = report.epochs, report.epochs_left, report.epochs_left_unless_better

    def add_fixed(self, seconds: float, left: int) -> None:
        """An epoch of a run with no early stop (the refit) took ``seconds``; ``left`` epochs follow."""
        self.times = [*self.times[-(RECENT - 1) :], seconds]
        self.most = self.unless_better = left

    def left(self, epoch_elapsed: float, batches_done: int, batches: int) -> tuple[float, float] | None:
        """Seconds left (if val stops improving, at most), with the epoch in progress counted;
        None before the first batches have given a speed."""
        if self.times:
            per_epoch = sum(self.times) / len(self.times)
        elif batches_done:
            per_epoch = epoch_elapsed * batches / batches_done
        else:
            return None
        this = max(per_epoch - epoch_elapsed, 0.0)  # the epoch in progress is the first of those left
        return this + max(self.unless_better - 1, 0) * per_epoch, this + max(self.most - 1, 0) * per_epoch

    def text(self, epoch_elapsed: float, batches_done: int, batches: int) -> str:
        left = self.left(epoch_elapsed, batches_done, batches)
        if left is None:
            return "ETA after the first batches"
        stop, most = left
        return f"ETA {clock(stop)}" if most - stop < 1 else f"ETA {clock(stop)}, max {clock(most)}"


class Progress(Hooks):
    """The training hooks the CLI gives: what is being trained, then every epoch; nothing when quiet."""

    def __init__(self, quiet: bool, console: Console | None = None) -> None:
        self.console = console or err
        self.quiet = quiet
        self.live = not quiet and self.console.is_terminal
        self.eta = Eta()
        self.status: Any = None
        self.bar: Any = None
        self.task: Any = None
        self.epoch_start = time.perf_counter()
        self.drawn = 0.0
        self.epoch = 1
        self.refit = 0  # the refit's epochs, once it has started

    def __enter__(self) -> Progress:
        if self.live:
            self.status = self.console.status("reading the data and building the model", spinner="dots")
            self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_status()
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def _stop_status(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def on_evaluate(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        if self.live:
            self.status = self.console.status("scoring the validation and test windows", spinner="dots")
            self.status.start()

    def on_resume(self, epoch: int) -> None:
        self.epoch = epoch + 1
        if not self.quiet:
            self.console.print(f"resuming from the checkpoint of epoch {epoch}")

    def on_start(self, ds: Dataset, epochs: int = 0, patience: int = 0, bad_epochs: int = 0) -> None:
        self.eta = Eta(epochs, patience, self.epoch - 1, bad_epochs)
        self._stop_status()
        counts = ds.counts()
        if not self.quiet:
            many = f" in {len(ds.series)} series" if len(ds.series) > 1 else ""
            if ds.padded_series:
                many += f" ({ds.padded_series} too short for a full lookback, padded)"
            self.console.print(
                f"{ds.table.path}: {ds.table.n_rows} rows{many}; windows train {counts['train']}, "
                f"val {counts['val']}, test {counts['test']}"
            )
        if self.live:
            from rich.progress import BarColumn, TextColumn
            from rich.progress import Progress as Bar

            self.console.print(HEADER)
            self.bar = Bar(
                TextColumn("{task.description}", markup=False),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[batches]}", markup=False),
                TextColumn("{task.fields[eta]}", markup=False),
                console=self.console,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.bar.start()
            self.task = self.bar.add_task(self._label(), total=None, batches="", eta="")
        self.epoch_start = time.perf_counter()

    def _label(self) -> str:
        if self.refit:
            return f"refit {self.epoch}/{self.refit}"
        return f"epoch {self.epoch}/{self.eta.epochs}" if self.eta.epochs else f"epoch {self.epoch}"

    def on_refit_start(self, epochs: int, done: int = 0) -> None:
        self.refit, self.epoch = epochs, done + 1
        times = self.eta.times
        self.eta = Eta(epochs, epochs, done)  # every refit epoch runs: no early stop to bound
        self.eta.times = times  # its epochs take about as long as the last ones (a few more windows)
        if not self.quiet:
            text = (
                f"resuming the refit after its epoch {done} of {epochs}"
                if done
                else f"refit: a fresh model trains {plural(epochs, 'epoch')} (the best epoch's count) on the "
                "training and validation windows"
            )
            self.console.print(text, soft_wrap=not self.live)
        self._next_epoch()

    def on_refit_epoch(self, epoch: int, epochs: int, train_loss: float, seconds: float) -> None:
        self.eta.add_fixed(seconds, epochs - epoch)
        self.epoch = epoch + 1
        self._next_epoch()
        if self.bar is None and not self.quiet:
            eta = f"  {self.eta.text(0.0, 0, 1)}" if epoch < epochs else ""
            self.console.print(f"refit {epoch}/{epochs}  train {train_loss:.4g}  {seconds:.2f}s{eta}", soft_wrap=True)

    def _next_epoch(self) -> None:
        """The next epoch starts now: its clock, and the live bar back to none of its batches."""
        self.epoch_start = time.perf_counter()
        if self.bar is not None:
            self.bar.update(self.task, description=self._label(), completed=0, batches="", eta=self.eta.text(0.0, 0, 1))

    def status_line(self, done: int, total: int) -> tuple[str, str]:
        """The live bar's words: the epoch counter, and the ETA for ``done`` of ``total`` batches."""
        return self._label(), self.eta.text(time.perf_counter() - self.epoch_start, done, total)

    def on_batch(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        if done and done < total and now - self.drawn < REFRESH_S:
            return
        self.drawn = now
        label, eta = self.status_line(done, total)
        self.bar.update(
            self.task, description=label, completed=done, total=total, batches=f"{done}/{total} batches", eta=eta
        )

    def on_epoch_end(self, report: EpochReport) -> None:
        r = report
        self.eta.add(r)
        self.epoch = r.epoch + 1
        stop = stop_line(r)
        if self.bar is not None:
            self.console.print(epoch_row(r))
            if stop:
                self.console.print(stop)
        self._next_epoch()
        if self.bar is None and not self.quiet:
            more = r.epochs_left_unless_better > 0  # another epoch follows this one
            self.console.print(plain_line(r, self.eta.text(0.0, 0, 1) if more else ""), soft_wrap=True)
            if stop:
                self.console.print(stop, soft_wrap=True)


def plain_line(r: EpochReport, eta: str) -> str:
    """An epoch as one self-describing line, for logs: no terminal, no table header above it."""
    mark = " *" if r.improved else ""
    tail = f"  {eta}" if eta else ""
    return (
        f"epoch {r.epoch}/{r.epochs}  train {r.train_loss:.4g}  val {r.val_loss:.4g}{mark}  "
        f"best {r.best_val:.4g}@{r.best_epoch}  lr {r.lr:.2g}  {r.seconds:.2f}s  {r.windows_per_s:,.0f} win/s{tail}"
    )
