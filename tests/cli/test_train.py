"""`lstm train` through the CLI: a complete run directory, divergence, devices, the torchrun environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lstmcli.cli import app
from tests.conftest import write_config

runner = CliRunner()


def test_an_unavailable_device_fails_before_the_run_directory_exists(tiny_config: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(app, ["train", str(tiny_config), "-q", "--set", "train.device=cuda"])
    assert result.exit_code == 2 and "train.device: cuda" in result.output
    assert not (tiny_config.parent / "run").exists()


def test_divergence_exits_1_with_a_hint(tmp_path: Path, tiny_csv: Path) -> None:
    # MSE: its gradient grows with the error, so the weights overflow (an MAE gradient is bounded)
    cfg = write_config(tmp_path / "c.yaml", train={"lr": 1e30, "grad_clip": None, "epochs": 5, "loss": "mse"})
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
    assert set(metrics["test"]["model"]) == {"MAE", "RMSE", "sMAPE", "MASE", "relMAE"}
    assert metrics["test"]["seasonal_naive"]["relMAE"] == 1.0 and metrics["format_version"] == 2
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


def test_an_unavailable_device_for_nproc_is_one_line_before_any_process_starts(tiny_config: Path) -> None:
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    result = CliRunner().invoke(app, ["train", str(tiny_config), "--nproc", "2", "--set", "train.device=mps"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "train.device: mps" in result.output


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WORLD_SIZE": "2"}, "RANK is not set"),
        ({"WORLD_SIZE": "2", "RANK": "x"}, "RANK='x' is not a whole number"),
        ({"WORLD_SIZE": "2", "RANK": "5"}, "do not fit WORLD_SIZE=2"),
    ],
)
def test_a_broken_torchrun_environment_is_one_line(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch, env: dict, expected: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["train", str(tiny_config), "-q"])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and expected in result.output


def test_the_summary_warns_when_the_model_loses_to_a_baseline(tiny_config: Path) -> None:
    # 3 epochs on 42 windows: the tiny network alone is still worse than copying last season.
    result = runner.invoke(app, ["train", str(tiny_config), "-q", "--set", "model.combine=none"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tiny_config.parent / "run" / "metrics.json").read_text())
    assert metrics["test"]["model"]["MAE"] > metrics["test"]["seasonal_naive"]["MAE"]
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert any("on the test split the LSTM's MAE" in w and "seasonal naive" in w for w in warnings), result.output
    assert any("42 training windows for 955 parameters" in w for w in warnings)
    hint = " ".join(result.output.split())
    assert "related series in one long file with data.series_column, for one model of them all" in hint
    assert "model.m=" not in hint  # m = 8 is below init's small-data size already
    # A model larger than init's size for so few windows is pointed back to it (and only then).
    from lstmcli.commands.train import losses_to_baselines
    from lstmcli.config import load_config
    from lstmcli.runs.schema import Metrics, read_model

    lost = read_model(tiny_config.parent / "run" / "metrics.json", Metrics)
    bigger = " ".join(losses_to_baselines(lost, load_config(tiny_config, ["model.m=32"])))
    assert "try init's size for so few windows (--set model.m=16)" in bigger


def test_no_warning_when_the_model_beats_the_baselines(tiny_config: Path) -> None:
    result = runner.invoke(app, ["train", str(tiny_config), "-q", "--set", "train.epochs=60", "--set", "train.lr=0.01"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tiny_config.parent / "run" / "metrics.json").read_text())
    beats = all(
        metrics[s]["model"]["MAE"] < metrics[s][b]["MAE"] for s in ("val", "test") for b in ("naive", "seasonal_naive")
    )
    assert beats, metrics
    assert "warning:" not in result.output
