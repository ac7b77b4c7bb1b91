"""Headless matplotlib figures, rendered to PNG bytes (the caller writes them, atomically)."""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Sequence
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


MAX_PANELS = 12  # a multi-series plot draws the first series up to this many panels, and says so
LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8, "frameon": False}  # beside the data


def _plain_log_ticks(ax: Any, values: list[float]) -> None:
    """A log axis labelled 0.03, 0.05, 0.1, not 3×10⁻², with three to eight labels whatever the range."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    positive = [v for v in values if v > 0 and math.isfinite(v)]
    decades = math.log10(max(positive) / min(positive)) if positive else 1.0
    subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades < 1.2 else (1.0, 2.0, 5.0) if decades < 3 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def loss_curve(history: list[dict[str, float]], best_epoch: int, loss: str = "mse", run: str = "") -> bytes:
    """Train and validation loss per epoch, log scale, best epoch marked, as PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best (epoch {best_epoch})")
    ax.set_yscale("log")
    _plain_log_ticks(ax, [h[k] for h in history for k in ("train_loss", "val_loss")])
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{loss} loss (scaled units)")
    ax.set_title(f"Training loss of {run}" if run else "Training loss")
    ax.legend(**LEGEND)
    ax.grid(alpha=0.3)
    return _png(fig)


def _time_axis(ax: Any, dated: bool) -> None:
    if dated:
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    else:
        ax.set_xlabel("row")
    ax.grid(alpha=0.3)


def _as_x(index: Any) -> Any:
    # numpy datetime64 -> datetime objects, which matplotlib's date axis reads directly.
    return index.astype("datetime64[s]").astype(object) if index.dtype.kind == "M" else index


def _panels(items: Sequence[Any]) -> tuple[list[tuple[Any, int]], str]:
    """(item, target) pairs to draw, at most MAX_PANELS, and a note when some were left out."""
    pairs = [(item, j) for item in items for j in range(len(item.targets))]
    if len(pairs) <= MAX_PANELS:
        return pairs, ""
    shown = {id(item) for item, _ in pairs[:MAX_PANELS]}
    return pairs[:MAX_PANELS], (
        f" (the first {len(shown)} of {len(items)} series; --series draws any one)"
        if len(items) > 1
        else f" (the first {MAX_PANELS} of {len(pairs)} targets)"
    )


def _grid(plt: Any, n: int, width: float, height: float) -> tuple[Any, list[Any]]:
    cols = 1 if n <= 2 else 2 if n <= 4 else 3
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _data_name(item: Any, grid: bool) -> str:
    """The data file's name; a series' item carries "<path>: series 'id'", which a grid of every
    series leaves to the panels."""
    name = Path(item.data).name
    return name.split(": series '", 1)[0] if grid and item.series is not None else name


def _panel_name(item: Any, j: int) -> str:
    name = item.targets[j]
    return f"{item.series}: {name}" if item.series is not None else name


def forecast_plot(items: Sequence[Forecast], tail: int | None = None) -> bytes:
    """The tail of the history and the forecast after it, one panel per series and target, as PNG.

    ``tail`` defaults to max(4·H, steps, 48) rows of history; many series are drawn as a grid of
    their first :data:`MAX_PANELS` panels, with a note saying so.
    """
    plt = _pyplot()
    pairs, note = _panels(items)
    one = len(pairs) == 1
    fig, axes = _grid(plt, len(pairs), 10 if one else 5.2, 3.8 if one else 2.8)
    for ax, (fc, j) in zip(axes, pairs, strict=True):
        _forecast_panel(ax, fc, j, tail or max(4 * fc.horizon, fc.values.shape[0], 48), legend=one)
        if not one:
            ax.set_title(_panel_name(fc, j), fontsize=9, loc="left")
    fc = items[0]
    title = f"Forecast from {Path(fc.run).name} after the last row of {_data_name(fc, not one)}{note}"
    if one:
        axes[0].set_title(title)
    else:
        _figure_legend(fig, axes[0], title)
    return _png(fig)


