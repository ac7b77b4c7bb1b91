"""The ``lstm`` commands: parse, call one command of ``lstmcli.commands``, render, map errors to
exit codes.

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
from typer.core import TyperGroup

from lstmcli.cli import render
from lstmcli.errors import Interrupted, LstmcliError, PeerLost
from lstmcli.training.launcher import LAUNCHED_ENV
from lstmcli.training.threads import passive_waiting, pinned_threads

passive_waiting()  # before any command imports torch (and its OpenMP runtime)

if TYPE_CHECKING:
    from lstmcli.commands.trace_run import TraceRequest
    from lstmcli.config import Config


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
        render.error_line(exc.format_message() + hint)
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
                render.error_line(str(exc), "[bold yellow]interrupted:[/]")
            raise typer.Exit(exc.exit_code) from None
        except LstmcliError as exc:
            if not (isinstance(exc, PeerLost) and os.environ.get(LAUNCHED_ENV)):  # the launcher names the rank
                render.error_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            render.err.print("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a failure the library did not name: still one line, never a traceback
            if os.environ.get("LSTMCLI_DEBUG") or hasattr(exc, "format_message"):
                raise  # a usage error (typer.BadParameter) is rendered by _one_line_usage_errors
            known = _unexpected(exc)
            render.error_line(str(known))
            raise typer.Exit(known.exit_code) from None

    return wrapper  # type: ignore[return-value]


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
    print(_load(config, set_).to_yaml(), end="")


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
        typer.Option(
            help="Replace the run already in the run directory; it stays as it is until the new one has finished."
        ),
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

    Early stopping on the validation split chooses the epoch and keeps its weights (train.refit: retrain on train + val).
    Every epoch is checkpointed; after Ctrl-C, SIGTERM or a crash, continue with --resume (or lstm resume RUN).
    """
    if resume and overwrite:
        raise typer.BadParameter(
            "--resume continues a run and --overwrite replaces it; pass one", param_hint="--resume"
        )
    cfg = _load(config, set_)  # a bad config fails here, once, before any process starts
    pinned_threads(cfg.train.threads)  # before anything imports torch, which loads OpenMP (the ranks inherit it)
    from lstmcli.training.device import stable_malloc
    from lstmcli.training.distributed import from_env
    from lstmcli.training.launcher import launch

    dist = from_env()
    if nproc > 1 and not dist.enabled:
        from lstmcli.training.device import resolve_device

        resolve_device(cfg.train.device, nproc)  # too few GPUs, say: once, here, not once per process
        from lstmcli.config import default_run_dir

        hint = f"lstm resume {default_run_dir(config, cfg)}"
        raise typer.Exit(launch(nproc, _without_nproc(ctx.meta[ARGV_KEY]), hint))
    stable_malloc()
    if print_config and dist.is_main:
        render.err.print(cfg.to_yaml(), end="")
    from lstmcli.cli.progress import Progress
    from lstmcli.commands.train import Mode
    from lstmcli.commands.train import train as train_command
    from lstmcli.config import default_run_dir

    mode: Mode = "resume" if resume else "overwrite" if overwrite else "new"
    with Progress(quiet or not dist.is_main) as progress:
        summary = train_command(cfg, default_run_dir(config, cfg), mode, progress, dist)
    render.train_summary(summary)


def _stored_threads(run: Path) -> int | None:
    """``train.threads`` of a run's stored config, or None (also where it cannot be read: resume says why)."""
    try:
        import yaml

        raw = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        value = raw["train"].get("threads") if isinstance(raw, dict) and isinstance(raw.get("train"), dict) else None
        return value if isinstance(value, int) else None
    except (OSError, ValueError, yaml.YAMLError):
        return None


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
    pinned_threads(_stored_threads(run))
    from lstmcli.cli.progress import Progress
    from lstmcli.commands.train import resume as resume_command

    with Progress(quiet) as progress:
        summary = resume_command(run, progress)
    render.train_summary(summary)


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


