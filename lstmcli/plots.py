"""Headless matplotlib figures, written atomically as PNG."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

from lstmcli.checkpoint import atomic_write

_preload: threading.Thread | None = None


def _import_pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _warm_up() -> None:
    # The first figure saved also loads the font cache, the font and the PNG writer (~0.2 s).
    plt = _import_pyplot()
    fig = plt.figure(figsize=(1, 1))
    fig.text(0.5, 0.5, "0.1")
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)


def preload() -> None:
    """Import matplotlib on a background thread (idempotent).

    Importing pyplot and saving a first figure cost ~0.6 s, a seventh of a short `lstm train`
    process; torch kernels release the GIL, so done during training it is nearly free. Call it once torch and the optimizer are
    set up (after the first epoch), so the two threads never import the same modules at once.
    """
    global _preload
    if _preload is None:
        _preload = threading.Thread(target=_warm_up, name="lstmcli-preload-matplotlib", daemon=True)
        _preload.start()


def _pyplot() -> Any:
    if _preload is not None:
        _preload.join()
    return _import_pyplot()


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write(path, buf.getvalue())


def loss_curve(history: list[dict[str, float]], best_epoch: int, path: Path) -> None:
    """Train and validation loss per epoch, log scale, best epoch marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best (epoch {best_epoch})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (scaled units)")
    ax.set_title("Training loss")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)
