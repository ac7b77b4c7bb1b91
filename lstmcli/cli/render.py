"""What the commands print: rich tables and lines built from the commands' typed results.

Both consoles have markup off, so paths, column names and series ids are printed as they are,
whatever brackets they hold; the few styled lines opt in with ``markup=True`` and escape what
they show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from lstmcli.commands.export import ExportReport
    from lstmcli.commands.init import Starter
    from lstmcli.commands.inspect_run import InspectFacts, RunSummary
    from lstmcli.commands.train import TrainSummary
    from lstmcli.commands.tune import TrialRow, TuneSummary
    from lstmcli.evaluate import (
        Calibration,
        CombinationChoice,
        ForecastScores,
        IntervalTable,
        QuantileScores,
        SplitScores,
        TargetScores,
    )
    from lstmcli.model.gate_trace import LayerActivity, UnitActivity
    from lstmcli.model.gates import LayerFacts
    from lstmcli.results import Backtest, Forecast, Results, TraceFacts
    from lstmcli.runs.schema import Metrics

out = Console(markup=False, highlight=False)
err = Console(stderr=True, markup=False, highlight=False)


def plural(count: int, noun: str) -> str:
    """``1 window``, ``2 windows``, ``1,527 windows``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def error_line(message: str, label: str = "[bold red]error:[/]") -> None:
    """One line on stderr: ``error: message`` (or another label, e.g. interrupted)."""
    # One line in a log (what scripts and tests read); wrapped at words on a terminal, where the
    # terminal's own wrapping would cut words in two.
    err.print(f"{label} {escape(message)}", markup=True, soft_wrap=not err.is_terminal)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}%"


def column(values: Sequence[float | None], significant: int = 4) -> list[str]:
    """A table column's numbers with one number of decimals, the largest given ``significant``
    digits: ``1352.30`` under ``1600.15``, never ``1352.3``; ``9007.00`` beside ``8933.15``."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    big = max(finite, default=0.0)
    decimals = min(max(significant - 1 - math.floor(math.log10(big)), 0), 10) if big > 0 else 0
    return ["—" if v is None else f"{v:.{decimals}f}" if math.isfinite(v) else str(v) for v in values]


def _ratio(value: float | None) -> str:
    """MASE, relMAE, MSIS: ratios near 1, always three decimals (``1.000`` beside ``0.924``)."""
    return "—" if value is None else f"{value:.3f}"


# ---------------------------------------------------------------------------------------------
# Scores


def metrics_table(scores: TargetScores, title: str) -> Table:
    """Model and baselines side by side: MASE below 1 beats seasonal naive in-sample, relMAE below 1
    beats it on these windows."""
    table = Table(title=title, title_justify="left", caption=_CAPTION, caption_justify="left")
    table.add_column("forecast")
    for name in ("MAE", "RMSE", "sMAPE", "MASE", "relMAE"):
        table.add_column(name, justify="right")
    baselines = sorted(scores.baselines(), key=lambda b: b[0] != "naive")  # naive, then each seasonal naive
    rows: list[tuple[Text | str, ForecastScores]] = [(Text("LSTM", style="bold"), scores.model), *baselines]
    mae, rmse = column([row.MAE for _, row in rows]), column([row.RMSE for _, row in rows])
    for (label, row), a, r in zip(rows, mae, rmse, strict=True):
        table.add_row(label, a, r, _pct(row.sMAPE), _ratio(row.MASE), _ratio(row.relMAE))
    return table


def intervals_table(
    intervals: dict[str, IntervalTable], title: str, calibration: Calibration | None = None, caption: str | None = None
) -> Table:
    """Coverage, width and MSIS of a run's calibrated intervals, beside seasonal naive's; with
    ``calibration``, a level its validation windows were too few to promise is marked *."""
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for col in ("level", "LSTM coverage", "width", "MSIS", "s. naive coverage", "width", "MSIS"):
        table.add_column(col, justify="right")
    widths = column([f.width for row in intervals.values() for f in (row.model, row.seasonal_naive)])
    for n, (level, row) in enumerate(intervals.items()):
        mark = "*" if calibration is not None and not calibration.guaranteed(int(level)) else ""
        cells = [
            c
            for k, f in enumerate((row.model, row.seasonal_naive))
            for c in (_pct(None if f.coverage is None else 100 * f.coverage), widths[2 * n + k], _ratio(f.MSIS))
        ]
        table.add_row(f"{level}%{mark}", *cells)
    return table


def _conformal(bands: bool) -> str:
    """How the intervals were calibrated, in a few words."""
    return "CQR: conformalized quantile bands" if bands else "split conformal"


def quantiles_table(quantiles: dict[str, QuantileScores]) -> Table:
    """A quantile run's quantiles on the test split: how often values fell below each, its pinball loss."""
    table = Table(
        title="Quantile forecasts on the test split",
        title_justify="left",
        caption="below: fraction of test values at or below the quantile (τ when calibrated)",
        caption_justify="left",
    )
    for col in ("quantile", "below", "pinball loss"):
        table.add_column(col, justify="right")
    pinball = column([q.pinball for q in quantiles.values()])
    for (tau, q), loss in zip(quantiles.items(), pinball, strict=True):
        table.add_row(f"{float(tau):g}", _pct(None if q.below is None else 100 * q.below), loss)
    return table


