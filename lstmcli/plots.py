"""Headless matplotlib figures, written atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from lstmcli.checkpoint import atomic_write


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
