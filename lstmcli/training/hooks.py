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


class Hooks:
    """Every method does nothing unless a subclass overrides it."""

    def on_start(self, ds: Dataset) -> None:
        """The data is read and the model built; the first epoch comes next."""

    def on_resume(self, epoch: int) -> None:
        """Training continues after the checkpoint of ``epoch``."""

    def on_epoch_end(self, report: EpochReport) -> None:
        """An epoch has finished (and, in a run, been checkpointed)."""

    def should_stop(self) -> bool:
        """Asked before every batch: True stops training there (the trainer raises Stopped)."""
        return False


class Stopped(BaseException):  # noqa: N818 - a request, not an error
    """Raised by the trainer when ``Hooks.should_stop`` says so; the recipe turns it into Interrupted.

    A BaseException, so that no ``except Exception`` on the way up can swallow it."""
