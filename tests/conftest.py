"""Shared fixtures: tiny real CSV files and configs in tmp_path; one torch thread."""

from __future__ import annotations

import hashlib
import math
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from lstmcli.training.hooks import Hooks

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent


class Crash(Exception):
    """Stands in for a kill right after an epoch's checkpoint was written."""


class OnEpoch(Hooks):
    """Hooks that call ``fn(report)`` after every epoch (after its checkpoint was written)."""

    def __init__(self, fn) -> None:  # noqa: ANN001
        self.fn = fn

    def on_epoch_end(self, report) -> None:  # noqa: ANN001
        self.fn(report)


class OnRefit(Hooks):
    """Hooks that call ``fn((epoch, epochs))`` after every epoch of the refit."""

    def __init__(self, fn) -> None:  # noqa: ANN001
        self.fn = fn

    def on_refit_epoch(self, epoch: int, epochs: int, train_loss: float, seconds: float) -> None:
        self.fn((epoch, epochs))


def crash_after(epoch: int) -> Hooks:
    """Hooks that raise Crash once ``epoch`` is reported."""

    def crash(report) -> None:  # noqa: ANN001
        if report.epoch == epoch:
            raise Crash

    return OnEpoch(crash)


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Same names, and every tensor equal to the bit."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# Bad CSVs (body, what the one-line error must say) for read_table(path, ["y"], "date"): the
# validating reader's messages (tests/test_data.py), which the polars fast path must leave to it
# (tests/test_ingest.py).
BAD_CSVS = [
    ("", "file is empty"),
    ("date,y\n", "has a header but no data rows"),
    ("date,z\n2000-01-01,1\n", "no column 'y'"),
    ("date,y,y\n2000-01-01,1,2\n", "column 'y' appears twice"),
    ("date,y\n2000-01-01,1\n2000-02-01,abc\n", "row 2 (line 3), column 'y': 'abc' is not a number"),
    ("date,y\n2000-01-01,1\n2000-02-01,\n", "row 2 (line 3), column 'y': an empty cell"),
    ("date,y\n2000-01-01,nan\n", "row 1 (line 2), column 'y': a missing value ('nan')"),
    ("date,y\n2000-01-01,inf\n", "'inf' is not a finite number"),
    ("date,y\n2000-01-01,1e400\n", "'1e400' is not a finite number"),
    ("date,y\n2000-01-01,1\n2000-01-01,2\n", "row 2 (line 3), column 'date': date 2000-01-01 repeats"),
    ("date,y\n2000-02-01,1\n2000-01-01,2\n", "goes back before the previous row's 2000-02-01"),
    ("date,y\n2000-01-01,1\nJan 2000,2\n", "row 2 (line 3), column 'date': 'Jan 2000' is not an ISO date"),
    ("date;y\n2000-01-01;1\n", "looks semicolon-separated"),
    ("date,y\n2000-01-01,1,5\n", "row 1 (line 2) has 3 field(s), the header has 2"),
    ("date,y,z\n2000-01-01,1\n", "row 1 (line 2) has 2 field(s), the header has 3"),
]


def one_line_error(result: Any, code: int = 2) -> str:
    """A CLI result that failed with ``code`` and said so in one ``error:`` line, no traceback."""
    assert result.exit_code == code, result.output
    text = str(result.output).strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    assert text.startswith("error:"), text
    return text


def write_csv(path: Path, rows: int = 80, columns: tuple[str, ...] = ("y",), start: str = "2000-01-01") -> Path:
    """A monthly seasonal series with trend; extra columns are scaled copies with a phase shift."""
    import numpy as np

    dates = np.datetime64(start[:7], "M") + np.arange(rows) * np.timedelta64(1, "M")
    lines = ["date," + ",".join(columns)]
    for t in range(rows):
        vals = [10 + 0.05 * t + math.sin(2 * math.pi * t / 12 + j) * (1 + j) for j in range(len(columns))]
        lines.append(f"{dates[t]}-01," + ",".join(f"{v:.6f}" for v in vals))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(path: Path, csv: str = "series.csv", **sections: dict[str, Any]) -> Path:
    """A small valid config; keyword sections are merged over the defaults (None deletes a key)."""
    cfg: dict[str, Any] = {
        "model": {"n": 1, "m": 8, "layers": 2},
        "data": {"path": csv, "date_column": "date", "target": "y", "lookback": 12, "horizon": 3, "season": 12},
        # The CPU, pinned: what these tests assert (bit-identical resume, DDP = one process) is the
        # CPU's guarantee, and CI has no GPU. tests/test_cuda.py checks the CUDA path where there is one.
        "train": {"epochs": 3, "batch_size": 16, "patience": 5, "seed": 0, "device": "cpu"},
        "output": {"dir": str(path.parent / "run")},
    }
    for name, values in sections.items():
        for key, value in values.items():
            if value is None:
                cfg[name].pop(key, None)
            else:
                cfg[name][key] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "series.csv")


@pytest.fixture
def tiny_config(tmp_path: Path, tiny_csv: Path) -> Path:
    return write_config(tmp_path / "tiny.yaml")


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (and the set of files and directories)."""
    files = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        # Only regular files are read: a FIFO among the inputs would block the snapshot itself.
        files[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<not a file>"
    return files


class Proc:
    """``python -m lstmcli ...`` with its stderr lines collected by a thread."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "COLUMNS": "200",
        }
        self.p = subprocess.Popen(
            [sys.executable, "-m", "lstmcli", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.p.stderr is not None
        with self.p.stderr:
            for line in self.p.stderr:
                self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 60) -> bool:
        """True once a stderr line starts with ``text``; False if the process ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                if self.p.poll() is not None and self.lines.empty():
                    return False
                continue
            self.seen.append(line)
            if line.startswith(text):
                return True
        raise AssertionError(f"no {text!r} within {timeout} s: {''.join(self.seen)}")

    def finish(self, timeout: float = 120) -> str:
        self.p.wait(timeout)
        self.pump.join(10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)
