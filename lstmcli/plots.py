"""Headless matplotlib figures, rendered to PNG bytes (the caller writes them, atomically)."""

from __future__ import annotations

import io
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lstmcli.results import Backtest, Forecast


_preload: threading.Thread | None = None


def _import_pyplot() -> Any:
    if "MPLCONFIGDIR" not in os.environ and not _has_home():
        # Without a home directory matplotlib makes a temporary config dir and logs a warning on
        # stderr; a fixed per-user one under the temp dir says nothing and keeps its font cache.
        os.environ["MPLCONFIGDIR"] = os.path.join(tempfile.gettempdir(), f"lstmcli-matplotlib-{os.getuid()}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _has_home() -> bool:
    try:
        Path.home()
    except (RuntimeError, KeyError):
        return False
    return True


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


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def loss_curve(history: list[dict[str, float]], best_epoch: int) -> bytes:
    """Train and validation loss per epoch, log scale, best epoch marked, as PNG."""
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
    return _png(fig)


def _time_axis(ax: Any, dated: bool) -> None:
    if dated:
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator(minticks=4, maxticks=9)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    else:
        ax.set_xlabel("row")
    ax.grid(alpha=0.3)


def _as_x(index: Any) -> Any:
    # numpy datetime64 -> datetime objects, which matplotlib's date axis reads directly.
    return index.astype("datetime64[s]").astype(object) if index.dtype.kind == "M" else index


def forecast_plot(fc: Forecast, tail: int | None = None) -> bytes:
    """The tail of the history and the forecast after it, one panel per target, as PNG.

    ``fc`` is a ``predict.Forecast``; ``tail`` defaults to max(4·H, steps, 48) rows of history.
    """
    plt = _pyplot()
    k = len(fc.targets)
    steps = fc.values.shape[0]
    tail = tail or max(4 * fc.horizon, steps, 48)
    hist_x = _as_x(fc.history_index[-tail:])
    fut_x = _as_x(fc.index if fc.date_column else fc.history_index[-1] + fc.index)
    fig, axes = plt.subplots(k, 1, figsize=(9, 3.6 * k), squeeze=False, sharex=True)
    for j, (ax, name) in enumerate(zip(axes[:, 0], fc.targets, strict=True)):
        ax.plot(hist_x, fc.history[-tail:, j], color="black", lw=1.4, label="history")
        # Join the forecast to the last observed point so the two lines read as one series.
        ax.plot(
            [hist_x[-1], *fut_x],
            [fc.history[-1, j], *fc.values[:, j]],
            color="tab:orange",
            lw=1.8,
            marker="o",
            ms=3,
            markevery=list(range(1, steps + 1)),
            label=f"forecast ({steps} steps{', recursive' if fc.recursive else ''})",
        )
        for n, (level, (lo, hi)) in enumerate(sorted(fc.intervals.items(), reverse=True)):  # widest first
            ax.fill_between(
                fut_x, lo[:, j], hi[:, j], color="tab:orange", alpha=0.15 + 0.15 * n, lw=0, label=f"{level}% interval"
            )
        ax.axvline(hist_x[-1], color="grey", ls=":", lw=1)
        ax.set_ylabel(name)
        ax.legend(loc="upper left", fontsize=8)
        _time_axis(ax, bool(fc.date_column))
    axes[0, 0].set_title(f"Forecast from {Path(fc.run).name} after the last row of {Path(fc.data).name}")
    return _png(fig)


def backtest_plot(bt: Backtest) -> bytes:
    """Actuals over the backtest range, the 1-step-ahead forecast from every origin, and the
    full H-step forecast from the last origin, one panel per target, as PNG."""
    plt = _pyplot()
    k, H = len(bt.targets), bt.horizon
    lo = max(0, int(bt.origins[0]) - 2 * H)
    x = _as_x(bt.history_index)
    fig, axes = plt.subplots(k, 1, figsize=(10, 3.8 * k), squeeze=False, sharex=True)
    last = int(bt.origins[-1])
    for j, (ax, name) in enumerate(zip(axes[:, 0], bt.targets, strict=True)):
        ax.plot(x[lo:], bt.history[lo:, j], color="black", lw=1.4, label="actual")
        ax.plot(
            x[bt.origins],
            bt.forecasts[:, 0, j],
            color="tab:blue",
            lw=1.2,
            alpha=0.8,
            label=f"1-step-ahead forecast ({bt.origins.size} origins)",
        )
        ax.plot(
            x[last : last + H],
            bt.forecasts[-1, :, j],
            color="tab:orange",
            lw=1.8,
            marker="o",
            ms=3,
            label=f"{H}-step forecast from the last origin",
        )
        ax.axvspan(x[int(bt.origins[0])], x[last + H - 1], color="tab:blue", alpha=0.06)
        scores = bt.metrics.per_target[name] if bt.metrics.per_target else bt.metrics
        mae = scores.model.MAE
        ax.set_ylabel(name)
        ax.legend(loc="upper left", fontsize=8, title=f"model MAE {mae:.4g} over all {H} steps", title_fontsize=8)
        _time_axis(ax, bool(bt.date_column))
    axes[0, 0].set_title(f"Backtest of {Path(bt.run).name} on {Path(bt.data).name} ({bt.split} origins)")
    return _png(fig)