# ---------------------------------------------------------------------------------------------
# lstm tune


@app.command()
@handle_errors
def tune(
    config: Annotated[Path, typer.Argument(help="YAML config file with a tune: section (the search space).")],
    trials: Annotated[
        int,
        typer.Option(
            "--trials",
            min=1,
            help="Finished trials (complete or pruned) the study should hold in all; a rerun runs only the missing ones.",
        ),
    ],
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            min=1,
            help="Trials at once, in this many processes sharing the study, the CPU threads split between them.",
        ),
    ] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna RDB storage URL (default: sqlite:///OUT/study.db); a shared database spreads trials over machines."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", file_okay=False, help="Study directory (default: the config's run directory + -tune)."
        ),
    ] = None,
    set_: SetOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per trial.")] = False,
    worker: Annotated[int | None, typer.Option("--worker", hidden=True)] = None,
) -> None:
    """Search the config's tune: space with Optuna (TPE, median pruning), judged on the validation MAE.

    Each trial is a run directory in OUT/trials/; the best is copied to OUT/best/ with its test split scored once, and its config written to OUT/best.yaml. Ctrl-C keeps the finished trials: run the same command again to continue.
    """
    from lstmcli.commands import tune as tn

    opts = tn.TuneOptions(config, tuple(set_ or []), trials, jobs, storage, out, worker, quiet)
    tn.refuse_if_worker_misused(opts)
    cfg = _load(config, set_)
    from lstmcli.training.device import stable_malloc

    stable_malloc()

    class TrialLines(tn.TuneHooks):
        """One stderr line per finished trial."""

        names = render.short_keys(list(cfg.tune or {}))

        def on_trial_end(self, row: tn.TrialRow, best: float | None) -> None:
            if not quiet:
                render.err.print(render.trial_line(row, best, self.names), soft_wrap=True)

    summary = tn.tune(cfg, opts, TrialLines())
    if worker is None:
        render.tune_summary(summary)


# ---------------------------------------------------------------------------------------------
# lstm inspect


@app.command()
@handle_errors
def inspect(
    target: Annotated[Path, typer.Argument(help="A YAML config, or a run directory made by `lstm train`.")],
    set_: SetOption = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Prove the textbook gate equations equal nn.LSTM (float64); exit 1 if > 1e-10."),
    ] = False,
    units: Annotated[
        bool,
        typer.Option(
            "--units",
            help="Show the per-unit view: unit k owns row k of each gate (with --trace: the most and least active units).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the facts as JSON for scripts.")] = False,
    trace: Annotated[
        Path | None,
        typer.Option(
            "--trace",
            exists=True,
            dir_okay=False,
            metavar="CSV",
            help="Run the trained model over a window of this CSV (the run's scaling) and show what each gate did: "
            "activations, saturation, forget-gate memory spans, cell-state norms, dead units; exit 1 if the "
            "textbook equations' y_t differ from the fused layer's by more than 1e-4.",
        ),
    ] = None,
    window: Annotated[
        int | None,
        typer.Option(
            "--window",
            min=0,
            metavar="K",
            help="With --trace: window K (0-based; rows K+1 … K+L). Default: the last, which the next forecast reads.",
        ),
    ] = None,
    from_date: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="DATE", help="With --trace: the window starting at the first row on or after DATE."
        ),
    ] = None,
    windows: Annotated[
        int,
        typer.Option(
            "--windows",
            min=1,
            metavar="N",
            help="With --trace: summarise N windows (stride 1) ending with the chosen one; the plot shows the chosen one.",
        ),
    ] = 1,
    series: Annotated[
        str | None, typer.Option("--series", help="With --trace on a multi-series run: the series to trace.")
    ] = None,
    top: Annotated[
        int,
        typer.Option(
            "--top",
            min=1,
            metavar="K",
            help="With --trace: how many most and least active units (listed in --json, shown with --units).",
        ),
    ] = 5,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            dir_okay=False,
            help="With --trace: write a PNG: the input, a heat map per gate and layer, the cell-state norm.",
        ),
    ] = None,
) -> None:
    """Show a stacked LSTM the way the textbook draws it: four gate sub-layers per layer; with --trace, what they do on data."""
    from lstmcli.commands.inspect_run import inspect as inspect_command
    from lstmcli.fsutil import json_text

    if target.is_dir() and set_:
        raise typer.BadParameter("--set applies to configs, not to a trained run", param_hint="--set")
    request = _trace_request(trace, window, from_date, windows, series, top, plot)
    facts = inspect_command(target, set_ or [], check=check, units=units, trace=request)
    failed_check = facts.check is not None and not facts.check.same_function
    failed_trace = facts.trace is not None and not (facts.trace.check.same_function and facts.trace.check.window_agrees)
    if plot is not None and facts.traced is not None and not failed_trace:  # a failed command writes nothing
        from lstmcli import plots
        from lstmcli.commands.outputs import write_outputs

        write_outputs({plot: plots.trace_plot(facts.traced)})
    if as_json:
        print(json_text(facts.to_dict()), end="")
    else:
        render.inspect_facts(facts)
    if plot is not None:
        render.err.print(
            f"plot written to {plot}"
            if not failed_trace
            else f"plot not written to {plot}: the trace failed its check",
            soft_wrap=True,
        )
    if failed_check or failed_trace:
        raise typer.Exit(1)