def summary_intervals_table(intervals: dict[str, IntervalTable], calibration: Calibration, series: int) -> Table:
    """The training summary's table: the test split, with how the intervals were calibrated."""
    own = len(calibration.per_series or {})
    pooled = ""
    if series > 1:
        pooled = f", pooled over {series} series" if not own else f"; {own} of {series} series on their own windows"
    return intervals_table(
        intervals,
        f"Prediction intervals on the test split ({_conformal(calibration.bands is not None)} on "
        f"{calibration.windows} validation windows{pooled})",
        calibration,
        "coverage: fraction of test values inside; MSIS: interval score / in-sample seasonal naive MAE (M4)",
    )


_CAPTION = "MASE: MAE / in-sample seasonal naive MAE of the training rows; relMAE: MAE / seasonal naive's here"


def series_table(per_series: dict[str, SplitScores]) -> Table:
    """Test MAE of the model and baselines, MASE and relMAE, for every series."""
    table = Table(title="Test split per series, original units", title_justify="left")
    for col in ("series", "LSTM MAE", "naive MAE", "s. naive MAE", "MASE", "relMAE"):
        table.add_column(col, justify="left" if col == "series" else "right")
    rows = list(per_series.values())
    # One number of decimals per table, not per column: the three MAE columns are compared across.
    maes = column([f.MAE for m in rows for f in (m.model, m.naive, m.seasonal_naive)])
    for n, (sid, m) in enumerate(per_series.items()):
        table.add_row(sid, *maes[3 * n : 3 * n + 3], _ratio(m.model.MASE), _ratio(m.model.relMAE))
    return table


def series_means_line(scores: SplitScores) -> str | None:
    """The per-series MASE and sMAPE averaged over series, model against baselines."""
    rows = scores.series_mean_rows()
    if not rows:
        return None
    parts = [f"{label} {_ratio(m.MASE)} / {_pct(m.sMAPE)}" for label, m in rows]
    return "mean over series (MASE / sMAPE): " + ", ".join(parts)


def _seasons(season: int | list[int]) -> str:
    """data.season in words: ``s = 12``, or ``s = 24 (and 168)`` with longer seasons."""
    if isinstance(season, int):
        return f"s = {season}"
    return f"s = {season[0]} (and {', '.join(map(str, season[1:]))})"


def _how_it_trained(m: Metrics) -> list[str]:
    """The summary's lines on training: the best epoch, time, device, batch; the refit."""
    stop = " (early stop)" if m.stopped_early else ""
    if m.stopped_early and m.patience:
        stop = f" (early stop: {plural(m.patience, 'epoch')} without a better validation loss)"
    batch = f", batches of {m.batch_size}" if m.batch_size else ""
    threads = f" ({m.threads} thread{'s' if m.threads > 1 else ''}: {m.threads_reason})" if m.threads else ""
    lines = [
        f"best epoch {m.best_epoch} of {m.epochs_run}{stop}, {m.train_seconds:.1f} s on {m.device}{threads}{batch} "
        f"({plural(m.windows['train'], 'training window')})"
    ]
    if m.refit_epochs:
        lines.append(
            f"refit: a fresh model trained {plural(m.refit_epochs, 'epoch')} on the training and validation windows "
            "is the saved model, scored on test; validation is the early-stopped model's"
        )
    return lines


