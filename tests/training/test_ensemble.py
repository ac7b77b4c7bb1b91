"""train.ensemble: K members, each trained as it would be alone, forecasting their mean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.config import load_config
from lstmcli.data.dataset import load_dataset
from lstmcli.model.forecaster import LSTMForecaster
from lstmcli.training.trainer import Trainer, fit
from tests.conftest import assert_same_tensors, write_config

runner = CliRunner()


@pytest.mark.parametrize("quantiles", [None, [0.1, 0.5, 0.9]])
def test_the_forecast_is_the_mean_of_the_members_and_the_first_member_is_a_single_model(
    quantiles: list[float] | None,
) -> None:
    kwargs = {"n": 2, "m": 6, "layers": 2, "horizon": 4, "n_targets": 1, "lookback": 10, "quantiles": quantiles}
    torch.manual_seed(0)
    single = LSTMForecaster(**kwargs)  # type: ignore[arg-type]
    torch.manual_seed(0)
    three = LSTMForecaster(**kwargs, members=3)  # type: ignore[arg-type]
    assert three.members == 3 and single.members == 1
    # The first member is built as a single model is: a one-member ensemble is the model of before.
    first = {k: v for k, v in three.state_dict().items() if not k.startswith("others.")}
    assert_same_tensors(single.state_dict(), first)
    assert all(not k.startswith("others.") for k in single.state_dict())
    x = torch.randn(5, 10, 2)
    each = three(x, quantiles=True, members=True)  # (K, B, H, k, Q)
    assert each.shape == (3, 5, 4, 1, len(quantiles or [0.5]))
    assert torch.equal(each[0], single(x, quantiles=True))
    assert not torch.equal(each[0], each[1])  # their own initial weights
    assert torch.allclose(three(x, quantiles=True), each.mean(dim=0))
    assert torch.allclose(three(x), each.mean(dim=0)[..., three.median])
    assert (three(x, quantiles=True).diff(dim=-1) >= 0).all()  # the mean of ordered quantiles is ordered


def test_each_member_trains_exactly_as_it_would_alone(tiny_config: Path) -> None:
    # No early stop, no schedule, no dropout: nothing the members share but the batches.
    over = ["train.epochs=4", "train.patience=50", "train.schedule=none", "train.grad_clip=0.05"]
    cfg1 = load_config(tiny_config, over)
    cfg3 = load_config(tiny_config, [*over, "train.ensemble=3"])
    ds = load_dataset(cfg1.data)
    alone = fit(Trainer(cfg1, ds)).model
    ensemble = fit(Trainer(cfg3, ds)).model
    first = {k: v for k, v in ensemble.state_dict().items() if not k.startswith("others.")}
    # Bit for bit, with a clip small enough to act: each member's gradient is clipped by its own norm.
    assert_same_tensors(alone.state_dict(), first)
    assert cfg3.parameters == 3 * cfg1.parameters == sum(p.numel() for p in ensemble.parameters())


def test_an_ensemble_run_trains_predicts_and_shows_its_members(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml", train={"ensemble": 3})
    result = runner.invoke(app, ["train", str(config), "-q"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["model"]["MAE"] > 0
    forecast = runner.invoke(app, ["predict", str(run), "--data", str(tiny_csv), "--json"])
    assert forecast.exit_code == 0, forecast.output
    backtest = runner.invoke(app, ["predict", str(run), "--data", str(tiny_csv), "--backtest", "--json"])
    assert backtest.exit_code == 0, backtest.output
    got = json.loads(backtest.stdout)["metrics"]["model"]["MAE"]
    assert got == pytest.approx(metrics["test"]["model"]["MAE"], rel=1e-6)
    shown = runner.invoke(app, ["inspect", str(run)])
    assert shown.exit_code == 0, shown.output
    assert "An ensemble of 3 members" in shown.stdout and "3 members;" in shown.stdout
