"""The speed changes of issue 6 keep behaviour: bounded evaluation chunks, fused optimizer, plot warm-up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lstmcli import plots
from lstmcli.config import load_config
from lstmcli.data.windows import Windows
from lstmcli.evaluate import forecast_scaled
from lstmcli.model.forecaster import LSTMForecaster
from lstmcli.training.optim import make_optimizer


def test_eval_chunk_bounds_windows_times_lookback() -> None:
    series = torch.zeros(10, 1)
    assert Windows(series, 12, 3, 1).eval_chunk() == 4096
    assert Windows(series, 384, 3, 1).eval_chunk() == 65536 // 384
    assert Windows(series, 10**6, 3, 1).eval_chunk() == 1


def test_chunked_forecasts_equal_one_big_batch(tiny_config: Path) -> None:
    cfg = load_config(tiny_config)
    torch.manual_seed(0)
    model = LSTMForecaster.from_config(cfg)
    series = torch.randn(200, 1)
    w = Windows(series, cfg.data.lookback, cfg.data.horizon, 1)
    origins = np.arange(cfg.data.lookback, 200 - cfg.data.horizon)
    chunked = forecast_scaled(model, w, origins, batch_size=7)
    whole = forecast_scaled(model, w, origins, batch_size=len(origins))
    assert chunked.shape == (len(origins), cfg.data.horizon, 1)
    assert np.allclose(chunked, whole, atol=1e-6)


def test_optimizer_is_fused_on_cpu_when_torch_has_it(tiny_config: Path) -> None:
    cfg = load_config(tiny_config)
    opt = make_optimizer(LSTMForecaster.from_config(cfg), cfg.train)
    assert opt.decoupled  # adamw, the default
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) >= (2, 4):
        assert opt.fused is True


def test_plot_after_background_warm_up(tmp_path: Path) -> None:
    plots.preload()
    plots.preload()  # idempotent
    history = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "val_loss": 1.1 / (i + 1)} for i in range(5)]
    (tmp_path / "loss.png").write_bytes(plots.loss_curve(history, 3))
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