def combination_line(c: CombinationChoice | None) -> str | None:
    """Whether the forecast is the LSTM's averaged with Theta's, and why, in words that follow
    "forecast:" (None when it was not considered)."""
    if c is None:
        return None
    change = ""
    if c.network_mae and c.combined_mae is not None:
        pct = 100 * (c.combined_mae / c.network_mae - 1)
        change = (
            f"the average's validation MAE, in standardised units over {plural(c.windows, 'window')}, is "
            f"{abs(pct):.1f}% {'below' if pct < 0 else 'above'} the LSTM's alone"
        )
    if not c.used:
        return f"the LSTM's alone, not averaged with the Theta method's ({change}; model.combine: auto)"
    why = f"model.combine: theta{'; ' + change if change else ''}" if c.chosen_by == "config" else change
    return (
        f"the LSTM's averaged with the Theta method's, fitted to each window's recent history ({why}; "
        "model.combine: none turns it off)"
    )


def _notes(m: Metrics) -> list[str]:
    """The summary's lines after the test tables: the means over series, the combination with
    Theta, the timestamps filled and the series padded."""
    combination = combination_line(m.combination)
    lines = [series_means_line(m.test) if m.test is not None else None, combination and f"forecast: {combination}"]
    if m.filled_timestamps:
        lines.append(f"{m.filled_timestamps} missing timestamp(s) were inserted and filled, as data.missing says")
    if m.padded_series:
        none = (
            f", {m.series_without_training_windows} of them with no training window at all"
            if m.series_without_training_windows
            else ""
        )
        lines.append(
            f"{m.padded_series} series were too short for a full lookback: their windows were padded with their first row{none}"
        )
    return [line for line in lines if line]


def train_summary(summary: TrainSummary) -> None:
    m = summary.metrics
    if m is None:
        return
    for line in _how_it_trained(m):
        out.print(line)
    if m.test is not None:
        out.print(metrics_table(m.test, f"Test split: {plural(m.windows['test'], 'window')}, original units"))
        if m.test.per_series:
            out.print(series_table(m.test.per_series))
    for line in _notes(m):
        out.print(line)
    if m.quantiles:
        out.print(quantiles_table(m.quantiles))
    if m.intervals and m.calibration:
        from lstmcli.intervals import windows_needed

        cal = m.calibration["model"]
        series = len(m.test.per_series or {}) if m.test is not None else 0
        out.print(summary_intervals_table(m.intervals, cal, series or 1))
        short = [lv for lv in m.intervals if not cal.guaranteed(int(lv))]
        if short:
            out.print(
                f"* {cal.windows} validation windows are too few to promise {', '.join(s + '%' for s in short)} "
                f"({short[-1]}% needs {windows_needed(int(short[-1]) / 100)}): the radius is the largest "
                "validation error, which promises "
                f"{math.floor(1000 * cal.windows / (cal.windows + 1)) / 10:g}%"  # rounded down: 18 promise 94.7%
            )
    out.print(f"run saved to {summary.run_dir}")
    for warning in summary.warnings:
        error_line(warning, "[bold yellow]warning:[/]")


# ---------------------------------------------------------------------------------------------
# lstm inspect


def _head_input(f: InspectFacts) -> str:
    """What the head reads: the last y_t, and with known-future columns their H values."""
    ahead = f.head.input[0] - f.m
    if not ahead:
        return f"y_t ({f.m})"
    return f"[y_t ({f.m}), known-future values ({f.horizon} steps × {ahead // f.horizon})]"


