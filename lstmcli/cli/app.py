"""The ``lstm`` command: parse, call one library function, render with rich, map errors to exit codes.

Torch and the library are imported inside the commands, so ``lstm --help`` answers at once.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from lstmcli.errors import Interrupted, LstmcliError, PeerLost

if TYPE_CHECKING:
    from lstmcli.config import Config
    from lstmcli.training.trainer import EpochReport


# Markup off by default: paths, column names and series ids are printed as they are, whatever
# brackets they hold; the few styled lines opt in with markup=True and escape what they show.
out = Console(markup=False, highlight=False)
err = Console(stderr=True, markup=False, highlight=False)


@contextlib.contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    # Typer draws a usage panel for a bad flag or argument; we print one `error:` line instead,
    # like every other bad input, and keep exit code 2.
    try:
        yield
    except Exception as exc:
        if getattr(exc, "exit_code", None) != 2 or not hasattr(exc, "format_message"):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `lstm`: help, not an error
            raise
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        err.print(f"[bold red]error:[/] {escape(exc.format_message() + hint)}", markup=True, soft_wrap=True)
        raise typer.Exit(2) from None


ARGV_KEY = "lstmcli.argv"


class _Group(TyperGroup):
    def make_context(self, info_name: str | None, args: list[str], *rest: Any, **kwargs: Any) -> Any:
        with _one_line_usage_errors():
            ctx = super().make_context(info_name, list(args), *rest, **kwargs)
        ctx.meta[ARGV_KEY] = list(args)  # the command line as given, for the --nproc ranks
        return ctx

    def invoke(self, ctx: Any) -> Any:
        with _one_line_usage_errors():
            return super().invoke(ctx)


app = typer.Typer(
    name="lstm",
    cls=_Group,
    help="Train stacked LSTMs on CSV time series, evaluate them against naive baselines, "
    "forecast from saved runs, and inspect them gate by gate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
F = TypeVar("F", bound=Callable[..., Any])

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY.PATH=VALUE", help="Override a config value (VALUE is YAML); repeatable."),
]


def handle_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Interrupted as exc:
            if os.environ.get("RANK", "0") in ("", "0"):  # under torchrun, rank 0 speaks for the job
                err.print(f"[bold yellow]interrupted:[/] {escape(str(exc))}", markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except LstmcliError as exc:
            if not (isinstance(exc, PeerLost) and os.environ.get("LSTMCLI_LAUNCHED")):  # the launcher names the rank
                _error_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted", highlight=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a failure the library did not name: still one line, never a traceback
            if os.environ.get("LSTMCLI_DEBUG") or hasattr(exc, "format_message"):
                raise  # a usage error (typer.BadParameter) is rendered by _one_line_usage_errors
            known = _unexpected(exc)
            _error_line(str(known))
            raise typer.Exit(known.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _error_line(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)


def _unexpected(exc: Exception) -> LstmcliError:
    """A one-line error for an exception no library code translated (exit 1: a runtime failure)."""
    from lstmcli.errors import InternalError, ResourceError
    from lstmcli.fsutil import os_error

    if isinstance(exc, OSError):
        return os_error(exc.filename or "lstm", exc, "read or write it")
    first = (str(exc).splitlines() or [""])[0][:200]
    if isinstance(exc, MemoryError) or "out of memory" in first.lower() or "can't allocate memory" in first.lower():
        return ResourceError(f"ran out of memory ({first or type(exc).__name__})")
    return InternalError(
        f"internal error ({type(exc).__name__}: {first}); this is a bug in lstm, please report it "
        "(LSTMCLI_DEBUG=1 shows the traceback)"
    )


def _load(config: Path, overrides: list[str] | None) -> Config:
    from lstmcli.config import load_config

    return load_config(config, overrides or [])


# ---------------------------------------------------------------------------------------------
# lstm config


@app.command("config")
@handle_errors
def config_cmd(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    set_: SetOption = None,
) -> None:
    """Validate a config and print it resolved: defaults filled in, overrides applied."""
    cfg = _load(config, set_)
    print(cfg.to_yaml(), end="")


# ---------------------------------------------------------------------------------------------
# lstm train


@app.command()
@handle_errors
def train(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    set_: SetOption = None,
    overwrite: Annotated[
        bool,
        typer.Option(help="Replace the run already in the run directory; it stays as it is until the new one has finished."),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the unfinished run in the config's run directory from its last epoch checkpoint "
            "(or start it if no epoch was saved); the config must be the one the run started with."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config first.")] = False,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Train data-parallel in this many processes on this machine, started as torchrun would "
            "(DDP: gloo on CPU, nccl on GPU, one GPU per process; device auto with fewer GPUs than "
            "processes trains on the CPU). train.batch_size stays the global batch.",
        ),
    ] = 1,
) -> None:
    """Train a stacked LSTM on the config's CSV, evaluate it on the test split, save a run directory.

    Every epoch is checkpointed; after Ctrl-C, SIGTERM or a crash, continue with --resume (or lstm resume RUN).
    """
    from lstmcli.training.device import stable_malloc
    from lstmcli.training.distributed import from_env, launch

    if resume and overwrite:
        raise typer.BadParameter("--resume continues a run and --overwrite replaces it; pass one", param_hint="--resume")
    dist = from_env()
    cfg = _load(config, set_)  # a bad config fails here, once, before any process starts
    if nproc > 1 and not dist.enabled:
        from lstmcli.training.device import resolve_device

        resolve_device(cfg.train.device, nproc)  # too few GPUs, say: once, here, not once per process
        from lstmcli.config import default_run_dir

        hint = f"lstm resume {default_run_dir(config, cfg)}"
        raise typer.Exit(launch(nproc, _without_nproc(ctx.meta[ARGV_KEY]), hint))
    stable_malloc()
    if print_config and dist.is_main:
        err.print(cfg.to_yaml(), end="", highlight=False)
    from lstmcli.commands.train import train_run
    from lstmcli.config import default_run_dir

    progress = _Progress(quiet or not dist.is_main)
    with progress:
        summary = train_run(
            cfg,
            default_run_dir(config, cfg),
            overwrite=overwrite,
            resume=resume,
            on_start=progress.start,
            on_epoch_end=progress.update,
            on_resume=progress.resumed,
            dist=dist,
        )
    if dist.is_main:
        _print_summary(summary)


@app.command()
@handle_errors
def resume(
    run: Annotated[Path, typer.Argument(help="Run directory of an unfinished `lstm train`.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Continue an interrupted run from its last epoch checkpoint, with the run's own config.yaml.

    On the CPU (same machine, same thread count) the result is bit-identical to a run that was never interrupted.
    """
    from lstmcli.training.device import stable_malloc

    stable_malloc()
    from lstmcli.commands.train import resume_run

    progress = _Progress(quiet)
    with progress:
        summary = resume_run(run, on_start=progress.start, on_epoch_end=progress.update, on_resume=progress.resumed)
    _print_summary(summary)


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line with ``--nproc K`` (or ``--nproc=K``) taken out: every other option reaches
    the ranks exactly as the user gave it."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _print_summary(summary: Any) -> None:
    m = summary.metrics
    out.print(
        f"best epoch {m['best_epoch']} of {m['epochs_run']}"
        f"{' (early stop)' if m['stopped_early'] else ''}, {m['train_seconds']:.1f} s on {m['device']}",
        highlight=False,
    )
    out.print(metrics_table(m["test"], f"Test split: {m['windows']['test']} windows, original units"))
    if "per_series" in m["test"]:
        out.print(series_table(m["test"]["per_series"]))
    out.print(f"run saved to {summary.run_dir}", highlight=False)


