"""The training progress display as a person sees it: at 80 and 160 columns, on a terminal and in a log."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pyte
import pytest
from rich.console import Console

from lstmcli.cli.progress import Eta, Progress, clock
from lstmcli.training.hooks import EpochReport


def report(epoch: int, *, epochs: int = 200, patience: int = 5, bad: int = 0, seconds: float = 1.0) -> EpochReport:
    return EpochReport(
        epoch=epoch,
        epochs=epochs,
        train_loss=0.012345 / epoch,
        val_loss=0.023456 / epoch if not bad else 0.03,
        best_val=0.023456 / (epoch - bad),
        best_epoch=epoch - bad,
        lr=1e-3,
        seconds=seconds,
        windows_per_s=123_456.0,
        improved=not bad,
        patience=patience,
        bad_epochs=bad,
    )


def dataset() -> SimpleNamespace:
    """What Progress reads of a Dataset."""
    table = SimpleNamespace(path="data/some_series_with_a_long_name.csv", n_rows=2284)
    return SimpleNamespace(
        table=table, series=[object()], padded_series=0, counts=lambda: {"train": 1527, "val": 320, "test": 320}
    )


def console(width: int, terminal: bool) -> Console:
    return Console(width=width, record=True, force_terminal=terminal, file=io.StringIO(), markup=False)


def screen(con: Console, height: int = 60) -> list[str]:
    """What a terminal of the console's width shows after everything written so far (cursor
    movement, overwrites and erasures applied), without the empty lines at the bottom."""
    term = pyte.Screen(con.width, height)
    pyte.Stream(term).feed(con.file.getvalue().replace("\n", "\r\n"))  # type: ignore[attr-defined]
    lines = [line.rstrip() for line in term.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def train_epochs(progress: Progress, reports: list[EpochReport], batches: int = 24) -> None:
    with progress:
        progress.on_start(dataset(), epochs=reports[0].epochs, patience=reports[0].patience)  # type: ignore[arg-type]
        for r in reports:
            for done in range(batches + 1):
                progress.on_batch(done, batches)
            progress.on_epoch_end(r)


@pytest.mark.parametrize("width", [80, 160])
def test_epoch_table_stays_on_screen_and_fits_the_terminal(width: int) -> None:
    con = console(width, terminal=True)
    train_epochs(Progress(False, con), [report(e) for e in range(1, 4)] + [report(4, bad=1)])
    lines = screen(con)
    assert not any("reading the data" in line or "batches" in line for line in lines)  # spinner and bar are gone
    rows = [line for line in lines if line.strip().split(" ")[0].endswith("/200")]
    assert [row.split()[0] for row in rows] == ["1/200", "2/200", "3/200", "4/200"]  # every epoch, not overwritten
    assert rows[0].split()[2].endswith("*") and not rows[3].split()[2].endswith("*")  # the best marker
    header = next(line for line in lines if "train" in line and "val" in line and "lr" in line)
    assert lines.index(header) < lines.index(rows[0])


@pytest.mark.parametrize("width", [80, 160])
def test_live_bar_shows_the_epoch_counter_batches_and_eta_at_any_width(width: int) -> None:
    con = console(width, terminal=True)
    progress = Progress(False, con)
    with progress:
        progress.on_start(dataset(), epochs=200, patience=5)  # type: ignore[arg-type]
        progress.on_epoch_end(report(1))
        progress.on_epoch_end(report(2, bad=1))
        progress.on_batch(10, 24)
        progress.bar.refresh()
        lines = screen(con)
    bar = lines[-1]
    assert len(lines[-2].split()) == 7 and lines[-2].split()[0] == "2/200"  # the table above the bar
    assert "epoch 3/200" in bar and "10/24 batches" in bar and "ETA" in bar and "max" in bar


def test_eta_is_bounded_by_early_stopping() -> None:
    eta = Eta(epochs=200, patience=5)
    eta.add(report(10, bad=2, seconds=2.0))
    stop, most = eta.left(epoch_elapsed=0.5, batches_done=6, batches=24)  # type: ignore[misc]
    # The epoch in progress has 1.5 s left; two more after it end training if val stops improving
    # (5 - 2 - 1); 189 after it if every allowed epoch runs.
    assert stop == pytest.approx(1.5 + 2 * 2.0)
    assert most == pytest.approx(1.5 + 189 * 2.0)
    assert eta.text(0.5, 6, 24) == f"ETA {clock(5.5)}, max {clock(379.5)}"


def test_eta_of_the_first_epoch_comes_from_its_batches() -> None:
    eta = Eta(epochs=3, patience=1)
    assert eta.left(0.0, 0, 10) is None
    assert eta.text(0.0, 0, 10) == "ETA after the first batches"
    stop, most = eta.left(epoch_elapsed=2.0, batches_done=4, batches=10)  # type: ignore[misc]
    assert stop == pytest.approx(3.0) and most == pytest.approx(3.0 + 2 * 5.0)


def test_early_stop_is_said_once_with_its_reason_and_no_eta_after_it() -> None:
    reports = [report(1), report(2, bad=1, patience=2), report(3, bad=2, patience=2)]
    con = console(80, terminal=True)
    train_epochs(Progress(False, con), reports)
    text = " ".join(screen(con))
    assert text.count("early stop after epoch 3") == 1
    assert "no better validation loss for 2 epochs (best" in text
    log = console(80, terminal=False)
    train_epochs(Progress(False, log), reports)
    lines = log.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert "ETA" in lines[-3] and "ETA" not in lines[-2] and lines[-1].startswith("early stop after epoch 3")


def test_eta_of_a_resumed_run_counts_the_epochs_since_its_best() -> None:
    eta = Eta(epochs=200, patience=5, done=10, bad=3)  # two more epochs without a better val loss end it
    stop, most = eta.left(epoch_elapsed=4.0, batches_done=4, batches=8)  # type: ignore[misc]
    assert stop == pytest.approx(4.0 + 8.0) and most == pytest.approx(4.0 + 189 * 8.0)


def test_log_gets_one_plain_line_per_epoch() -> None:
    con = console(80, terminal=False)
    train_epochs(Progress(False, con), [report(1), report(2), report(3, bad=1)])
    lines = [line for line in con.file.getvalue().splitlines() if line.startswith("epoch ")]  # type: ignore[attr-defined]
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1/200  train ") and " * " in lines[0] and " * " not in lines[2]
    assert all("win/s" in line and "ETA" in line for line in lines)
    assert "\x1b" not in con.file.getvalue()  # type: ignore[attr-defined]  # no cursor movement in a log


def test_quiet_prints_nothing() -> None:
    con = console(80, terminal=True)
    train_epochs(Progress(True, con), [report(1), report(2)])
    assert con.file.getvalue() == ""  # type: ignore[attr-defined]


def test_clock_reads_like_a_clock() -> None:
    assert [clock(s) for s in (0, 7.4, 750, 3725)] == ["0:00", "0:07", "12:30", "1:02:05"]