def inspect_facts(f: InspectFacts) -> None:
    """The textbook view, layer by layer, then the head, the totals, the units, the run's metrics."""
    n, m = f.n, f.m
    if f.run is not None:
        _run(f.run)
    sizes = " → ".join([f"x_t ({n})", *[f"layer {lay.layer} y_t ({m})" for lay in f.layers]])
    out.print(
        f"[bold]Stacked LSTM[/]: n = {n} inputs per step, m = {m} units per layer, {f.num_layers} layer(s), "
        f"head → {f.horizon} steps × {f.targets} target(s)"
        + (f" × {len(f.quantiles)} quantiles ({', '.join(f'{q:g}' for q in f.quantiles)})" if f.quantiles else ""),
        markup=True,
    )
    out.print(f"{sizes} → head ({f.head.output[0]})\n")
    if f.members > 1:
        out.print(
            f"An ensemble of {f.members} members (train.ensemble), each with these shapes and its own weights; "
            "the forecast is their mean. The first member's gates are shown.\n"
        )
    for lay in f.layers:
        _layer(lay, m)
    h = f.head
    out.print(
        f"Head: Linear {_head_input(f)} → {h.output[0]} = horizon × targets{' × quantiles' if f.quantiles else ''}; weight {h.weight[0]}×{h.weight[1]} "
        f"+ bias {h.bias[0]} = {h.parameters:,} parameters"
    )
    out.print(
        f"[bold]Total parameters: {f.total_parameters:,}[/] (sum of the model's tensors"
        + (f", {f.members} members" if f.members > 1 else "")
        + f"; textbook count {f.textbook_parameters:,} without the duplicate biases)",
        markup=True,
    )
    if f.units is not None and f.trace is None:  # with --trace, --units shows the most and least active units
        _units(f)
    if f.metrics is not None:
        mt = f.metrics
        if mt.test is None:
            out.print("Test split: not scored (a tuning trial, judged on validation only)")
        else:
            out.print(
                metrics_table(
                    mt.test, f"Test metrics of this run ({plural(mt.windows['test'], 'window')}, original units)"
                )
            )
            if mt.test.per_series:
                out.print(series_table(mt.test.per_series))
            means = series_means_line(mt.test)
            if means:
                out.print(means)
        v = mt.val.model
        out.print(
            f"validation ({plural(mt.windows['val'], 'window')}): MAE {_fmt(v.MAE)}, RMSE {_fmt(v.RMSE)}, "
            f"sMAPE {_pct(v.sMAPE)}, MASE {_ratio(v.MASE)}, relMAE {_ratio(v.relMAE)}"
        )
    if f.check is not None:
        c = f.check
        if c.same_function:
            out.print(
                "check: textbook gate equations vs fused nn.LSTM (float64, random input): "
                f"max |difference| = {c.max_abs_diff:.3e} ≤ {c.tolerance:g} → [green]same function[/]",
                markup=True,
            )
        else:
            out.print(
                f"check: max |difference| = {c.max_abs_diff:.3e} > {c.tolerance:g} → [red]MISMATCH[/]", markup=True
            )

    if f.trace is not None:
        trace_facts(f.trace, units=f.units is not None)


def _span(span: float | None) -> str:
    from lstmcli.model.gate_trace import SPAN_CAP

    return f"> {SPAN_CAP:.0e}".replace("e+0", "e") if span is None else f"{span:.3g}"


def trace_facts(t: TraceFacts, units: bool = False) -> None:
    """What the gates did on the traced window(s): the check, then per layer the gate table, the
    forget gates' memory, the cell-state norm, the dead units (and with ``units`` the extremes)."""
    w, c = t.window, t.check
    where = f"{w.data}" + (f", series {w.series}" if w.series is not None else "")
    which = "; the last, which the next forecast reads" if w.index == w.count - 1 else ""
    dates = f", {w.first_date} … {w.last_date}" if w.first_date else ""
    more = f"; summaries over {plural(w.traced, 'window')} ending with it" if w.traced > 1 else ""
    out.print(
        f"\n[bold]Trace[/] on {escape(where)}: window {w.index} (windows 0…{w.count - 1}{which}), "
        f"rows {w.first_row}–{w.last_row}{dates} (L = {w.steps} steps){more}",
        markup=True,
    )
    verdict = "[green]same function[/]" if c.same_function else "[red]MISMATCH: not the same function[/]"
    out.print(
        "check: textbook gate equations (float64) vs fused nn.LSTM (float32) on this input: max |Δy_t| = "
        f"{c.step_max_abs_diff:.2e} per step, {c.max_abs_diff:.2e} over the window; tolerance {c.tolerance:g} → {verdict}",
        markup=True,
    )
    if c.same_function and not c.window_agrees:
        out.print(
            "[red]the window drifts[/]: the equations match step by step, but over the window the fused float32 run "
            f"differs from the float64 trace by {c.max_abs_diff:.2e}: this recurrence amplifies rounding, so the "
            "trace is not the trajectory predict computes",
            markup=True,
        )
    for lay in t.layers:
        _trace_layer(lay, t, w.traced * w.steps)
        if units:
            _extreme_units(lay)


