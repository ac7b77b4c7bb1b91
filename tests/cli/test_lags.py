"""Lagged targets (data.lags): a longer season than the lookback reaches the model as known-future
inputs, its target's value that many steps earlier, built alike in training and in predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.config import load_config
from lstmcli.data.dataset import lagged, load_dataset
from lstmcli.model.forecaster import LSTMForecaster
from tests.conftest import one_line_error, write_config

runner = CliRunner()
PERIOD = 20  # the long season: five times the lookback


def _periodic_csv(path: Path, rows: int = 300) -> Path:
    """A daily series repeating one random pattern every PERIOD days, plus a little noise: only a
    model that sees PERIOD steps back (the lookback is 4) can copy the pattern."""
    rng = np.random.default_rng(3)
    pattern = rng.normal(0, 2, PERIOD)
    days = np.datetime64("2001-01-01") + np.arange(rows)
    lines = ["date,y"] + [f"{d},{10 + pattern[t % PERIOD] + rng.normal(0, 0.1):.4f}" for t, d in enumerate(days)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(tmp_path: Path, name: str, lags: list[int]) -> Path:
    return write_config(
        tmp_path / f"{name}.yaml",
        csv="periodic.csv",
        model={"n": 1 + len(lags), "m": 16, "layers": 1},
        data={"lookback": 4, "horizon": 3, "season": [7, PERIOD], "lags": lags},
        train={"epochs": 30, "batch_size": 16, "patience": 30},
        output={"dir": str(tmp_path / name)},
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("lags")
    _periodic_csv(d / "periodic.csv")
    out = {}
    for name, lags in (("lagged", [PERIOD]), ("plain", [])):
        result = runner.invoke(app, ["train", str(_config(d, name, lags)), "-q"])
        assert result.exit_code == 0, result.output
        out[name] = d / name
    return out


def _test_mae(run: Path) -> float:
    return float(json.loads((run / "metrics.json").read_text())["test"]["model"]["MAE"])


def test_a_lag_of_the_long_season_lets_a_short_lookback_forecast_it(runs: dict[str, Path]) -> None:
    lagged_mae, plain_mae = _test_mae(runs["lagged"]), _test_mae(runs["plain"])
    assert lagged_mae < 0.6 * plain_mae, (lagged_mae, plain_mae)
    longer = json.loads((runs["lagged"] / "metrics.json").read_text())["test"]["longer_seasons"][str(PERIOD)]
    assert lagged_mae < 1.5 * longer["MAE"]  # about as good as copying the period before, which it starts from


def test_a_backtest_of_a_lag_run_reproduces_metrics_json(runs: dict[str, Path]) -> None:
    run = runs["lagged"]
    args = ["predict", str(run), "--data", str(run.parent / "periodic.csv"), "--backtest", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    stored = json.loads((run / "metrics.json").read_text())["test"]
    assert json.loads(result.output)["metrics"]["model"] == stored["model"]


def test_predict_builds_the_lags_from_the_history_as_training_does(runs: dict[str, Path], tmp_path: Path) -> None:
    """Forecasting from the first rows of the file gives the backtest's forecast at that origin."""
    run, data = runs["lagged"], runs["lagged"].parent / "periodic.csv"
    lines = data.read_text().splitlines()
    origin = 250
    head = tmp_path / "head.csv"
    head.write_text("\n".join(lines[: origin + 1]) + "\n")  # the header and rows 0..origin-1
    predicted = runner.invoke(app, ["predict", str(run), "--data", str(head), "--json"])
    assert predicted.exit_code == 0, predicted.output
    out = tmp_path / "bt.csv"
    args = ["predict", str(run), "--data", str(data), "--backtest", "--split", "all", "--out", str(out), "--json"]
    assert runner.invoke(app, args).exit_code == 0
    rows = [r.split(",") for r in out.read_text().splitlines()]
    assert rows[0][:4] == ["origin_date", "h", "date", "y"]
    at = [float(r[3]) for r in rows[1:] if r[0] == lines[origin + 1].split(",")[0]]  # the origin's date
    assert len(at) == 3
    assert json.loads(predicted.output)["forecast"]["y"] == pytest.approx(at, rel=1e-6)  # float32, batched or not


