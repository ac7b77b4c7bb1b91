"""model.combine: the forecast averaged with the Theta method's, chosen on validation, the same in
train's scores, in predict's forecasts and backtests, and said in the summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.config import load_config
from lstmcli.data.dataset import load_dataset
from lstmcli.data.windows import Windows
from lstmcli.evaluate import ThetaCombination, choose_combination, combined
from lstmcli.model.theta import theta_forecast
from tests.conftest import one_line_error, write_config, write_csv

runner = CliRunner()
H = 3


def _train(dir_: Path, combine: str) -> tuple[Path, str]:
    dir_.mkdir(parents=True, exist_ok=True)
    write_csv(dir_ / "series.csv", rows=80)
    cfg = write_config(dir_ / "tiny.yaml", model={"combine": combine})
    result = runner.invoke(app, ["train", str(cfg)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return dir_ / "run", result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """The same network (same seed and data), with and without Theta."""
    root = tmp_path_factory.mktemp("combine")
    return {c: _train(root / c, c) for c in ("none", "theta")}


def _forecast(run: Path, steps: int) -> np.ndarray:
    data = str(run.parent / "series.csv")
    result = runner.invoke(app, ["predict", str(run), "--data", data, "--steps", str(steps), "--json"])
    assert result.exit_code == 0, result.output
    return np.array(json.loads(result.stdout)["forecast"]["y"])


@pytest.mark.parametrize("steps", [H, 2 * H + 1])
def test_a_combined_forecast_is_the_mean_of_the_networks_and_thetas(
    runs: dict[str, tuple[Path, str]], steps: int
) -> None:
    # beyond H too: the network's recursive forecast averaged with Theta's own K-step forecast
    alone, averaged = _forecast(runs["none"][0], steps), _forecast(runs["theta"][0], steps)
    with open(runs["theta"][0].parent / "series.csv", newline="") as fh:
        history = np.array([float(row["y"]) for row in csv.DictReader(fh)])
    theta = theta_forecast(history[None], steps, 12)[0]
    assert not np.allclose(alone, theta)
    assert np.allclose(averaged, (alone + theta) / 2, rtol=1e-5)


def test_metrics_json_says_the_forecast_was_combined_and_why(runs: dict[str, tuple[Path, str]]) -> None:
    none = json.loads((runs["none"][0] / "metrics.json").read_text())
    theta = json.loads((runs["theta"][0] / "metrics.json").read_text())
    assert "combination" not in none
    assert theta["combination"]["used"] is True and theta["combination"]["chosen_by"] == "config"
    assert theta["combination"]["windows"] == theta["windows"]["val"]
    assert theta["test"]["model"]["MAE"] != pytest.approx(none["test"]["model"]["MAE"])
    assert "averaged with the Theta method" in runs["theta"][1]
    assert "averaged with the Theta method" not in runs["none"][1]


@pytest.mark.parametrize("split", ["test", "val"])
def test_a_backtest_of_a_combined_run_reproduces_its_metrics(runs: dict[str, tuple[Path, str]], split: str) -> None:
    run = runs["theta"][0]
    args = ["predict", str(run), "--data", str(run.parent / "series.csv"), "--backtest", "--split", split, "--json"]
    result = runner.invoke(app, [*args, "--level", "80"])
    assert result.exit_code == 0, result.output
    got, saved = json.loads(result.stdout), json.loads((run / "metrics.json").read_text())
    for metric in ("MAE", "RMSE", "sMAPE", "MASE"):
        assert got["metrics"]["model"][metric] == pytest.approx(saved[split]["model"][metric], abs=1e-6)
    if split == "test":
        assert got["intervals"]["80"]["model"] == pytest.approx(saved["intervals"]["80"]["model"], abs=1e-6)


def test_inspect_of_a_combined_run_says_so(runs: dict[str, tuple[Path, str]]) -> None:
    result = runner.invoke(app, ["inspect", str(runs["theta"][0])], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "averaged with the Theta method" in result.output


def test_an_unknown_combine_is_one_line_naming_the_key(tmp_path: Path) -> None:
    write_csv(tmp_path / "series.csv")
    cfg = write_config(tmp_path / "tiny.yaml", model={"combine": "ets"})
    assert "model.combine: input should be 'auto', 'theta' or 'none'" in one_line_error(
        runner.invoke(app, ["train", str(cfg)])
    )


class _Ahead(nn.Module):
    """Forecasts a series whose period is the lookback exactly: the window's first H values, plus ``offset``."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :H, :1] + self.offset


@pytest.mark.parametrize(("offset", "used"), [(0.0, False), (10.0, True)])
def test_auto_combines_only_when_that_lowers_the_validation_error(tmp_path: Path, offset: float, used: bool) -> None:
    rows, period = 120, 12
    t = np.arange(rows)
    lines = [
        "date,y",
        *(f"{2000 + i},{10 + np.sin(2 * np.pi * i / period) + 0.5 * np.cos(4 * np.pi * i / period):.6f}" for i in t),
    ]
    (tmp_path / "series.csv").write_text("\n".join(lines) + "\n")
    cfg = load_config(write_config(tmp_path / "tiny.yaml", data={"season": 1, "lookback": period, "date_column": None}))
    ds = load_dataset(cfg.data)
    windows = Windows(torch.as_tensor(ds.scaled), period, H, 1)
    choice = choose_combination(_Ahead(offset), windows, ds, ThetaCombination.of(ds, H, 1))
    assert choice.used is used and choice.chosen_by == "validation"
    assert choice.windows == ds.counts()["val"]
    assert choice.network_mae is not None and choice.combined_mae is not None
    assert (choice.combined_mae < choice.network_mae) is used


def test_averaging_moves_every_quantile_by_half_thetas_distance_from_the_median() -> None:
    net = np.array([[[[1.0, 2.0, 4.0]]]])  # one window, step and target; quantiles 0.1, 0.5, 0.9
    out = combined(net, np.array([[[6.0]]]), median=1)
    assert out.tolist() == [[[[3.0, 4.0, 6.0]]]]
    assert combined(net[..., 1], np.array([[[np.nan]]])).tolist() == [[[2.0]]]  # no Theta: the network's


def test_exporting_a_combined_run_is_refused_in_one_line(runs: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    out = tmp_path / "theta.onnx"
    message = one_line_error(runner.invoke(app, ["export", str(runs["theta"][0]), "--out", str(out)]))
    assert "Theta" in message and "--set model.combine=none" in message
    assert not out.exists()
