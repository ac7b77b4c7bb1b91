"""How training talks to its caller: one hooks object, as minGPT's ``trainer.set_callback``.

The progress display (``cli/progress.py``), the recipe's checkpointing (``commands/train.py``) and
tests each subclass :class:`Hooks`; the trainer calls it and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lstmcli.data.dataset import Dataset


@dataclass(frozen=True)
class EpochReport:
    """What the progress display needs after each epoch."""

    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    best_val: float
    best_epoch: int
    lr: float
    seconds: float
    windows_per_s: float
    improved: bool
    patience: int  # epochs without a better val loss before training stops
    bad_epochs: int  # epochs since the best one

    @property
    def epochs_left(self) -> int:
        """Epochs still allowed: every one to ``epochs`` if val keeps improving."""
        return max(self.epochs - self.epoch, 0)

    @property
    def epochs_left_unless_better(self) -> int:
        """Epochs until early stopping ends training, if val does not improve again."""
        return min(self.epochs_left, max(self.patience - self.bad_epochs, 0))


class Hooks:
    """Every method does nothing unless a subclass overrides it."""

    def on_start(self, ds: Dataset, epochs: int = 0, patience: int = 0, bad_epochs: int = 0) -> None:
        """The data is read and the model built; the first epoch comes next. ``epochs`` is
        ``train.epochs`` (0: not said), ``patience`` the early-stopping patience, ``bad_epochs``
        the epochs since the best one (a resumed run's)."""

    def on_resume(self, epoch: int) -> None:
        """Training continues after the checkpoint of ``epoch``."""

    def on_epoch_end(self, report: EpochReport) -> None:
        """An epoch has finished (and, in a run, been checkpointed)."""

    def on_refit_start(self, epochs: int, done: int = 0) -> None:
        """Early stopping is over; a fresh model trains ``epochs`` epochs on the training and
        validation windows (``done`` of them already, in a resumed run)."""

    def on_refit_epoch(self, epoch: int, epochs: int, train_loss: float, seconds: float) -> None:
        """Epoch ``epoch`` of the refit's ``epochs`` has finished (and, in a run, been checkpointed)."""

    def on_evaluate(self) -> None:
        """Training is over; the run is being scored on its validation and test windows."""

    def on_batch(self, done: int, total: int) -> None:
        """``done`` of the epoch's ``total`` training batches have been queued (no device sync:
        on a GPU they may still be running). Then ``done == total`` once more, as validation starts."""

    def should_stop(self) -> bool:
        """Asked before every batch: True stops training there (the trainer raises Stopped)."""
        return False


class Stopped(BaseException):  # noqa: N818 - a request, not an error
    """Raised by the trainer when ``Hooks.should_stop`` says so; the recipe turns it into Interrupted.

    A BaseException, so that no ``except Exception`` on the way up can swallow it."""
