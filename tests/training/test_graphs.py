"""The CUDA-graph training path's logic, checked on the CPU (benchmarks/gpu_check.py checks the capture on a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lstmcli.config import load_config
from lstmcli.data.dataset import load_dataset
from lstmcli.training.graphs import _Snapshot
from lstmcli.training.optim import Adam
from lstmcli.training.trainer import Trainer, fit


@pytest.mark.parametrize("extra", [[], ["train.loss=quantile"]], ids=["mae", "quantile"])
def test_static_step_path_gives_the_eager_losses_and_weights(tiny_config: Path, extra: list[str]) -> None:
    # 42 training windows, batch 16: two full batches take the static path, the last 10 run eagerly.
    cfg = load_config(tiny_config, ["train.epochs=4", "train.schedule=cosine", *extra])
    ds = load_dataset(cfg.data)
    eager = fit(Trainer(cfg, ds))
    tr = Trainer(cfg, ds, static_step="eager")  # the graph path's bookkeeping, without capture
    static = fit(tr)
    assert tr.static_step is not None and tr.static_step.batch_size == 16
    assert [h["train_loss"] for h in static.state.history] == [h["train_loss"] for h in eager.state.history]
    for name, value in eager.model.state_dict().items():
        assert torch.equal(value, static.model.state_dict()[name]), name


def test_static_step_is_rebuilt_when_the_learning_rate_changes(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, ["train.epochs=2", "train.schedule=cosine"])
    tr = Trainer(cfg, load_dataset(cfg.data), static_step="eager")
    tr.train_epoch()
    first = tr.static_step
    tr.train_epoch()
    assert tr.static_step is first  # same lr: reused
    tr.scheduler.step(0.0)
    tr.train_epoch()
    assert tr.static_step is not first  # a graph bakes the lr in: rebuilt


def test_snapshot_undoes_warm_up_steps_exactly() -> None:
    torch.manual_seed(0)
    model = torch.nn.LSTM(2, 4, batch_first=True)
    x = torch.randn(3, 5, 2)

    def step(opt: Adam) -> None:
        opt.zero_grad()
        model(x)[0].pow(2).sum().backward()
        opt.step()

    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = Adam(model.parameters(), lr=0.1)
    snap = _Snapshot(model, opt)
    for _ in range(3):
        step(opt)
    assert not torch.equal(model.weight_ih_l0, before["weight_ih_l0"])
    snap.restore()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(float(s["step"]) == 0 for s in opt.state.values())
    # one step from the restored state equals one step of a fresh optimizer from the same weights
    step(opt)
    after_restored = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(before)
    step(Adam(model.parameters(), lr=0.1))
    for k, v in model.state_dict().items():
        assert torch.equal(v, after_restored[k]), k
