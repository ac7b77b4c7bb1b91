"""Windows are index gathers over one series tensor; evaluation chunks bound windows times lookback."""

from __future__ import annotations

from pathlib import Path

import torch

from lstmcli.config import load_config
from lstmcli.data.dataset import load_dataset
from lstmcli.data.windows import Windows


def test_eval_chunk_bounds_windows_times_lookback() -> None:
    series = torch.zeros(10, 1)
    assert Windows(series, 12, 3, 1).eval_chunk() == 4096
    assert Windows(series, 384, 3, 1).eval_chunk() == 65536 // 384
    assert Windows(series, 10**6, 3, 1).eval_chunk() == 1


def test_windows_are_index_gathers(tiny_config: Path) -> None:
    cfg = load_config(tiny_config)
    ds = load_dataset(cfg.data)
    series = torch.as_tensor(ds.scaled)
    w = Windows(series, 12, 3, 1)
    origins = torch.tensor([12, 40])
    x, y = w.inputs(origins), w.targets(origins)
    assert x.shape == (2, 12, 1) and y.shape == (2, 3, 1)
    assert torch.equal(x[1, :, 0], series[28:40, 0])
    assert torch.equal(y[1, :, 0], series[40:43, 0])
