from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.config import load_config
from lstmcli.data.dataset import load_dataset
from lstmcli.training.trainer import Trainer, fit

from .conftest import OnEpoch, write_config

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
    cfg = load_config(tiny_config, ["train.epochs=40", "train.patience=3", "train.lr=0.05", "train.schedule=none"])
    ds = load_dataset(cfg.data)
    result = fit(Trainer(cfg, ds))
    st = result.state
    vals = [h["val_loss"] for h in st.history]
    assert st.best_val == min(vals) and st.best_epoch == vals.index(min(vals)) + 1
    assert st.stopped_early and st.epoch == st.best_epoch + 3
    probe = Trainer(cfg, ds)
    probe.model.load_state_dict(result.model.state_dict())
    assert probe.val_loss() == pytest.approx(st.best_val, rel=1e-6)
    assert vals[-1] != pytest.approx(st.best_val)


def test_divergence_exits_1_with_a_hint(tmp_path: Path, tiny_csv: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", train={"lr": 1e30, "grad_clip": None, "epochs": 5})
    result = runner.invoke(app, ["train", str(cfg), "-q"])
    assert result.exit_code == 1, result.output
    assert "training diverged at epoch" in result.output and "train.lr" in result.output


def test_train_cli_writes_a_complete_run_directory(tiny_config: Path) -> None:
    result = runner.invoke(app, ["train", str(tiny_config)])
    assert result.exit_code == 0, result.output
    assert "seasonal naive" in result.output and "epoch 1/3" in result.output
    run = tiny_config.parent / "run"
    for name in ("config.yaml", "model.safetensors", "meta.json", "metrics.json", "history.csv", "loss.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"model", "naive", "seasonal_naive"}
    assert set(metrics["test"]["model"]) == {"MAE", "RMSE", "sMAPE", "MASE"}
    assert metrics["test"]["seasonal_naive"]["MASE"] == 1.0
    assert metrics["windows"] == {"train": 42, "val": 10, "test": 10}
    assert (run / "history.csv").read_text().splitlines()[0] == "epoch,train_loss,val_loss,lr,seconds"
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not any(p.suffix in {".pt", ".pkl"} for p in run.iterdir())


def test_existing_run_is_never_silently_overwritten(tiny_config: Path) -> None:
    assert runner.invoke(app, ["train", str(tiny_config), "-q"]).exit_code == 0
    weights = tiny_config.parent / "run" / "model.safetensors"
    before = weights.read_bytes()
    again = runner.invoke(app, ["train", str(tiny_config), "-q", "--set", "train.seed=3"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert weights.read_bytes() == before
    forced = runner.invoke(app, ["train", str(tiny_config), "-q", "--set", "train.seed=3", "--overwrite"])
    assert forced.exit_code == 0, forced.output
    assert weights.read_bytes() != before


def test_bad_data_leaves_no_run_directory(tmp_path: Path) -> None:
    (tmp_path / "series.csv").write_text("date,y\n2000-01-01,1\n2000-02-01,x\n")
    cfg = write_config(tmp_path / "c.yaml")
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2
    assert "row 2 (line 3), column 'y': 'x' is not a number" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_evaluation_metrics_match_a_hand_computation() -> None:
    import numpy as np

    from lstmcli.evaluate import Scores, forecast_set

    values = np.arange(1.0, 21.0)[:, None]  # y_t = t + 1
    origins = np.array([10, 11])
    forecast = values[origins[:, None] + np.arange(2)] + 1.0  # off by one everywhere
    res = Scores(1).add(*forecast_set(values, origins, 2, 4, forecast)).summary(["y"])
    assert res.model.MAE == pytest.approx(1.0)
    assert res.naive.MAE == pytest.approx(1.5)  # steps 1, 2 behind: (1+2)/2
    assert res.seasonal_naive.MAE == pytest.approx(4.0)  # one season of 4 back
    assert res.model.MASE == pytest.approx(0.25)
    assert res.model.sMAPE == pytest.approx(np.mean(200 / (2 * values[origins[:, None] + np.arange(2)] + 1)))


def test_smape_counts_zero_over_zero_as_zero() -> None:
    import numpy as np

    from lstmcli.evaluate import Scores, forecast_set

    values = np.zeros((12, 1))
    origins = np.array([8, 9])
    res = Scores(1).add(*forecast_set(values, origins, 2, 4, np.zeros((2, 2, 1)))).summary(["y"])
    assert res.model.sMAPE == 0.0 and res.model.MAE == 0.0 and res.model.MASE is None


def test_torch_threads_respected(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, ["train.threads=1", "train.epochs=1"])
    fit(Trainer(cfg, load_dataset(cfg.data)))
    assert torch.get_num_threads() == 1