class _Progress:
    """A rich bar on a terminal, one plain line per epoch otherwise, nothing with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live = not quiet and err.is_terminal
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def resumed(self, epoch: int) -> None:
        if not self.quiet:
            err.print(f"resuming from the checkpoint of epoch {epoch}", highlight=False)

    def start(self, ds: Any) -> None:
        counts = ds.counts()
        if not self.quiet:
            many = f" in {len(ds.series)} series" if len(ds.series) > 1 else ""
            err.print(
                f"{ds.table.path}: {ds.table.n_rows} rows{many}; windows train {counts['train']}, "
                f"val {counts['val']}, test {counts['test']}",
                highlight=False,
            )
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("epoch"),
                MofNCompleteColumn(),
                BarColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=err,
                transient=False,
            )
            self.bar.start()
            self.task = None

    def update(self, r: EpochReport) -> None:
        stats = (
            f"train {r.train_loss:.4f}  val {r.val_loss:.4f}  best {r.best_val:.4f}@{r.best_epoch}  "
            f"lr {r.lr:.2g}  {r.windows_per_s:,.0f} win/s"
        )
        if self.bar is not None:
            if self.task is None:
                self.task = self.bar.add_task("train", total=r.epochs, stats=stats)
            self.bar.update(self.task, completed=r.epoch, stats=stats)
        elif not self.quiet:
            mark = " *" if r.improved else ""
            err.print(f"epoch {r.epoch}/{r.epochs}  {stats}  {r.seconds:.2f}s{mark}", highlight=False, soft_wrap=True)


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    """Model and baselines side by side; MASE < 1 beats seasonal naive."""
    table = Table(title=title, title_justify="left")
    table.add_column("forecast")
    for name in ("MAE", "RMSE", "sMAPE", "MASE"):
        table.add_column(name, justify="right")
    for key, label in (("model", "LSTM"), ("naive", "naive"), ("seasonal_naive", "seasonal naive")):
        row = metrics[key]
        cells = [_fmt(row["MAE"]), _fmt(row["RMSE"]), f"{row['sMAPE']:.2f}%", _fmt(row["MASE"], 3)]
        table.add_row(Text(label, style="bold") if key == "model" else label, *cells)
    return table


def series_table(per_series: dict[str, Any]) -> Table:
    """Test MAE of the model and baselines, and MASE, for every series."""
    table = Table(title="Test split per series, original units", title_justify="left")
    for col in ("series", "LSTM MAE", "naive MAE", "seasonal naive MAE", "MASE"):
        table.add_column(col, justify="left" if col == "series" else "right")
    for sid, m in per_series.items():
        table.add_row(
            str(sid),
            _fmt(m["model"]["MAE"]),
            _fmt(m["naive"]["MAE"]),
            _fmt(m["seasonal_naive"]["MAE"]),
            _fmt(m["model"]["MASE"], 3),
        )
    return table


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


# ---------------------------------------------------------------------------------------------
# lstm inspect


@app.command()
@handle_errors
def inspect(
    target: Annotated[Path, typer.Argument(help="A YAML config, or a run directory made by `lstm train`.")],
    set_: SetOption = None,
    check: Annotated[
        bool, typer.Option("--check", help="Prove the textbook gate equations equal nn.LSTM (float64); exit 1 if > 1e-10.")
    ] = False,
    units: Annotated[bool, typer.Option("--units", help="Show the per-unit view: unit k owns row k of each gate.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the facts as JSON for scripts.")] = False,
) -> None:
    """Show a stacked LSTM the way the textbook draws it: four gate sub-layers per layer."""
    from lstmcli.fsutil import json_text
    from lstmcli.model import gates as shapes

    model, run = _inspect_model(target, set_)
    facts = shapes.describe(model, stats=run is not None)
    if check:
        facts["check"] = {"max_abs_diff": shapes.check_equivalence(model.lstm), "tolerance": 1e-10}
    if units:
        facts["units"] = {str(layer): shapes.unit_view(model, layer) for layer in range(1, model.layers + 1)}
    if run is not None:
        metrics = run.metrics()
        # per_target and per_series are None when absent (their defaults), and left out of the facts
        facts["metrics"] = metrics.model_dump(mode="json", exclude_defaults=True) if metrics is not None else None
        facts["run"] = shapes.run_summary(run.path, run.cfg, run.meta, facts["metrics"])
    if as_json:
        print(json_text(facts), end="")
    else:
        _render_inspect(facts)
    if check and facts["check"]["max_abs_diff"] > 1e-10:
        raise typer.Exit(1)


def _inspect_model(target: Path, overrides: list[str] | None) -> tuple[Any, Any]:
    if target.is_dir():
        if overrides:
            raise typer.BadParameter("--set applies to configs, not to a trained run", param_hint="--set")
        from lstmcli.runs.checkpoints import load_run

        run = load_run(target)
        return run.model, run
    import torch

    from lstmcli.model.forecaster import LSTMForecaster

    cfg = _load(target, overrides)
    torch.manual_seed(cfg.train.seed)
    return LSTMForecaster.from_config(cfg), None


def _render_inspect(f: dict[str, Any]) -> None:
    from lstmcli.model.gates import TORCH_ORDER

    n, m = f["n"], f["m"]
    if "run" in f:
        _render_run(f["run"])
    sizes = " → ".join([f"x_t ({n})", *[f"layer {lay['layer']} y_t ({m})" for lay in f["layers"]]])
    out.print(
        f"[bold]Stacked LSTM[/]: n = {n} inputs per step, m = {m} units per layer, {f['num_layers']} layer(s), "
        f"head → {f['horizon']} steps × {f['targets']} target(s)",
        markup=True,
    )
    out.print(f"{sizes} → head ({f['head']['output'][0]})\n", highlight=False)
    for lay in f["layers"]:
        k, n_l = lay["layer"], lay["input_size"]
        out.print(
            f"[bold]Layer {k}[/]: input n_{k} = {n_l}, " + escape(f"[x_t, y_(t-1)] = {n_l} + {m} = {lay['concat_size']}")
            + f", state c_t = {m}, output y_t = {m}",
            soft_wrap=True,
            markup=True,
        )
        t = Table()
        for col in ("gate", "sub-layer", "act", "W", "b", "rows in weight_ih / weight_hh / biases"):
            t.add_column(col)
        stats = "stats" in next(iter(lay["gates"].values()))
        if stats:
            for col in ("|W_x|", "|W_y|", "b mean [min, max]"):
                t.add_column(col, justify="right")
        for gate, g in lay["gates"].items():
            lo, hi = g["torch_rows"]
            row = [
                gate,
                g["name"],
                g["activation"],
                f"{g['W'][0]}×{g['W'][1]}",
                f"{g['b'][0]}",
                f"{lo}:{hi}",
            ]
            if stats:
                s = g["stats"]
                row += [f"{s['W_input_norm']:.3f}", f"{s['W_recurrent_norm']:.3f}", f"{s['b_mean']:+.3f} [{s['b_min']:+.2f}, {s['b_max']:+.2f}]"]
            t.add_row(*row)
        out.print(t)
        if "forget_bias" in lay:
            fb = lay["forget_bias"]
            out.print(
                f"  [bold]learned forget-gate bias b_f[/]: mean {fb['mean']:+.3f}, range [{fb['min']:+.3f}, {fb['max']:+.3f}] "
                f"(untrained: within ±2/√m = ±{fb['init_bound']:.3f}); with zero input the forget gate keeps "
                f"σ(mean b_f) = {fb['sigmoid_of_mean']:.3f} of c_(t-1)",
                markup=True,
            )
        tensors = ", ".join(f"{x['name']} {'×'.join(map(str, x['shape']))}" for x in lay["torch_tensors"])
        out.print(f"  PyTorch packs rows in order {', '.join(TORCH_ORDER)}: {tensors}", highlight=False)
        out.print(
            f"  parameters: textbook 4·m·(n_l+m) + 4·m = {lay['parameters_textbook']:,}; "
            f"PyTorch 4·m·(n_l+m) + 8·m = {lay['parameters_torch']:,} "
            f"(+{lay['parameters_torch'] - lay['parameters_textbook']:,}: two bias vectors b_ih + b_hh whose sum is the textbook b)\n",
            highlight=False,
        )
    h = f["head"]
    out.print(
        f"Head: Linear y_t ({m}) → {h['output'][0]} = horizon × targets; weight {h['weight'][0]}×{h['weight'][1]} "
        f"+ bias {h['bias'][0]} = {h['parameters']:,} parameters",
        highlight=False,
    )
    textbook = sum(lay["parameters_textbook"] for lay in f["layers"]) + h["parameters"]
    out.print(
        f"[bold]Total parameters: {f['total_parameters']:,}[/] (sum of the model's tensors; textbook count "
        f"{textbook:,} without the duplicate biases)",
        markup=True,
    )
    if "units" in f:
        _render_units(f)
    if f.get("metrics"):
        mt = f["metrics"]
        windows = mt.get("windows", {})
        out.print(metrics_table(mt["test"], f"Test metrics of this run ({windows.get('test', '?')} windows, original units)"))
        if "val" in mt:
            v = mt["val"]["model"]
            out.print(
                f"validation ({windows.get('val', '?')} windows): MAE {_fmt(v['MAE'])}, RMSE {_fmt(v['RMSE'])}, "
                f"sMAPE {v['sMAPE']:.2f}%, MASE {_fmt(v['MASE'], 3)}",
                highlight=False,
            )
    if "check" in f:
        diff = f["check"]["max_abs_diff"]
        ok = diff <= f["check"]["tolerance"]
        verdict = "[green]same function[/]" if ok else "[red]MISMATCH[/]"
        out.print(
            f"check: textbook gate equations vs fused nn.LSTM (float64, random input): "
            f"max |difference| = {diff:.3e} ≤ 1e-10 → {verdict}"
            if ok
            else f"check: max |difference| = {diff:.3e} > 1e-10 → {verdict}",
            markup=True,
        )


def _render_run(r: dict[str, Any]) -> None:
    dates = f", {r['first_date']} … {r['last_date']} ({r['frequency']})" if r.get("first_date") else ""
    feats = f"; features {', '.join(r['features'])}" if r["features"] else ""
    out.print(f"[bold]Run[/] {escape(r['path'])}: trained on {escape(str(r['data']))} ({r['rows']} rows{dates})", markup=True)
    out.print(
        f"  target {', '.join(r['target'])}{feats}; L = {r['lookback']}, H = {r['horizon']}, s = {r['season']}",
        highlight=False,
    )
    if r.get("best_epoch") is not None:
        stop = " (early stop)" if r.get("stopped_early") else ""
        out.print(
            f"  best epoch {r['best_epoch']} of {r['epochs_run']}{stop}, best val loss {r['best_val_loss']:.4g}, "
            f"{r['train_seconds']:.1f} s on {r['device']} ({r['precision']})\n",
            highlight=False,
        )


def _render_units(f: dict[str, Any]) -> None:
    for layer, units in f["units"].items():
        n_l = f["layers"][int(layer) - 1]["input_size"]
        t = Table(
            title=f"Layer {layer} units: unit k owns row k of W_f, W_i, W_g, W_o "
            f"(4·(n_l+m) = 4·({n_l}+{f['m']}) weights) and 4 biases",
            title_justify="left",
        )
        for col in ("unit", "weights", "biases", "torch row f / i / g / o", "b_f", "b_i", "b_g", "b_o"):
            t.add_column(col, justify="right")
        for u in units:
            rows = " / ".join(str(u["torch_rows"][g]) for g in ("f", "i", "g", "o"))
            t.add_row(str(u["unit"]), str(u["weights"]), str(u["biases"]), rows, *(f"{u['b'][g]:+.3f}" for g in ("f", "i", "g", "o")))
        out.print(t)


# ---------------------------------------------------------------------------------------------
# lstm predict


class SplitChoice(str, Enum):
    all = "all"
    train = "train"
    val = "val"
    test = "test"


@app.command()
@handle_errors
def predict(
    run: Annotated[Path, typer.Argument(help="A run directory made by `lstm train`.")],
    data: Annotated[Path, typer.Option("--data", "-d", exists=True, dir_okay=False, help="CSV with the run's columns (any order).")],
    out_file: Annotated[Path | None, typer.Option("--out", "-o", dir_okay=False, help="Write the forecast (or backtest) as CSV.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
    steps: Annotated[
        int | None,
        typer.Option("--steps", "-k", min=1, max=10_000, help="Steps to forecast (default H, at most 10,000); more than H feeds forecasts back in."),
    ] = None,
    future: Annotated[Path | None, typer.Option("--future", exists=True, dir_okay=False, help="CSV of the features' future values (for --steps > H).")] = None,
    backtest: Annotated[bool, typer.Option("--backtest", help="Forecast from every origin of the file and score it like train.")] = False,
    split: Annotated[SplitChoice, typer.Option("--split", help="Backtest origins: all, or the run's train/val/test split.")] = SplitChoice.all,
    plot: Annotated[Path | None, typer.Option("--plot", dir_okay=False, help="Write a PNG of history, forecast (and actuals).")] = None,
    series: Annotated[str | None, typer.Option("--series", help="Multi-series runs: only this series (default: every series in the file).")] = None,
) -> None:
    """Forecast the next H steps after the last row of a CSV with a trained run, or backtest it."""
    from lstmcli import plots
    from lstmcli.commands import predict as pr
    from lstmcli.fsutil import atomic_write, check_outputs, json_text

    check_outputs({"--out": out_file, "--plot": plot}, [data, *([future] if future else [])], protected=run)
    if not backtest and split is not SplitChoice.all:
        raise typer.BadParameter("--split applies to --backtest", param_hint="--split")
    if backtest and (steps is not None or future is not None):
        raise typer.BadParameter("a backtest forecasts the run's H steps from each origin", param_hint="--steps/--future")
    result = pr.backtest(run, data, split.value, series) if backtest else pr.forecast(run, data, steps, future, series)
    if plot is not None and len(result.items) > 1:
        raise typer.BadParameter(f"the file holds {len(result.items)} series; pick one with --series to plot", param_hint="--plot")
    if out_file is not None:
        atomic_write(out_file, result.to_csv())
    if plot is not None:
        (plots.backtest_plot if backtest else plots.forecast_plot)(result.items[0], plot)
    if as_json:
        print(json_text(result.to_dict()), end="")
    else:
        for item in result.items:
            _render_prediction(item, backtest)
        if result.metrics is not None:
            out.print(metrics_table(result.metrics, f"Pooled over {len(result.items)} series, original units"))
    for path, what in ((out_file, "CSV"), (plot, "plot")):
        if path is not None:
            err.print(f"{what} written to {path}", highlight=False, soft_wrap=True)


def _render_prediction(result: Any, backtest: bool) -> None:
    d = result.to_dict()
    if result.series is not None:
        out.print(f"[bold]series {escape(result.series)}[/]", markup=True)
    if backtest:
        out.print(
            f"Backtest of {d['run']} on {d['data']}: {d['windows']} windows, origins {d['first_origin']} … "
            f"{d['last_origin']}\norigins: {d['split']} ({d['split_source']})",
            highlight=False,
            soft_wrap=True,
        )
        out.print(metrics_table(d["metrics"], f"H = {d['horizon']} steps from each origin, original units"))
        for name, per in d["metrics"].get("per_target", {}).items():
            out.print(metrics_table(per, f"target {name}"))
        return
    how = f" (recursive: {d['steps']} > H = {d['horizon']}, forecasts fed back in)" if d["recursive"] else ""
    after = f"after {d['last_date']}" if d["last_date"] else f"after row {d['rows']}"
    out.print(f"Forecast from {d['run']} on {d['data']}: {d['steps']} steps {after}{how}", highlight=False, soft_wrap=True)
    t = Table()
    t.add_column(d["index_name"])
    for name in d["forecast"]:
        t.add_column(name, justify="right")
    for i, label in enumerate(d["index"]):
        t.add_row(label, *(f"{vals[i]:.6g}" for vals in d["forecast"].values()))
    out.print(t)


# ---------------------------------------------------------------------------------------------
# lstm init


@app.command()
@handle_errors
def init(
    csv_file: Annotated[Path, typer.Argument(metavar="CSV", exists=True, dir_okay=False, help="The CSV time series.")],
    target: Annotated[str | None, typer.Option("--target", "-t", help="Column to forecast (default: the first numeric one).")] = None,
    feature: Annotated[list[str] | None, typer.Option("--feature", "-f", help="Another numeric column to use as an input; repeatable.")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", dir_okay=False, help="Config to write (default: <CSV name>.yaml here).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing config file.")] = False,
) -> None:
    """Write a starter config for a CSV: date column, target, season, lookback and horizon chosen for you."""
    from lstmcli.commands import init as starter
    from lstmcli.fsutil import check_outputs

    out_path = out_file or starter.default_out(csv_file)
    check_outputs({"--out": out_path}, [csv_file])
    st = starter.propose(csv_file, out_path, target, feature)
    starter.write(st, force)
    freq = f", frequency {st.frequency}" if st.frequency else ""
    date = f"date column {st.date_column}" if st.date_column else "no date column"
    out.print(f"{st.csv}: {st.rows} rows, {date}{freq}; numeric columns: {', '.join(st.numeric)}", highlight=False)
    for reason in st.reasons:
        out.print(f"  • {reason}", highlight=False)
    out.print(f"wrote {st.out}; next: lstm train {st.out}", highlight=False)

