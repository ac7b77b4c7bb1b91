"""`lstm export RUN`: one ONNX graph that forecasts what `lstm predict` forecasts, or nothing written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.export import onnx as export_onnx
from lstmcli.export.onnx import run_onnx
from tests.cli.test_future_features import _promo_csv
from tests.conftest import one_line_error, write_config, write_csv

runner = CliRunner()


def _train(d: Path, name: str, csv: str = "series.csv", **sections: dict) -> Path:
    model = {"combine": "none", **sections.pop("model", {})}  # a graph holds the network alone
    cfg = write_config(d / f"{name}.yaml", csv=csv, output={"dir": str(d / name)}, model=model, **sections)
    result = runner.invoke(app, ["train", str(cfg), "-q"])
    assert result.exit_code == 0, result.output
    return d / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("export")
    write_csv(d / "series.csv", rows=80)
    _promo_csv(d / "promo.csv", rows=60, series=("a", "b"))
    return {
        "point": _train(d, "point"),
        "log": _train(d, "log", data={"transform": "log"}),
        # quantiles, known-future columns, a calendar input and two series with their own scalers
        "rich": _train(
            d,
            "rich",
            csv="promo.csv",
            model={"n": 4},
            data={"series_column": "series", "future_features": ["promo"], "calendar": ["month"]},
            train={"loss": "quantile", "epochs": 3},
        ),
    }


def _export(run: Path, out: Path, *args: str) -> object:
    return runner.invoke(app, ["export", str(run), "--out", str(out), *args])


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_the_graph_forecasts_what_predict_forecasts_from_raw_values(runs: dict[str, Path], tmp_path: Path) -> None:
    for name in ("point", "log"):
        run, out = runs[name], tmp_path / f"{name}.onnx"
        result = _export(run, out)
        assert result.exit_code == 0, result.output
        assert "same forecasts" in result.output
        props = _props(out)
        assert json.loads(props["columns"]) == ["y"] and props["lookback"] == "12" and props["horizon"] == "3"
        assert json.loads(props["outputs"]) == ["forecast", "lower_80", "upper_80", "lower_95", "upper_95"]
        csv = run.parent / "series.csv"
        predicted = runner.invoke(app, ["predict", str(run), "--data", str(csv), "--json", "--level", "80"])
        want = json.loads(predicted.stdout)
        values = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=1, dtype=np.float64)
        last = values[-12:].reshape(1, 12, 1)
        # batch 1 here, as many windows as the check ran at export: the batch dimension is dynamic
        forecast, lower80, upper80, *_ = run_onnx(out.read_bytes(), last, np.zeros(1, dtype=np.int64))
        np.testing.assert_allclose(forecast[0, :, 0], want["forecast"]["y"], rtol=1e-4)
        np.testing.assert_allclose(lower80[0, :, 0], want["intervals"]["80"]["lower"]["y"], rtol=1e-4)
        np.testing.assert_allclose(upper80[0, :, 0], want["intervals"]["80"]["upper"]["y"], rtol=1e-4)


def test_quantiles_future_inputs_calendar_and_series_pass_the_check(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rich.onnx"
    result = _export(runs["rich"], out, "--level", "90")
    assert result.exit_code == 0, result.output
    props = _props(out)
    assert json.loads(props["series"]) == ["a", "b"] and json.loads(props["future_columns"]) == [
        "promo",
        "month_sin",
        "month_cos",
    ]
    assert json.loads(props["generated_columns"]) == ["month_sin", "month_cos"]
    assert props["rows"] == str(12 + 3)  # L rows, then the H rows of known-future values
    assert json.loads(props["outputs"]) == ["forecast", "quantiles", "lower_90", "upper_90"]
    x = np.random.default_rng(0).uniform(9, 11, size=(5, 15, 4)).astype(np.float32)
    forecast, quantiles, lower, upper = run_onnx(out.read_bytes(), x, np.array([0, 1, 0, 1, 1]))
    assert forecast.shape == (5, 3, 1) and quantiles.shape == (5, 3, 1, 3)
    assert np.all(np.diff(quantiles, axis=-1) >= 0) and np.all(lower <= forecast) and np.all(forecast <= upper)


def test_a_graph_that_differs_from_predict_is_not_written(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous export")
    real = export_onnx.to_onnx

    def perturbed(deployed, example, metadata):  # noqa: ANN001, ANN202
        with torch.no_grad():
            deployed.model.head.bias += 1e-3  # a thousandth of a standard deviation
        return real(deployed, example, metadata)

    monkeypatch.setattr("lstmcli.commands.export.to_onnx", perturbed)
    result = _export(runs["point"], out)
    line = one_line_error(result, 1)
    assert "not written" in line and "differs from lstm predict" in line
    assert out.read_bytes() == b"the previous export"


def test_missing_onnxruntime_is_one_line_naming_the_extra(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    result = _export(runs["point"], tmp_path / "m.onnx")
    assert "pip install 'lstmcli[export]'" in one_line_error(result, 1)
    assert not (tmp_path / "m.onnx").exists()


def test_bad_export_requests_are_one_line(runs: dict[str, Path], tmp_path: Path) -> None:
    inside = _export(runs["point"], runs["point"] / "model.onnx")
    assert inside.exit_code == 2 and "inside the run directory" in one_line_error(inside)
    training_csv = runs["point"].parent / "series.csv"
    before = training_csv.read_bytes()
    over = _export(runs["point"], training_csv)  # the CSV the check reads, though --data was not given
    assert "is the input file" in one_line_error(over) and training_csv.read_bytes() == before
    level = _export(runs["point"], tmp_path / "m.onnx", "--level", "99")
    assert level.exit_code == 0, level.output  # every level 50..99 is calibrated
    missing = runner.invoke(app, ["export", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "run directory not found" in one_line_error(missing)


def test_default_out_is_beside_the_run(runs: dict[str, Path]) -> None:
    result = runner.invoke(app, ["export", str(runs["point"])])
    assert result.exit_code == 0, result.output
    assert (runs["point"].parent / "point.onnx").is_file()