def _figure_legend(fig: Any, ax: Any, title: str) -> None:
    """One legend for a grid, under its title, drawn from the first panel's lines."""
    handles, labels = ax.get_legend_handles_labels()
    fig.suptitle(title, y=1.0)
    fig.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.97), ncol=len(labels), fontsize=8, frameon=False
    )
    fig.tight_layout(rect=(0, 0, 1, 0.93))


def _forecast_panel(ax: Any, fc: Forecast, j: int, tail: int, legend: bool) -> None:
    steps = fc.values.shape[0]
    hist_x = _as_x(fc.history_index[-tail:])
    fut_x = _as_x(fc.index if fc.date_column else fc.history_index[-1] + fc.index)
    ax.plot(hist_x, fc.history[-tail:, j], color="black", lw=1.4, label="history")
    _joined(
        ax,
        hist_x[-1],
        fc.history[-1, j],
        fut_x,
        fc.values[:, j],
        f"forecast ({steps} steps{', recursive' if fc.recursive else ''})",
    )
    for n, (level, (lo, hi)) in enumerate(sorted(fc.intervals.items(), reverse=True)):  # widest first
        ax.fill_between(
            fut_x, lo[:, j], hi[:, j], color="tab:orange", alpha=0.15 + 0.15 * n, lw=0, label=f"{level}% interval"
        )
    ax.axvline(hist_x[-1], color="grey", ls=":", lw=1, label="last observed row")
    ax.set_ylabel(fc.targets[j])
    if legend:
        ax.legend(**LEGEND)
    _time_axis(ax, bool(fc.date_column))


def _joined(ax: Any, x0: Any, y0: float, xs: Any, ys: Any, label: str) -> None:
    """A forecast joined to the last observed point, so that the two lines read as one series."""
    ax.plot(
        [x0, *xs],
        [y0, *ys],
        color="tab:orange",
        lw=1.8,
        marker="o",
        ms=3,
        markevery=list(range(1, len(ys) + 1)),
        label=label,
    )


def backtest_plot(items: Sequence[Backtest]) -> bytes:
    """A backtest as PNG. One series and target: the whole backtest range (actuals, the 1-step-ahead
    forecast from every origin, the train/val/test boundaries) above a close-up of the last origin's
    H-step forecast against what happened. Several: a grid of those close-ups, first
    :data:`MAX_PANELS` panels."""
    plt = _pyplot()
    pairs, note = _panels(items)
    bt = items[0]
    title = f"Backtest of {Path(bt.run).name} on {_data_name(bt, len(pairs) > 1)} ({bt.split} origins){note}"
    if len(pairs) == 1:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), height_ratios=(3, 2))
        _backtest_overview(top, bt, pairs[0][1])
        top.set_title(title)
        _last_origin(bottom, bt, pairs[0][1], legend=True)
        bottom.set_title("The last origin, close up", fontsize=9, loc="left")
        return _png(fig)
    fig, axes = _grid(plt, len(pairs), 5.2, 2.8)
    for ax, (item, j) in zip(axes, pairs, strict=True):
        _last_origin(ax, item, j, legend=False)
        mae = _scores(item, j).model.MAE
        ax.set_title(f"{_panel_name(item, j)} (MAE {mae:.4g})", fontsize=9, loc="left")
    _figure_legend(fig, axes[0], title)
    return _png(fig)


def _scores(bt: Backtest, j: int) -> Any:
    return bt.metrics.per_target[bt.targets[j]] if bt.metrics.per_target else bt.metrics


def _backtest_overview(ax: Any, bt: Backtest, j: int) -> None:
    H = bt.horizon
    first, last = int(bt.origins[0]), int(bt.origins[-1])
    lo = max(0, first - 2 * H)
    x = _as_x(bt.history_index)
    ax.plot(x[lo:], bt.history[lo:, j], color="black", lw=1.2, label="actual")
    ax.plot(
        x[bt.origins],
        bt.forecasts[:, 0, j],
        color="tab:blue",
        lw=1.0,
        alpha=0.8,
        label=f"1-step-ahead forecast from each of {bt.origins.size:,} origins",
    )
    ax.axvspan(x[first], x[last + H - 1], color="tab:blue", alpha=0.06, label="range the backtest scores")
    for row, name in zip(bt.split_rows, ("val", "test"), strict=True):
        if lo < row < len(x):
            ax.axvline(x[row], color="grey", ls="--", lw=0.9)
            ax.text(
                x[row], 0.98, f" {name} →", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="dimgrey"
            )
    ax.set_ylabel(bt.targets[j])
    mae = _scores(bt, j).model.MAE
    ax.legend(**LEGEND, title=f"model MAE {mae:.4g}\nover all {H} steps", title_fontsize=8)
    _time_axis(ax, bool(bt.date_column))