def _trace_layer(lay: LayerActivity, t: TraceFacts, steps: int) -> None:
    from lstmcli.model.gate_trace import DEAD_RANGE, SATURATION
    from lstmcli.model.gates import ACTIVATION, GATE_NAMES

    m = len(lay.units)
    table = Table(title=f"Layer {lay.layer}: gate activations over {steps:,} steps × {m} units", title_justify="left")
    for col in ("gate", "sub-layer", "act", "mean", "low", "high", "saturated"):
        table.add_column(col, justify="left" if col in ("gate", "sub-layer", "act") else "right")
    for gate, a in lay.gates.items():
        table.add_row(
            gate,
            GATE_NAMES[gate],
            ACTIVATION[gate],
            f"{a.mean:+.3f}" if gate == "g" else f"{a.mean:.3f}",
            f"{a.low:.1%}",
            f"{a.high:.1%}",
            f"{a.saturated:.1%}",
        )
    out.print(table)
    lo, hi = 1 - SATURATION, SATURATION
    out.print(f"  low/high: σ < {lo:.2f} / > {hi:.2f}, tanh < −{hi:.2f} / > {hi:.2f} (saturated: either)")
    spans = [u.memory_span for u in lay.units]
    finite = sorted(s for s in spans if s is not None)
    capped = len(spans) - len(finite)
    ordered = finite + [float("inf")] * capped
    median = (
        ordered[len(ordered) // 2]
        if len(ordered) % 2
        else (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
    )
    longest = max(lay.units, key=lambda u: float("inf") if u.memory_span is None else u.memory_span)
    beyond_L = sum(s is None or s > t.lookback for s in spans)
    season = (
        f", {sum(s is None or s > t.season for s in spans)} beyond the season s = {t.season}" if t.season > 1 else ""
    )
    out.print(
        f"  forget-gate memory −1/ln(mean f) per unit: median {_span(None if median == float('inf') else median)} steps, "
        f"longest {_span(longest.memory_span)} (unit {longest.unit}); {beyond_L} of {m} units beyond L = {t.lookback}{season}"
    )
    norm = lay.cell_norm
    peak = max(range(len(norm)), key=lambda j: norm[j])
    mid = len(norm) // 2
    c_unit = max(lay.units, key=lambda u: u.c_max)
    out.print(
        f"  cell state ‖c_t‖: {norm[0]:.3g} at step 1, {norm[mid]:.3g} at step {mid + 1}, {norm[-1]:.3g} at step {len(norm)} "
        f"(peak {norm[peak]:.3g} at step {peak + 1}); largest |c_t| {c_unit.c_max:.3g} (unit {c_unit.unit})"
    )
    dead = ", ".join(map(str, lay.dead_units)) if lay.dead_units else "none"
    out.print(f"  dead units (y_t moves less than {DEAD_RANGE:g} over every traced step): {dead}\n")


def _extreme_units(lay: LayerActivity) -> None:
    by_unit = {u.unit: u for u in lay.units}
    for title, numbers in (("most", lay.most_active), ("least", lay.least_active)):
        table = Table(
            title=f"Layer {lay.layer}: the {plural(len(numbers), title + ' active unit')} (by the std of y_t), each with its four gate rows",
            title_justify="left",
        )
        for col in ("unit", "y_t std", "memory", "gate", "mean", "saturated", "|W row|", "b"):
            table.add_column(col, justify="left" if col == "gate" else "right")
        for number in numbers:
            _unit_rows(table, by_unit[number])
        out.print(table)


def _unit_rows(table: Table, u: UnitActivity) -> None:
    for j, gate in enumerate(("f", "i", "g", "o")):
        head = [str(u.unit), f"{u.y_std:.3g}", _span(u.memory_span)] if j == 0 else ["", "", ""]
        table.add_row(
            *head,
            gate,
            f"{u.mean[gate]:+.3f}" if gate == "g" else f"{u.mean[gate]:.3f}",
            f"{u.saturated[gate]:.0%}",
            f"{u.w_norm[gate]:.3f}",
            f"{u.b[gate]:+.3f}",
            end_section=j == 3,
        )


def _layer(lay: LayerFacts, m: int) -> None:
    from lstmcli.model.gates import TORCH_ORDER

    k, n_l = lay.layer, lay.input_size
    out.print(
        f"[bold]Layer {k}[/]: input n_{k} = {n_l}, "
        + escape(f"[x_t, y_(t-1)] = {n_l} + {m} = {lay.concat_size}")
        + f", state c_t = {m}, output y_t = {m}",
        soft_wrap=True,
        markup=True,
    )
    t = Table()
    for col in ("gate", "sub-layer", "act", "W", "b", "rows in weight_ih / weight_hh / biases"):
        t.add_column(col)
    trained = any(g.stats is not None for g in lay.gates.values())
    if trained:
        for col in ("|W_x|", "|W_y|", "b mean [min, max]"):
            t.add_column(col, justify="right")
    for gate, g in lay.gates.items():
        lo, hi = g.torch_rows
        row = [gate, g.name, g.activation, f"{g.W[0]}×{g.W[1]}", f"{g.b[0]}", f"{lo}:{hi}"]
        if g.stats is not None:
            s = g.stats
            row += [
                f"{s.W_input_norm:.3f}",
                f"{s.W_recurrent_norm:.3f}",
                f"{s.b_mean:+.3f} [{s.b_min:+.2f}, {s.b_max:+.2f}]",
            ]
        t.add_row(*row)
    out.print(t)
    if lay.forget_bias is not None:
        fb = lay.forget_bias
        out.print(
            f"  [bold]learned forget-gate bias b_f[/]: mean {fb.mean:+.3f}, range [{fb.min:+.3f}, {fb.max:+.3f}] "
            f"(untrained: within ±2/√m = ±{fb.init_bound:.3f}); with zero input the forget gate keeps "
            f"σ(mean b_f) = {fb.sigmoid_of_mean:.3f} of c_(t-1)",
            markup=True,
        )
    tensors = ", ".join(f"{x.name} {'×'.join(map(str, x.shape))}" for x in lay.torch_tensors)
    out.print(f"  PyTorch packs rows in order {', '.join(TORCH_ORDER)}: {tensors}")
    out.print(
        f"  parameters: textbook 4·m·(n_l+m) + 4·m = {lay.parameters_textbook:,}; "
        f"PyTorch 4·m·(n_l+m) + 8·m = {lay.parameters_torch:,} "
        f"(+{lay.parameters_torch - lay.parameters_textbook:,}: two bias vectors b_ih + b_hh whose sum is the textbook b)\n"
    )


def _features(r: RunSummary) -> str:
    """The inputs besides the target, in words (empty for none)."""
    feats = f"; features {', '.join(r.features)}" if r.features else ""
    if r.static_features:
        feats += f"; static features {', '.join(r.static_features)}"
    for name, values in r.static_categories.items():
        feats += f"; static category {name} ({len(values)} one-hot inputs: {', '.join(values)})"
    if r.future_features:
        feats += f"; known-future features {', '.join(r.future_features)}"
    if r.calendar:
        feats += f"; calendar {', '.join(r.calendar)} (sin/cos from the dates)"
    if r.holidays:
        feats += f"; {r.holidays} public holidays"
    if r.lags:
        feats += f"; lags {', '.join(map(str, r.lags))} (the targets that many steps back, known ahead)"
    return feats


def _run(r: RunSummary) -> None:
    dates = f", {r.first_date} … {r.last_date} ({r.frequency})" if r.first_date else ""
    feats = _features(r)
    out.print(f"[bold]Run[/] {escape(r.path)}: trained on {escape(r.data)} ({r.rows} rows{dates})", markup=True)
    if r.series:
        out.print(f"  {_series_line(r)}")
    out.print(f"  target {', '.join(r.target)}{feats}; L = {r.lookback}, H = {r.horizon}, {_seasons(r.season)}")
    out.print(f"  {_base(r)}")
    combination = combination_line(r.combination)
    if combination:
        out.print(f"  final forecast: {combination}")
    if r.best_epoch is not None:
        stop = " (early stop)" if r.stopped_early else ""
        batch = f", batches of {r.batch_size}" if r.batch_size else ""
        scaled = ", each window divided by its mean absolute step" if r.window_scale else ""
        loss = r.loss
        if r.quantiles:
            loss = f"quantile (pinball, averaged over {', '.join(f'{q:g}' for q in r.quantiles)}; the point is 0.5)"
        out.print(
            f"  loss {loss}{scaled}{batch}; best epoch {r.best_epoch} of {r.epochs_run}{stop}, "
            f"best val loss {r.best_val_loss:.4g}, {r.train_seconds:.1f} s on {r.device} ({r.precision})"
        )
        if r.refit_epochs:
            out.print(
                f"  refit {plural(r.refit_epochs, 'epoch')} on the training and validation windows (the saved model)"
            )
        if r.interval_levels:
            out.print(
                f"  prediction intervals: {_conformal(r.interval_bands)} on {r.calibration_windows} validation windows, "
                f"predict --level {r.interval_levels[0]}…{r.interval_levels[-1]}"
            )
        out.print()


BASES = {
    "last": "each window's last value",
    "mean": "each window's mean",
    "season": "each window's seasonal naive forecast (the value one season before)",
}


def _base(r: RunSummary) -> str:
    """What the network's output corrects (model.normalize, model.drift)."""
    if r.normalize not in BASES:
        return "forecast: the network's output alone, in the scaled units (normalize: none)"
    base = BASES[r.normalize]
    if r.normalize == "season" and not r.seasonal_base:  # the model falls back to the last value
        base = f"{BASES['last']} (normalize: season, but s = {r.season} does not fit L = {r.lookback})"
    trend = ", continued by the window's trend (drift)" if r.drift else ""
    return f"forecast: {base}{trend}, plus the network's correction"


SERIES_SHOWN = 5  # a multi-series run's summary names this many series, then counts the rest


def _series_line(r: RunSummary) -> str:
    """``3 series in column id, 192 rows each, 1969-01-01 … 1984-12-01: drivers, front, rear``."""
    lengths = sorted({s.rows for s in r.series})
    rows = f"{lengths[0]} rows each" if len(lengths) == 1 else f"{lengths[0]} to {lengths[-1]} rows"
    firsts = [s.first_date for s in r.series if s.first_date]
    lasts = [s.last_date for s in r.series if s.last_date]
    dates = f", {min(firsts)} … {max(lasts)}" if firsts and lasts else ""  # ISO strings sort as dates
    names = ", ".join(s.id for s in r.series[:SERIES_SHOWN])
    more = f" and {len(r.series) - SERIES_SHOWN} more" if len(r.series) > SERIES_SHOWN else ""
    return f"{len(r.series)} series in column {r.series_column}, {rows}{dates}: {names}{more}"


def _units(f: InspectFacts) -> None:
    assert f.units is not None
    for layer, units in f.units.items():
        n_l = f.layers[int(layer) - 1].input_size
        t = Table(
            title=f"Layer {layer} units: unit k owns row k of W_f, W_i, W_g, W_o (4·(n_l+m) = 4·({n_l}+{f.m}) weights) and 4 biases",
            title_justify="left",
        )
        for col in ("unit", "weights", "biases", "torch row f / i / g / o", "b_f", "b_i", "b_g", "b_o"):
            t.add_column(col, justify="right")
        for u in units:
            rows = " / ".join(str(u.torch_rows[g]) for g in ("f", "i", "g", "o"))
            t.add_row(
                str(u.unit), str(u.weights), str(u.biases), rows, *(f"{u.b[g]:+.3f}" for g in ("f", "i", "g", "o"))
            )
        out.print(t)


# ---------------------------------------------------------------------------------------------
# lstm predict


def prediction(result: Results, backtest: bool) -> None:
    for item in result.items:
        if item.series is not None:
            out.print(f"[bold]series {escape(item.series)}[/]", markup=True)
        if backtest:
            _backtest(item)  # type: ignore[arg-type]
        else:
            _forecast(item)  # type: ignore[arg-type]
    if result.intervals is not None:
        out.print(intervals_table(result.intervals, f"Prediction intervals pooled over {len(result.items)} series"))
    if result.metrics is not None:
        out.print(metrics_table(result.metrics, f"Pooled over {len(result.items)} series, original units"))
        means = series_means_line(result.metrics)
        if means:
            out.print(means)


def _backtest(bt: Backtest) -> None:
    first, last = bt.origin_labels()
    out.print(
        f"Backtest of {bt.run} on {bt.data}: {plural(bt.origins.size, 'window')}, origins {first} … {last}\n"
        f"origins: {bt.split_source}",
        soft_wrap=True,
    )
    out.print(metrics_table(bt.metrics, f"H = {bt.horizon} steps from each origin, original units"))
    for name, per in (bt.metrics.per_target or {}).items():
        out.print(metrics_table(per, f"target {name}"))
    if bt.intervals:
        out.print(
            intervals_table(
                bt.intervals, f"Prediction intervals from each origin ({plural(bt.origins.size, 'window')})"
            )
        )


def _forecast(fc: Forecast) -> None:
    steps = int(fc.values.shape[0])
    how = f" (recursive: {steps} > H = {fc.horizon}, forecasts fed back in)" if fc.recursive else ""
    last = fc.last_label()
    after = f"after {last}" if last else f"after row {fc.history.shape[0]}"
    out.print(f"Forecast from {fc.run} on {fc.data}: {steps} steps {after}{how}", soft_wrap=True)
    t = Table()
    t.add_column(fc.date_column or "step")
    for name in fc.targets:
        t.add_column(name, justify="right")
    extra = fc.columns()
    for name, _ in extra:
        t.add_column(name, justify="right")
    # Every column has one number of decimals, so values line up on the point.
    cols = [column([float(v) for v in fc.values[:, j]], 6) for j in range(len(fc.targets))]
    cols += [column([float(v) for v in c], 6) for _, c in extra]
    for i, label in enumerate(fc.index_labels()):
        t.add_row(label, *(c[i] for c in cols))
    out.print(t)
    if fc.quantiles:
        out.print(
            "q…: the model's own forecast quantiles (pinball loss; the forecast is its median, q50), not calibrated",
            soft_wrap=True,
        )
    if fc.intervals:
        how = "conformalized quantile bands" if fc.quantiles else "split conformal"
        out.print(
            f"intervals: {how} on the run's validation windows (its test coverage is in metrics.json)", soft_wrap=True
        )


# ---------------------------------------------------------------------------------------------
# lstm export


def export_report(r: ExportReport) -> None:
    p = r.parity
    out.print(f"wrote {r.path} ({r.size / 1e3:,.0f} kB, ONNX, {r.seconds:.1f} s)")
    out.print("  inputs: " + "; ".join(f"{name} ({shape})" for name, shape in r.inputs))
    out.print(f"  outputs: {', '.join(r.outputs)} (original units)")
    out.print(
        f"check: onnxruntime vs lstm predict on {plural(p.windows, 'window')} of {r.data}: max |difference| = "
        f"{p.max_abs_diff:.3g}, {p.max_rel_diff:.3g} × the tolerance ({p.tolerance:g} of each series' scale) "
        "→ [green]same forecasts[/]",
        markup=True,
    )


# ---------------------------------------------------------------------------------------------
# lstm init


def starter(st: Starter) -> None:
    from lstmcli.data.dates import FREQUENCY_NAMES

    freq = f", frequency {FREQUENCY_NAMES.get(st.frequency, st.frequency)}" if st.frequency else ""
    date = f"date column {st.date_column}" if st.date_column else "no date column"
    out.print(f"{st.csv}: {st.rows} rows, {date}{freq}; numeric columns: {', '.join(st.numeric)}")
    for reason in st.reasons:
        out.print(f"  • {reason}")
    out.print(f"wrote {st.out}; next: lstm train {st.out}")


# ---------------------------------------------------------------------------------------------
# lstm tune


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each key by its last part (``model.m`` -> ``m``), or whole where two would read alike."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def _value(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def trial_params(params: Mapping[str, object], names: dict[str, str]) -> str:
    return " ".join(f"{names.get(k, k)}={_value(v)}" for k, v in params.items())


def trial_line(row: TrialRow, best: float | None, names: dict[str, str]) -> str:
    """One stderr line per finished trial."""
    params = trial_params(row.params, names)
    took = f", {row.seconds:.1f} s" if row.seconds is not None else ""
    if row.state == "complete" and row.val_mae is not None:
        best_text = " (best)" if best is not None and row.val_mae <= best else f" (best {_fmt(best)})"
        return f"trial {row.number}: {params}: val MAE {_fmt(row.val_mae)}{best_text}, {row.epochs} epochs{took}"
    if row.state == "pruned":
        return f"trial {row.number}: {params}: pruned at epoch {row.epochs}{took}"
    return f"trial {row.number}: {params}: {row.state}{': ' + row.note if row.note else ''}"


def tune_summary(s: TuneSummary) -> None:
    """The trials table (fits 80 columns), the best trial with its test MAE, the files written."""
    names = short_keys(list(s.space))
    table = Table(title=f"{plural(len(s.rows), 'trial')} in {s.out}", title_justify="left")
    table.add_column("trial", justify="right")
    table.add_column("state")
    table.add_column("parameters", overflow="fold", max_width=36)
    table.add_column("val MAE", justify="right")
    table.add_column("epochs", justify="right")
    table.add_column("time", justify="right")
    maes = column([r.val_mae for r in s.rows])
    for r, mae in zip(s.rows, maes, strict=True):
        star = "*" if s.best is not None and r.number == s.best.number else ""
        table.add_row(
            f"{r.number}{star}",
            r.state,
            trial_params(r.params, names),
            "" if r.val_mae is None else mae,
            "" if r.epochs is None else str(r.epochs),
            "" if r.seconds is None else f"{r.seconds:.1f} s",
        )
    out.print(table)
    out.print("* the best trial (lowest validation MAE, original units)")
    if s.best is None:
        out.print("no trial has completed yet, so there is no best trial")
        return
    m = s.best_metrics
    test = m.test.model.MAE if m is not None and m.test is not None else None
    out.print(
        f"best: trial {s.best.number} ({trial_params(s.best.params, names)}), validation MAE {_fmt(s.best.val_mae)}, "
        f"test MAE {_fmt(test)} (the test split is read for the best trial only)"
    )
    if s.importances:
        shown = ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in s.importances.items())
        out.print(f"importance: {shown} ({s.importance_note})")
    elif s.importance_note:
        out.print(f"no importances: {s.importance_note}")
    out.print(f"written: {s.out}/best/, best.yaml, trials.csv, tune.png; this run finished {plural(s.ran, 'trial')}")
