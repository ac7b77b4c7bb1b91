"""Training progress on stderr: a rich bar on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lstmcli.cli.render import err
from lstmcli.training.hooks import EpochReport, Hooks

if TYPE_CHECKING:
    from lstmcli.data.dataset import Dataset


class Progress(Hooks):
    """The training hooks the CLI gives: what is being trained, then every epoch; nothing when quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live = not quiet and err.is_terminal
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def on_resume(self, epoch: int) -> None:
        if not self.quiet:
            err.print(f"resuming from the checkpoint of epoch {epoch}")

    def on_start(self, ds: Dataset) -> None:
        counts = ds.counts()
        if not self.quiet:
            many = f" in {len(ds.series)} series" if len(ds.series) > 1 else ""
            if ds.padded_series:
                many += f" ({ds.padded_series} too short for a full lookback, padded)"
            err.print(
                f"{ds.table.path}: {ds.table.n_rows} rows{many}; windows train {counts['train']}, "
                f"val {counts['val']}, test {counts['test']}"
            )
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(
                TextColumn("epoch"),
                MofNCompleteColumn(),
                BarColumn(),
                TextColumn("{task.fields[stats]}", markup=False),
                TimeRemainingColumn(),
                console=err,
                transient=False,
            )
            self.bar.start()
            self.task = None

    def on_epoch_end(self, report: EpochReport) -> None:
        r = report
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
            err.print(f"epoch {r.epoch}/{r.epochs}  {stats}  {r.seconds:.2f}s{mark}", soft_wrap=True)
