"""Headless matplotlib figures, rendered to PNG bytes (the caller writes them, atomically)."""

from __future__ import annotations

import io
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lstmcli.results import Backtest, Forecast, Traced


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


def _edges(x: Any) -> Any:
    """Cell edges around the points x (T,), for pcolormesh: halfway between neighbours."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[:-1] + x[1:]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def trace_plot(tr: Traced) -> bytes:
    """One traced window: the input series on top; per layer (a column each) a heat map of each
    gate's activation (units × time steps, units ordered by their mean forget gate, longest memory
    on top); the cell-state norm ‖c_t‖ at the bottom; all on the window's time axis. As PNG."""
    import matplotlib.dates as mdates
    import numpy as np

    plt = _pyplot()
    from lstmcli.model.gates import ACTIVATION, GATE_NAMES, TEXTBOOK_ORDER

    facts = tr.facts
    layers = len(tr.layers)
    x = mdates.date2num(_as_x(tr.index)) if tr.dated else np.asarray(tr.index, dtype=float)
    xe = _edges(x)
    heights = [1.3, 1, 1, 1, 1, 0.9]
    fig = plt.figure(figsize=(6.2 * layers + 1.0, 11.5))
    # one column per layer, and a narrow last one for the gates' colour bars, so every column is as wide
    grid = fig.add_gridspec(
        6, layers + 1, height_ratios=heights, width_ratios=[1] * layers + [0.03], hspace=0.14, wspace=0.12
    )
    first = fig.add_subplot(grid[0, 0])
    axes = np.array(
        [
            [fig.add_subplot(grid[r, c], sharex=first) if (r, c) != (0, 0) else first for c in range(layers)]
            for r in range(6)
        ]
    )
    for r in range(5):
        for ax in axes[r]:
            ax.tick_params(labelbottom=False)
    k = tr.targets
    meshes: dict[str, Any] = {}
    for col, (lt, act) in enumerate(zip(tr.layers, facts.layers, strict=True)):
        ax = axes[0, col]
        for j in range(k):
            ax.plot(x, tr.values[:, j], color="black", lw=1.4, marker="o", ms=2.5, label=f"{tr.columns[j]}")
        if len(tr.columns) > k:  # the other inputs, as the LSTM reads them
            twin = ax.twinx()
            for j in range(k, len(tr.columns)):
                twin.plot(
                    x,
                    tr.lstm_input[:, j],
                    lw=1,
                    ls="--",
                    alpha=0.8,
                    label=f"{tr.columns[j]} (scaled, as the LSTM reads it)",
                )
            twin.legend(loc="upper right", fontsize=7)
        ax.set_ylabel(tr.columns[0] if k == 1 else "targets")
        ax.legend(loc="upper left", fontsize=7)
        ax.set_title(f"layer {act.layer} ({len(act.units)} units)", fontsize=10)
        ax.grid(alpha=0.3)
        order = np.argsort([-u.mean["f"] for u in act.units], kind="stable")  # longest memory on top
        units = np.arange(len(order) + 1) - 0.5
        for row, gate in enumerate(TEXTBOOK_ORDER, start=1):
            values = getattr(lt, gate)[0].numpy()[:, order].T  # (m, T), top row: longest memory
            ax = axes[row, col]
            cmap, lo = ("RdBu_r", -1.0) if gate == "g" else ("viridis", 0.0)
            meshes[gate] = ax.pcolormesh(xe, units, values, cmap=cmap, vmin=lo, vmax=1.0, shading="flat")
            ax.set_ylim(units[-1], units[0])  # first (longest memory) unit on top
            ticks = np.unique(np.linspace(0, len(order) - 1, min(len(order), 5)).round().astype(int))
            ax.set_yticks(ticks)
            ax.set_yticklabels([str(order[t] + 1) for t in ticks], fontsize=7)
            if col == 0:
                ax.set_ylabel(f"{gate}: {GATE_NAMES[gate]}\n({ACTIVATION[gate]}), unit", fontsize=8)
        ax = axes[5, col]
        norm = lt.c[0].norm(dim=1).numpy()  # (T,)
        ax.plot(x, norm, color="tab:purple", lw=1.4, label="‖c_t‖ (all units)")
        ax.plot(x, lt.c[0].abs().max(dim=1).values.numpy(), color="tab:purple", lw=1, ls=":", label="max unit |c_t|")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", fontsize=7)
        if col == 0:
            ax.set_ylabel("cell state", fontsize=8)
        _time_axis(ax, tr.dated)
    for row, gate in enumerate(TEXTBOOK_ORDER, start=1):
        bar = fig.colorbar(meshes[gate], cax=fig.add_subplot(grid[row, layers]))
        bar.ax.tick_params(labelsize=7)
        bar.set_label(f"{gate} = {ACTIVATION[gate]}(·)", fontsize=8)
    w = facts.window
    dates = f", {w.first_date} … {w.last_date}" if w.first_date else f", rows {w.first_row}–{w.last_row}"
    series = f", series {w.series}" if w.series is not None else ""
    fig.suptitle(
        f"Gates of {Path(tr.run).name} on {Path(w.data).name}{series}: window {w.index}{dates} (L = {w.steps})\n"
        "heat maps: units ordered by their mean forget gate, longest memory on top",
        fontsize=10,
        y=0.95,
    )
    return _png(fig)