def test_a_forecast_beyond_the_lag_feeds_its_own_steps_back_as_lags(runs: dict[str, Path]) -> None:
    run, data = runs["lagged"], str(runs["lagged"].parent / "periodic.csv")
    long = runner.invoke(app, ["predict", str(run), "--data", data, "--steps", str(2 * PERIOD), "--json"])
    short = runner.invoke(app, ["predict", str(run), "--data", data, "--steps", "3", "--json"])
    assert long.exit_code == 0 and short.exit_code == 0, long.output + short.output
    values = json.loads(long.output)["forecast"]["y"]
    assert len(values) == 2 * PERIOD and np.isfinite(values).all()
    assert values[:3] == json.loads(short.output)["forecast"]["y"]
    # the pattern repeats: steps one period apart are forecast alike
    assert np.abs(np.subtract(values[PERIOD:], values[:PERIOD])).mean() < 0.5


def test_predict_refuses_a_future_file_for_lags_it_makes_itself(runs: dict[str, Path], tmp_path: Path) -> None:
    future = tmp_path / "f.csv"
    future.write_text("date,x\n2001-11-01,1\n")
    args = ["predict", str(runs["lagged"]), "--data", str(runs["lagged"].parent / "periodic.csv")]
    text = one_line_error(runner.invoke(app, [*args, "--future", str(future)]))
    assert "lag columns come from the series itself" in text


def test_a_lag_shorter_than_the_horizon_is_refused(tmp_path: Path) -> None:
    _periodic_csv(tmp_path / "periodic.csv")
    cfg = write_config(tmp_path / "c.yaml", csv="periodic.csv", model={"n": 2}, data={"horizon": 3, "lags": [2]})
    text = one_line_error(runner.invoke(app, ["train", str(cfg)]))
    assert "data" in text and "lags: 2 is shorter than the horizon H = 3" in text


def test_the_lag_column_is_the_target_shifted_within_each_series_and_scaled_alike(tmp_path: Path) -> None:
    values = np.arange(10.0)
    assert lagged(values, 3, [(None, 0, 4), (None, 4, 10)]).tolist() == [0, 0, 0, 0, 4, 4, 4, 4, 5, 6]
    _periodic_csv(tmp_path / "periodic.csv")
    cfg = load_config(_config(tmp_path, "c", [PERIOD]))
    ds = load_dataset(cfg.data)
    assert cfg.data.columns == ["y", f"y_lag{PERIOD}"]
    scaled = ds.scaled
    np.testing.assert_array_equal(scaled[PERIOD:, 1], scaled[:-PERIOD, 0])
    assert (scaled[:PERIOD, 1] == scaled[0, 0]).all()


@pytest.mark.parametrize("normalize", ["last", "mean", "season", "none"])
@pytest.mark.parametrize("quantiles", [None, [0.1, 0.5, 0.9]])
def test_an_untrained_lag_model_reads_the_lag_as_its_forecast(quantiles: list[float] | None, normalize: str) -> None:
    torch.manual_seed(0)
    L, H = 4, 3
    model = LSTMForecaster(
        n=2, m=8, layers=1, horizon=H, n_targets=1, lookback=L, window_scale=True, quantiles=quantiles,
        future=[1], lag_targets=[0], normalize=normalize, season=2,
    )  # fmt: skip
    with torch.no_grad():  # what the head makes of y_t, random at first, aside: the lags' part alone
        model.head.weight[:, : model.m] = 0.0
        model.head.bias.zero_()
    x = torch.randn(5, L + H, 2)
    x[:, L:, 0] = 0.0  # the future targets never reach the model
    expected = x[:, L:, 1:]  # the lag column's values for the steps ahead
    torch.testing.assert_close(model(x), expected)


def test_a_model_that_loses_to_a_longer_season_is_told_to_read_it_as_a_lag(runs: dict[str, Path]) -> None:
    from lstmcli.commands.train import losses_to_baselines
    from lstmcli.runs.run import load_run

    run = load_run(runs["plain"])
    metrics = run.metrics()
    assert metrics is not None
    hints = losses_to_baselines(metrics, run.cfg)
    assert any(f"seasonal naive (s = {PERIOD})" in h for h in hints), hints
    assert hints[-1].endswith(f"--set 'data.lags=[{PERIOD}]' --set model.n=2"), hints


def test_predict_refuses_a_file_shorter_than_the_longest_lag(runs: dict[str, Path], tmp_path: Path) -> None:
    data = runs["lagged"].parent / "periodic.csv"
    short = tmp_path / "short.csv"
    short.write_text("\n".join(data.read_text().splitlines()[:PERIOD]) + "\n")  # the header and PERIOD - 1 rows
    text = one_line_error(runner.invoke(app, ["predict", str(runs["lagged"]), "--data", str(short)]))
    assert f"needs at least {PERIOD} rows (its longest lag, data.lags)" in text
