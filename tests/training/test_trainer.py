"""The training loop: losses fall, seeds repeat, early stopping restores the best weights, threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lstmcli.config import load_config
from lstmcli.data.dataset import load_dataset
from lstmcli.training.trainer import Trainer, fit
from tests.conftest import OnEpoch, OnRefit, assert_same_tensors

runner = CliRunner()


def test_loss_falls_and_callback_runs_once_per_epoch(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, ["train.epochs=30", "train.patience=50", "train.lr=0.01"])
    reports = []
    result = fit(Trainer(cfg, load_dataset(cfg.data)), OnEpoch(reports.append))
    assert [r.epoch for r in reports] == list(range(1, 31))
    assert reports[-1].train_loss < 0.5 * reports[0].train_loss
    assert result.state.epoch == 30


def test_same_seed_same_losses_on_cpu(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, ["train.epochs=4", "model.dropout=0.2"])
    ds = load_dataset(cfg.data)
    a = [h["train_loss"] for h in fit(Trainer(cfg, ds)).state.history]
    b = [h["train_loss"] for h in fit(Trainer(cfg, ds)).state.history]
    c = [
        h["train_loss"]
        for h in fit(Trainer(load_config(tiny_config, ["train.epochs=4", "train.seed=1"]), ds)).state.history
    ]
    assert a == b
    assert a != c


def test_early_stopping_restores_the_best_weights(tiny_config: Path) -> None:
    # A large learning rate makes the validation loss bounce, so the last epoch is not the best.
    over = ["train.epochs=40", "train.patience=3", "train.lr=0.05", "train.schedule=none", "train.refit=true"]
    cfg = load_config(tiny_config, over)
    ds = load_dataset(cfg.data)
    result = fit(Trainer(cfg, ds))
    st = result.state
    vals = [h["val_loss"] for h in st.history]
    assert st.best_val == min(vals) and st.best_epoch == vals.index(min(vals)) + 1
    assert st.stopped_early and st.epoch == st.best_epoch + 3
    probe = Trainer(cfg, ds)
    probe.model.load_state_dict(result.scored_model.state_dict())
    assert probe.val_loss() == pytest.approx(st.best_val, rel=1e-6)
    assert vals[-1] != pytest.approx(st.best_val)
    # Without the refit, the early-stopped model is the one kept.
    kept = fit(Trainer(load_config(tiny_config, [*over, "train.refit=false"]), ds))
    assert kept.holdout_model is None and kept.refit_epochs == 0
    assert_same_tensors(kept.model.state_dict(), result.scored_model.state_dict())


def test_the_refit_trains_a_fresh_model_on_the_training_and_validation_windows(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, ["train.epochs=30", "train.patience=4", "train.lr=0.02", "train.refit=true"])
    ds = load_dataset(cfg.data)
    trainer = Trainer(cfg, ds)
    seen: list[tuple[int, int]] = []
    result = fit(trainer, OnRefit(seen.append))
    best = result.state.best_epoch
    assert result.refit_epochs == best > 0 and seen == [(e, best) for e in range(1, best + 1)]
    assert len(trainer.train_origins) == len(ds.origins("train")) + len(ds.origins("val"))
    # It fits the validation windows it trained on better than the early-stopped model, which never saw them.
    probe = Trainer(cfg, ds)
    assert probe.val_loss() != pytest.approx(result.state.best_val)  # untrained
    probe.model.load_state_dict(result.scored_model.state_dict())
    assert probe.val_loss() == pytest.approx(result.state.best_val, rel=1e-6)
    probe.model.load_state_dict(result.model.state_dict())
    assert probe.val_loss() < 0.9 * result.state.best_val
    # Without train.refit (the default) there is none.
    off = Trainer(load_config(tiny_config), ds)
    off.state.best_epoch = best
    assert off.refit_epochs == 0


def test_torch_threads_respected(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, ["train.threads=1", "train.epochs=1"])
    fit(Trainer(cfg, load_dataset(cfg.data)))
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("loss", ["mae", "huber"])
def test_the_loss_is_the_one_the_config_names(tiny_config: Path, loss: str) -> None:
    cfg = load_config(tiny_config, [f"train.loss={loss}", "train.epochs=1", "model.window_scale=false"])
    tr = Trainer(cfg, load_dataset(cfg.data))
    x, y = tr.windows.inputs(tr.val_origins), tr.windows.targets(tr.val_origins)
    with torch.no_grad():
        err = tr.model(x) - y
    expected = err.abs().mean() if loss == "mae" else torch.nn.functional.huber_loss(err, torch.zeros_like(err))
    assert tr.val_loss() == pytest.approx(float(expected), rel=1e-5)


def test_window_scale_weighs_each_windows_errors_by_its_own_scale(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, ["model.window_scale=true", "train.loss=mae", "train.epochs=1"])
    tr = Trainer(cfg, load_dataset(cfg.data))
    x, y = tr.windows.inputs(tr.val_origins), tr.windows.targets(tr.val_origins)
    with torch.no_grad():
        err = (tr.model(x) - y) / tr.model.scale(x)
        unscaled = (tr.model(x) - y).abs().mean()
    assert tr.val_loss() == pytest.approx(float(err.abs().mean()), rel=1e-5)
    assert tr.val_loss() != pytest.approx(float(unscaled), rel=1e-3)


@pytest.mark.parametrize(
    ("windows", "batch"),
    [
        (50, 8),
        (16 * 16 - 1, 8),
        (16 * 16, 16),
        (16 * 64, 64),
        (256 * 64, 64),
        (256 * 64 + 1, 128),
        (46_000, 256),
        (10**8, 1024),
    ],
)
def test_the_auto_batch_gives_an_epoch_16_to_256_steps(windows: int, batch: int) -> None:
    from lstmcli.training.trainer import batch_size_for

    assert batch_size_for("auto", windows) == batch
    assert batch_size_for(32, windows) == 32  # a number is kept


def test_training_uses_and_reports_the_auto_batch(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, ["train.epochs=1", "train.batch_size=auto"])
    tr = Trainer(cfg, load_dataset(cfg.data))
    assert tr.batch_size == 8  # a few dozen windows: the smallest batch
    assert fit(tr).batch_size == 8


@pytest.mark.parametrize(("steps", "patience"), [(1, 100), (4, 100), (9, 45), (20, 20), (180, 20), (10**5, 20)])
def test_the_auto_patience_waits_about_400_steps_within_20_to_100_epochs(steps: int, patience: int) -> None:
    from lstmcli.training.trainer import patience_for

    assert patience_for("auto", steps) == patience
    assert patience_for(7, steps) == 7  # a number is kept


def test_a_short_series_stops_early_only_after_the_auto_patience(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, ["train.epochs=400", "train.patience=auto", "train.batch_size=auto"])
    tr = Trainer(cfg, load_dataset(cfg.data))
    steps = -(-len(tr.train_origins) // tr.batch_size)
    assert tr.patience == min(max(-(-400 // steps), 20), 100) and tr.patience > 20
    result = fit(tr)
    st = result.state
    assert result.patience == tr.patience
    assert not st.stopped_early or st.epoch - st.best_epoch == tr.patience


def test_a_stop_request_taken_by_an_inner_scope_reaches_the_enclosing_one() -> None:
    """lstm tune wraps each trial's train in its own StopSignals: a Ctrl-C that comes while the
    trial writes its files (and so ends normally) must still stop the study."""
    import os
    import signal

    from lstmcli.training.interrupts import StopSignals

    with StopSignals() as outer:
        with StopSignals() as inner:
            os.kill(os.getpid(), signal.SIGINT)
            assert inner.signum == signal.SIGINT and outer.signum is None
        assert outer.signum == signal.SIGINT
    with StopSignals() as outer, StopSignals():
        pass
    assert outer.signum is None