def _trace_request(
    csv: Path | None,
    window: int | None,
    start: str | None,
    windows: int,
    series: str | None,
    top: int,
    plot: Path | None,
) -> TraceRequest | None:
    """The --trace options, checked together (each of the others needs --trace; --window or --from)."""
    given = {
        "--window": window is not None,
        "--from": start is not None,
        "--windows": windows != 1,
        "--series": series is not None,
        "--top": top != 5,
        "--plot": plot is not None,
    }
    if csv is None:
        for flag, on in given.items():
            if on:
                raise typer.BadParameter(f"{flag} applies to --trace CSV", param_hint=flag)
        return None
    if window is not None and start is not None:
        raise typer.BadParameter("--window K and --from DATE both pick the window; pass one", param_hint="--window")
    from lstmcli.commands.outputs import check_outputs
    from lstmcli.commands.trace_run import TraceRequest

    check_outputs({"--plot": plot}, [csv])
    return TraceRequest(data=csv, window=window, start=start, windows=windows, series=series, top=top)


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
    data: Annotated[
        Path, typer.Option("--data", "-d", exists=True, dir_okay=False, help="CSV with the run's columns (any order).")
    ],
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", dir_okay=False, help="Write the forecast (or backtest) as CSV.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            "-k",
            min=1,
            max=10_000,
            help="Steps to forecast (default H, at most 10,000); more than H feeds forecasts back in.",
        ),
    ] = None,
    future: Annotated[
        Path | None,
        typer.Option(
            "--future", exists=True, dir_okay=False, help="CSV of the features' future values (for --steps > H)."
        ),
    ] = None,
    backtest: Annotated[
        bool,
        typer.Option(
            "--backtest",
            help="Forecast from every origin of the run's test split (--split for others), score it like train.",
        ),
    ] = False,
    split: Annotated[
        SplitChoice | None,
        typer.Option(
            "--split",
            help="Backtest origins: the run's test split (default), val, train, or all (every origin of the file, "
            "training windows included).",
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", dir_okay=False, help="Write a PNG of history, forecast (and actuals).")
    ] = None,
    series: Annotated[
        str | None,
        typer.Option("--series", help="Multi-series runs: only this series (default: every series in the file)."),
    ] = None,
    level: Annotated[
        list[int] | None,
        typer.Option(
            "--level",
            min=50,
            max=99,
            help="Add a prediction interval at this coverage in percent (50-99; repeatable): lower_L and upper_L "
            "columns, calibrated on the run's validation windows (split conformal); with --backtest, score them.",
        ),
    ] = None,
) -> None:
    """Forecast the next H steps after the last row of a CSV with a trained run, or backtest it."""
    from lstmcli import plots
    from lstmcli.commands import predict as pr
    from lstmcli.commands.outputs import check_outputs, write_outputs
    from lstmcli.fsutil import json_text

    check_outputs({"--out": out_file, "--plot": plot}, [data, *([future] if future else [])])
    if not backtest and split is not None:
        raise typer.BadParameter("--split applies to --backtest", param_hint="--split")
    if backtest and (steps is not None or future is not None):
        raise typer.BadParameter(
            "a backtest forecasts the run's H steps from each origin", param_hint="--steps/--future"
        )
    levels = sorted(set(level or []))
    result = (
        pr.backtest(run, data, (split or SplitChoice.test).value, series, levels)
        if backtest
        else pr.forecast(run, data, steps, future, series, levels)
    )
    files: dict[Path, bytes | str] = {} if out_file is None else {out_file: result.to_csv()}
    if plot is not None:
        files[plot] = (plots.backtest_plot if backtest else plots.forecast_plot)(result.items)  # type: ignore[arg-type]
    write_outputs(files)
    if as_json:
        print(json_text(result.to_dict()), end="")
    else:
        render.prediction(result, backtest)
    for path, what in ((out_file, "CSV"), (plot, "plot")):
        if path is not None:
            render.err.print(f"{what} written to {path}", soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# lstm export


class ExportFormat(str, Enum):
    onnx = "onnx"


@app.command()
@handle_errors
def export(
    run: Annotated[Path, typer.Argument(help="A run directory made by `lstm train`.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="The artifact to write (onnx).")] = ExportFormat.onnx,
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", dir_okay=False, help="File to write (default: RUN.onnx beside RUN).")
    ] = None,
    level: Annotated[
        list[int] | None,
        typer.Option(
            "--level",
            min=50,
            max=99,
            help="Intervals the graph outputs, in percent (repeatable; default 80 and 95 where the run is calibrated).",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            exists=True,
            dir_okay=False,
            help="CSV whose windows the check runs (default: the run's training CSV).",
        ),
    ] = None,
) -> None:
    """Write the whole forecaster (scaling, normalisation, LSTM, head, inverse transform, intervals) as one
    ONNX graph, after checking with onnxruntime that it computes what `lstm predict` computes on real
    windows; exit 1 (nothing written) if it does not. Needs pip install 'lstmcli\\[export]'."""
    from lstmcli.commands import export as ex

    report = ex.export(run, out_file or ex.default_out(run), level, data)
    render.export_report(report)


# ---------------------------------------------------------------------------------------------
# lstm init


@app.command()
@handle_errors
def init(
    csv_file: Annotated[Path, typer.Argument(metavar="CSV", exists=True, dir_okay=False, help="The CSV time series.")],
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Column to forecast (default: the first numeric one).")
    ] = None,
    feature: Annotated[
        list[str] | None, typer.Option("--feature", "-f", help="Another numeric column to use as an input; repeatable.")
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", dir_okay=False, help="Config to write (default: <CSV name>.yaml here)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing config file.")] = False,
    series_column: Annotated[
        str | None,
        typer.Option(
            "--series-column",
            help="Long format: the column naming each row's series (default: found when dates repeat).",
        ),
    ] = None,
) -> None:
    """Write a starter config for a CSV: date column, target, season, lookback, horizon, transform and model size chosen for you."""
    from lstmcli.commands import init as starter
    from lstmcli.commands.outputs import check_outputs

    out_path = out_file or starter.default_out(csv_file)
    check_outputs({"--out": out_path}, [csv_file])
    st = starter.propose(csv_file, out_path, target, feature, series_column)
    starter.write(st, force)
    render.starter(st)
