"""`lstm inspect RUN --trace CSV` on tiny trained runs: the gate tables, the JSON, the plot, the
window choice and its errors, multi-series and feature runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmcli.cli import app
from tests.cli.test_multiseries import write_long
from tests.conftest import one_line_error, snapshot, write_config, write_csv

runner = CliRunner()
ROWS, L = 60, 12


def _train(dir_: Path, csv: str = "series.csv", **sections: dict) -> Path:
    dir_.mkdir(parents=True, exist_ok=True)
    cfg = write_config(dir_ / "tiny.yaml", csv=csv, **{"train": {"epochs": 1, "device": "cpu"}, **sections})
    result = runner.invoke(app, ["train", str(cfg), "-q"])
    assert result.exit_code == 0, result.output
    return dir_ / "run"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dir_ = tmp_path_factory.mktemp("trace")
    write_csv(dir_ / "series.csv", rows=ROWS)
    return _train(dir_, model={"n": 1, "m": 6, "layers": 2})


def _trace(run: Path, *args: str | Path) -> object:
    return runner.invoke(app, ["inspect", str(run), "--trace", str(run.parent / "series.csv"), *map(str, args)])


def test_trace_prints_the_gate_tables_and_writes_a_heat_map(run_dir: Path, tmp_path: Path) -> None:
    plot = tmp_path / "trace.png"
    result = _trace(run_dir, "--plot", plot)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # as read, whatever the terminal's width
    assert "Layer 1: gate activations over 12 steps × 6 units" in out and "Layer 2: gate activations" in out
    assert "forget-gate memory" in out and "cell state ‖c_t‖" in out and "dead units" in out
    assert "→ same function" in out
    assert (
        f"window {ROWS - L} (windows 0…{ROWS - L}; the last, which the next forecast reads)" in out
    )  # default: the window the next forecast reads
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trace_json_keys(run_dir: Path) -> None:
    result = _trace(run_dir, "--json")
    assert result.exit_code == 0, result.output
    trace = json.loads(result.output)["trace"]
    assert set(trace) == {"window", "lookback", "season", "check", "layers"}
    assert trace["window"]["index"] == ROWS - L and trace["window"]["last_row"] == ROWS
    assert set(trace["check"]) == {"max_abs_diff", "step_max_abs_diff", "tolerance", "same_function", "window_agrees"}
    assert trace["check"]["same_function"] is True
    layer = trace["layers"][0]
    assert set(layer) == {"layer", "gates", "units", "cell_norm", "dead_units", "most_active", "least_active"}
    assert list(layer["gates"]) == ["f", "i", "g", "o"]
    assert set(layer["gates"]["f"]) == {"mean", "low", "high", "saturated"}
    assert len(layer["units"]) == 6 and len(layer["cell_norm"]) == L
    assert set(layer["units"][0]) == {
        *("unit", "mean", "saturated", "w_norm", "b", "memory_span"),
        *("y_std", "y_range", "c_max", "dead"),
    }


def test_window_and_from_pick_the_traced_window(run_dir: Path) -> None:
    first = json.loads(_trace(run_dir, "--window", "0", "--json").output)["trace"]["window"]
    assert (first["index"], first["first_row"], first["first_date"]) == (0, 1, "2000-01-01")
    dated = json.loads(_trace(run_dir, "--from", "2001-02-15", "--json").output)["trace"]["window"]
    assert (dated["index"], dated["first_date"], dated["last_date"]) == (14, "2001-03-01", "2002-02-01")
    many = json.loads(_trace(run_dir, "--windows", "5", "--json").output)["trace"]
    assert many["window"]["traced"] == 5 and many["window"]["index"] == ROWS - L


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--window", "49"], f"has {ROWS - L + 1} full window(s) of L = {L} rows, numbered 0 to {ROWS - L}"),
        (["--from", "2010-01-01"], "a full window of L = 12 rows starts between 2000-01-01 and 2004-01-01"),
        (["--from", "soon"], "--from 'soon': expected an ISO date"),
        (["--windows", "50"], "--windows 50: only 49 window(s)"),
        (["--window", "3", "--from", "2001-01-01"], "both pick the window; pass one"),
    ],
)
def test_a_bad_window_is_one_line_naming_the_range(run_dir: Path, args: list[str], says: str) -> None:
    assert says in one_line_error(_trace(run_dir, *args))


def test_trace_options_need_trace(run_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["inspect", str(run_dir), "--plot", str(tmp_path / "p.png")])
    assert "--plot applies to --trace CSV" in one_line_error(result)
    config = run_dir.parent / "tiny.yaml"
    result = runner.invoke(app, ["inspect", str(config), "--trace", str(run_dir.parent / "series.csv")])
    assert "a trace needs a trained run's weights" in one_line_error(result)


def test_a_failed_trace_check_exits_1_and_writes_no_plot(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lstmcli.model import gate_trace

    monkeypatch.setattr(gate_trace, "TOLERANCE", 0.0)  # float32 rounding alone now fails the check
    (tmp_path / "trace.png").write_bytes(b"old")
    before = snapshot(tmp_path)
    result = _trace(run_dir, "--plot", tmp_path / "trace.png")
    assert result.exit_code == 1, result.output
    assert "MISMATCH" in result.output and "plot not written" in " ".join(result.output.split())
    assert snapshot(tmp_path) == before


def test_trace_of_a_feature_run(tmp_path: Path) -> None:
    write_csv(tmp_path / "series.csv", rows=ROWS, columns=("y", "x"))
    run = _train(tmp_path, model={"n": 2, "m": 4, "layers": 1}, data={"features": ["x"]})
    plot = tmp_path / "trace.png"
    result = _trace(run, "--plot", plot, "--units", "--top", "2")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "the 2 most active units" in out and "the 2 least active units" in out
    assert plot.exists()


def test_trace_of_a_multi_series_run_needs_series(tmp_path: Path) -> None:
    write_long(tmp_path / "long.csv", {"a": 50, "b": 40})
    run = _train(tmp_path, csv="long.csv", data={"series_column": "series"}, model={"n": 1, "m": 4, "layers": 1})
    args = ["inspect", str(run), "--trace", str(tmp_path / "long.csv")]
    assert "holds 2 series (a, b); pick the one to trace with --series" in one_line_error(runner.invoke(app, args))
    result = runner.invoke(app, [*args, "--series", "b", "--json"])
    assert result.exit_code == 0, result.output
    window = json.loads(result.output)["trace"]["window"]
    assert window["series"] == "b" and window["last_row"] == 40