def _last_origin(ax: Any, bt: Backtest, j: int, legend: bool) -> None:
    """The last origin's H-step forecast beside the actuals, with 3·H rows before it."""
    H = bt.horizon
    last = int(bt.origins[-1])
    lo = max(0, last - 3 * H)
    x = _as_x(bt.history_index)
    ax.plot(x[lo : last + H], bt.history[lo : last + H, j], color="black", lw=1.4, label="actual")
    _joined(
        ax,
        x[last - 1],
        bt.history[last - 1, j],
        x[last : last + H],
        bt.forecasts[-1, :, j],
        f"{H}-step forecast from the last origin",
    )
    ax.axvline(x[last - 1], color="grey", ls=":", lw=1)
    ax.set_ylabel(bt.targets[j])
    if legend:
        ax.legend(**LEGEND)
    _time_axis(ax, bool(bt.date_column))


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


def tune_plot(
    numbers: Sequence[int],
    values: Sequence[float | None],
    states: Sequence[str],
    importances: dict[str, float] | None,
    study: str = "",
) -> bytes:
    """lstm tune's study: each complete trial's validation MAE with the best so far, the pruned and
    failed trials marked along the bottom, and the parameters' importances beside it when known."""
    plt = _pyplot()
    if importances:
        fig, (ax, imp) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    else:
        fig, ax = plt.subplots(figsize=(8, 4))
    done = [(n, v) for n, v, s in zip(numbers, values, states, strict=True) if s == "complete" and v is not None]
    if done:
        xs, ys = zip(*done, strict=True)
        ax.scatter(xs, ys, s=22, color="tab:blue", label="complete trial", zorder=3)
        best, running = [], float("inf")
        for y in ys:
            running = min(running, y)
            best.append(running)
        last = max(numbers)  # the best so far holds to the last trial, complete or not
        ax.step([*xs, last], [*best, best[-1]], where="post", color="tab:orange", label="best so far", zorder=2)
        at = xs[ys.index(best[-1])]
        ax.annotate(
            f"best: trial {at}, {best[-1]:.4g}",
            (at, best[-1]),
            xytext=(0, 8),
            textcoords="offset points",
            ha="right" if at > (xs[0] + xs[-1]) / 2 else "left",
            fontsize=8,
        )
        low, high = ax.get_ylim()
        ax.set_ylim(low - 0.12 * (high - low), high)  # a strip below the data for the pruned and failed
    for state, marker, color in (("pruned", "v", "tab:grey"), ("failed", "x", "tab:red")):
        xs_s = [n for n, s in zip(numbers, states, strict=True) if s == state]
        if xs_s:
            # No MAE to show: along the bottom edge, in axes coordinates.
            ax.scatter(
                xs_s,
                [0.02] * len(xs_s),
                transform=ax.get_xaxis_transform(),
                marker=marker,
                color=color,
                label=f"{state} (no MAE)",
                zorder=3,
                clip_on=False,
            )
    if numbers:  # every trial on the axis, the pruned and failed ones after the last complete too
        ax.set_xlim(min(numbers) - 0.5, max(numbers) + 0.5)
    ax.set_xlabel("trial")
    ax.set_ylabel("validation MAE (original units)")
    ax.set_title(f"Trials of {study}" if study else "Trials")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False, loc="best")
    if importances:
        names = list(importances)[::-1]  # the most important on top
        imp.barh(names, [importances[k] for k in names], color="tab:blue")
        imp.set_xlabel("importance (PED-ANOVA)")
        imp.set_title("Parameter importance")
        imp.set_xlim(0, max(1e-9, max(importances.values())) * 1.15)
        imp.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _png(fig)
