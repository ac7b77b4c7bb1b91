"""`lstm predict` through the CLI on tiny runs: forecasts, backtests, plots, and the errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmcli.cli import app
from tests.conftest import one_line_error, write_config, write_csv

runner = CliRunner()
ROWS, L, H = 80, 12, 3


def _train(dir_: Path, columns: tuple[str, ...] = ("y",), **sections: dict) -> Path:
    dir_.mkdir(parents=True, exist_ok=True)
    write_csv(dir_ / "series.csv", rows=ROWS, columns=columns)
    cfg = write_config(dir_ / "tiny.yaml", **sections)
    result = runner.invoke(app, ["train", str(cfg), "-q"])
    assert result.exit_code == 0, result.output
    return dir_ / "run"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("uni"))


@pytest.fixture(scope="module")
def network_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The network alone (model.combine: none): its forecasts are its own model calls."""
    return _train(tmp_path_factory.mktemp("net"), model={"combine": "none"})


@pytest.fixture(scope="module")
def feature_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Target y with one covariate x (n = 2)."""
    return _train(tmp_path_factory.mktemp("feat"), ("y", "x"), model={"n": 2}, data={"features": ["x"]})


def _csv_of(run: Path) -> Path:
    return run.parent / "series.csv"


def _invoke(*args: str | Path) -> object:
    return runner.invoke(app, ["predict", *map(str, args)])


def _read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_out_writes_h_rows_whose_dates_continue_the_series(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.csv"
    result = _invoke(run_dir, "--data", _csv_of(run_dir), "--out", out)
    assert result.exit_code == 0, result.output
    rows = _read_rows(out)
    assert rows[0] == ["date", "y"]
    # 80 monthly rows from 2000-01 end at 2006-08; the forecast continues month by month.
    assert [r[0] for r in rows[1:]] == ["2006-09-01", "2006-10-01", "2006-11-01"]
    values = [float(r[1]) for r in rows[1:]]
    assert all(np.isfinite(values)) and len(values) == H
    assert "2006-09-01" in result.output  # the rich table


def test_json_forecast_ignores_column_order_and_extra_columns(run_dir: Path, tmp_path: Path) -> None:
    base = json.loads(_invoke(run_dir, "--data", _csv_of(run_dir), "--json").stdout)
    rows = _read_rows(_csv_of(run_dir))
    shuffled = tmp_path / "shuffled.csv"
    with open(shuffled, "w", newline="") as fh:
        w = csv.writer(fh)
        for r in rows:
            w.writerow([r[1], "extra" if r is rows[0] else "1", r[0]])  # y, extra, date
    other = json.loads(_invoke(run_dir, "--data", shuffled, "--json").stdout)
    assert other["forecast"] == base["forecast"] and other["index"] == base["index"]
    assert base["index"] == ["2006-09-01", "2006-10-01", "2006-11-01"] and base["recursive"] is False


@pytest.fixture(scope="module")
def refit_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("refit"), train={"refit": True})


@pytest.mark.parametrize(("split", "refit"), [("test", True), ("test", False), ("val", False)])
def test_backtest_over_split_origins_matches_metrics_json(
    run_dir: Path, refit_run: Path, split: str, refit: bool
) -> None:
    run = refit_run if refit else run_dir
    result = _invoke(run, "--data", _csv_of(run), "--backtest", "--split", split, "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    saved = json.loads((run / "metrics.json").read_text())
    assert got["windows"] == saved["windows"][split]
    assert "stored" in got["split_source"] and "in-sample" not in got["split_source"]
    for forecaster in ("model", "naive", "seasonal_naive"):
        for metric in ("MAE", "RMSE", "sMAPE", "MASE", "relMAE"):
            assert abs(got["metrics"][forecaster][metric] - saved[split][forecaster][metric]) <= 1e-6


def test_a_backtest_of_a_refit_run_on_validation_says_those_windows_are_in_sample(refit_run: Path) -> None:
    """The saved model of a refit run trained on the validation windows; metrics.json's validation
    scores are the early-stopped model's, which never saw them."""
    result = _invoke(refit_run, "--data", _csv_of(refit_run), "--backtest", "--split", "val", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    saved = json.loads((refit_run / "metrics.json").read_text())
    assert saved["refit_epochs"] > 0 and "in-sample" in got["split_source"]
    assert got["metrics"]["model"]["MAE"] != pytest.approx(saved["val"]["model"]["MAE"])


def test_backtest_all_origins_and_out_csv(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bt.csv"
    result = _invoke(run_dir, "--data", _csv_of(run_dir), "--backtest", "--split", "all", "--json", "--out", out)
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["windows"] == ROWS - L - H + 1  # every origin o with L rows before and H after
    rows = _read_rows(out)
    assert rows[0] == ["origin_date", "h", "date", "y", "y_actual"]
    assert len(rows) - 1 == got["windows"] * H
    forecast = np.array([float(r[3]) for r in rows[1:]])
    actual = np.array([float(r[4]) for r in rows[1:]])
    assert np.mean(np.abs(forecast - actual)) == pytest.approx(got["metrics"]["model"]["MAE"], rel=1e-9)


def test_backtest_scores_the_test_split_by_default_beside_the_baselines(run_dir: Path) -> None:
    """Training windows never enter a backtest's score unless --split all asks for them."""
    result = _invoke(run_dir, "--data", _csv_of(run_dir), "--backtest")
    assert result.exit_code == 0, result.output
    assert "LSTM" in result.output and "seasonal naive" in result.output and "stored test split" in result.output
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert plural_windows(saved["windows"]["test"]) in result.output


@pytest.mark.parametrize("backtest", [False, True])
def test_plot_writes_a_png(run_dir: Path, tmp_path: Path, backtest: bool) -> None:
    png = tmp_path / "p.png"
    result = _invoke(run_dir, "--data", _csv_of(run_dir), "--plot", png, *(["--backtest"] if backtest else []))
    assert result.exit_code == 0, result.output
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def plural_windows(count: int) -> str:
    return f"{count:,} window{'' if count == 1 else 's'}"


def test_missing_weight_file_is_one_line_exit_2(run_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    (broken / "model.safetensors").unlink()
    text = one_line_error(_invoke(broken, "--data", _csv_of(run_dir)))
    assert "model.safetensors is missing" in text


def test_mismatched_weight_file_names_the_tensor(run_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import save as weights_bytes

    from lstmcli.model.forecaster import LSTMForecaster

    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    other = LSTMForecaster(n=1, m=6, layers=2, horizon=H, n_targets=1)  # the run has m = 8
    (broken / "model.safetensors").write_bytes(weights_bytes(other.state_dict()))
    text = one_line_error(_invoke(broken, "--data", _csv_of(run_dir)))
    assert "has shape" in text and "lstm.weight_ih_l0" in text


def test_csv_lacking_a_column_names_it(feature_run: Path, tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", columns=("y", "z"))
    text = one_line_error(_invoke(feature_run, "--data", bad))
    assert "lacks column(s) 'x'" in text and "bad.csv" in text


def test_csv_shorter_than_lookback(run_dir: Path, tmp_path: Path) -> None:
    short = write_csv(tmp_path / "short.csv", rows=L - 1)
    text = one_line_error(_invoke(run_dir, "--data", short))
    assert f"has {L - 1} row(s)" in text and f"L = {L}" in text


def test_steps_beyond_h_feed_forecasts_back_in(network_run: Path, tmp_path: Path) -> None:
    # (a run averaged with Theta averages this with Theta's K-step forecast: tests/cli/test_combine.py)
    run_dir = network_run
    data = _csv_of(run_dir)
    got = json.loads(_invoke(run_dir, "--data", data, "--steps", "7", "--json").stdout)
    assert got["recursive"] is True and got["steps"] == 7
    assert got["index"][0] == "2006-09-01" and got["index"][-1] == "2007-03-01"
    first = json.loads(_invoke(run_dir, "--data", data, "--json").stdout)
    y = got["forecast"]["y"]
    assert y[:H] == pytest.approx(first["forecast"]["y"], rel=1e-12)
    # Steps 4..6 are what the run forecasts once steps 1..3 are appended to the data.
    extended = tmp_path / "extended.csv"
    text = data.read_text().rstrip("\n").splitlines()
    extended.write_text(
        "\n".join([*text, *(f"{d},{v!r}" for d, v in zip(got["index"][:H], y[:H], strict=True))]) + "\n"
    )
    second = json.loads(_invoke(run_dir, "--data", extended, "--json").stdout)
    assert y[H : 2 * H] == pytest.approx(second["forecast"]["y"], rel=1e-5)


def test_steps_with_features_need_future_values(feature_run: Path, tmp_path: Path) -> None:
    data = _csv_of(feature_run)
    text = one_line_error(_invoke(feature_run, "--data", data, "--steps", "7"))
    assert "--future" in text and "x" in text
    # Steps 1..3 come from the data; calls 2 and 3 need x for the 6 steps after it.
    future = tmp_path / "future.csv"
    future.write_text("date,x\n" + "".join(f"2006-{m:02d}-01,{0.1 * m}\n" for m in range(9, 13)))
    text = one_line_error(_invoke(feature_run, "--data", data, "--steps", "7", "--future", future))
    assert "has 4 row(s)" in text and "6 step(s)" in text
    future.write_text(
        "date,x\n"
        + "".join(
            f"{d},{0.1 * i}\n"
            for i, d in enumerate(["2006-09-01", "2006-10-01", "2006-11-01", "2006-12-01", "2007-01-01", "2007-02-01"])
        )
    )
    result = _invoke(feature_run, "--data", data, "--steps", "7", "--future", future, "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert len(got["forecast"]["y"]) == 7 and got["index"][-1] == "2007-03-01"
    # Future values that do not start right after the data are refused.
    late = tmp_path / "late.csv"
    late.write_text("date,x\n" + "".join(f"2007-{m:02d}-01,1\n" for m in range(1, 8)))
    assert "must start at 2006-09-01" in one_line_error(
        _invoke(feature_run, "--data", data, "--steps", "7", "--future", late)
    )


def test_steps_within_h_need_no_future(feature_run: Path) -> None:
    result = _invoke(feature_run, "--data", _csv_of(feature_run), "--steps", "2", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["forecast"]["y"]) == 2


def test_split_without_backtest_is_a_usage_error(run_dir: Path) -> None:
    result = _invoke(run_dir, "--data", _csv_of(run_dir), "--split", "test")
    assert result.exit_code == 2 and "--backtest" in result.output


def test_not_a_run_directory(tmp_path: Path, tiny_csv: Path) -> None:
    text = one_line_error(_invoke(tmp_path / "nope", "--data", tiny_csv))
    assert "run directory not found" in text


def test_inspect_run_shows_learned_gates_and_metrics(run_dir: Path) -> None:
    from lstmcli.model.gates import gate_view
    from lstmcli.runs.run import load_run

    result = runner.invoke(app, ["inspect", str(run_dir)])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())  # the terminal is 80 columns wide: lines wrap
    for text in ("learned forget-gate bias b_f", "Test metrics of this run", "best epoch", "|W_x|", "validation ("):
        assert text in flat, text
    facts = json.loads(runner.invoke(app, ["inspect", str(run_dir), "--json"]).stdout)
    b_f = gate_view(load_run(run_dir).model.lstm)[0].b["f"].double()
    assert facts["layers"][0]["forget_bias"]["mean"] == pytest.approx(float(b_f.mean()))
    assert facts["layers"][0]["gates"]["f"]["stats"]["b_max"] == pytest.approx(float(b_f.max()))
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert facts["metrics"]["test"] == saved["test"]
    assert facts["run"]["best_epoch"] == saved["best_epoch"] and facts["run"]["target"] == ["y"]


def test_scores_summed_in_chunks_match_metrics_json_exactly_and_the_unchunked_means(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training and backtests score a split chunk by chunk (never holding all its forecasts); with
    chunks of 3 windows the tiny run's splits span several, and the two agree to the bit."""
    from lstmcli import evaluate

    monkeypatch.setattr(evaluate, "SCORE_CHUNK", 3)
    run = _train(tmp_path)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["windows"]["test"] > 2 * 3
    chunked = json.loads(_invoke(run, "--data", _csv_of(run), "--backtest", "--split", "test", "--json").stdout)
    assert chunked["metrics"] == saved["test"]
    monkeypatch.setattr(evaluate, "SCORE_CHUNK", 1 << 30)
    whole = json.loads(_invoke(run, "--data", _csv_of(run), "--backtest", "--split", "test", "--json").stdout)
    for forecaster, row in whole["metrics"].items():
        for metric, value in row.items():
            assert chunked["metrics"][forecaster][metric] == pytest.approx(value, rel=1e-12)


def test_a_non_positive_value_in_a_log_run_is_one_line(tmp_path: Path) -> None:
    run = _train(tmp_path / "log", data={"transform": "log"})
    lines = _csv_of(run).read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ",0"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    text = one_line_error(_invoke(run, "--data", bad))
    assert "row 5, column 'y': 0 is not positive, but the run models this column as log(x)" in text


def test_writing_into_a_missing_folder_is_one_line(tiny_config: Path, tiny_csv: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["train", str(tiny_config), "-q"]).exit_code == 0
    result = runner.invoke(
        app, ["predict", str(tmp_path / "run"), "--data", str(tiny_csv), "--out", str(tmp_path / "no" / "f.csv")]
    )
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "cannot write" in result.output


def test_long_format_forecast_quotes_series_ids(tmp_path: Path) -> None:
    lines = ["series,date,y"]
    for sid in ("Smith, J", "plain"):
        for t in range(60):
            lines.append(
                f'"{sid}",{np.datetime64("2000-01", "M") + np.timedelta64(t, "M")}-01,{10 + t % 12 + (5 if sid == "plain" else 0)}'
            )
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    cfg = write_config(tmp_path / "c.yaml", csv="long.csv", data={"series_column": "series"})
    assert runner.invoke(app, ["train", str(cfg), "-q"]).exit_code == 0
    out = tmp_path / "f.csv"
    result = runner.invoke(
        app, ["predict", str(tmp_path / "run"), "--data", str(tmp_path / "long.csv"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["series", "date", "y"] and rows[1][0] == "Smith, J" and all(len(r) == 3 for r in rows)


def test_a_file_given_as_run_says_so(tiny_csv: Path) -> None:
    result = runner.invoke(app, ["predict", str(tiny_csv), "--data", str(tiny_csv)])
    assert result.exit_code == 2 and "is a file, not a run directory" in result.output
    result = runner.invoke(app, ["inspect", str(tiny_csv)])
    assert result.exit_code == 2 and "not a config" in result.output
