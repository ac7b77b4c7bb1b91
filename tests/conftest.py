"""Shared fixtures: tiny real CSV files and configs in tmp_path; one torch thread."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent


class Crash(Exception):
    """Stands in for a kill right after an epoch's checkpoint was written."""


def crash_after(epoch: int):  # noqa: ANN201
    """An ``on_epoch_end`` callback that raises Crash once ``epoch`` is reported."""

    def on_epoch_end(report) -> None:  # noqa: ANN001
        if report.epoch == epoch:
            raise Crash

    return on_epoch_end


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Same names, and every tensor equal to the bit."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


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
