"""`lstm inspect` and `lstm config` through the CLI: the gate tables, the proof, JSON, the entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmcli.cli import app
from tests.conftest import ROOT, write_config

runner = CliRunner()


def test_inspect_tables_for_shipped_config() -> None:
    result = runner.invoke(app, ["inspect", str(ROOT / "configs" / "airpassengers.yaml")])
    assert result.exit_code == 0, result.output
    assert "forget gate" in result.output and "weight_ih_l0" in result.output
    assert "[x_t, y_(t-1)]" in result.output
    assert "Total parameters" in result.output


def test_inspect_json_shapes_and_total(tiny_config: Path) -> None:
    import torch

    from lstmcli.config import load_config
    from lstmcli.model.forecaster import LSTMForecaster

    result = runner.invoke(app, ["inspect", str(tiny_config), "--json", "--set", "model.m=6"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    n, m = facts["n"], facts["m"]
    assert (n, m) == (1, 6)
    assert facts["layers"][0]["gates"]["f"]["W"] == [m, n + m]
    assert facts["layers"][1]["gates"]["f"]["W"] == [m, 2 * m]
    torch.manual_seed(0)
    model = LSTMForecaster.from_config(load_config(tiny_config, ["model.m=6"]))
    assert facts["total_parameters"] == sum(p.numel() for p in model.parameters())


def test_inspect_check_passes_and_reports_difference(tiny_config: Path) -> None:
    result = runner.invoke(app, ["inspect", str(tiny_config), "--check", "--json"])
    assert result.exit_code == 0, result.output
    check = json.loads(result.output)["check"]
    assert check["max_abs_diff"] < 1e-10


@pytest.mark.parametrize(
    ("sets", "said"),
    [
        (
            ["data.lookback=13", "model.drift=true"],
            "each window's seasonal naive forecast (the value one season before), continued by the window's "
            "trend (drift), plus the network's correction",
        ),
        (["data.lookback=6"], "each window's last value (normalize: season, but s = 12 does not fit L = 6), plus"),
    ],
)
def test_inspect_run_says_what_the_network_corrects(tiny_config: Path, sets: list[str], said: str) -> None:
    args = [f"--set={kv}" for kv in ["model.normalize=season", "train.epochs=1", *sets]]
    trained = runner.invoke(app, ["train", str(tiny_config), "-q", *args])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(app, ["inspect", str(tiny_config.parent / "run")])
    assert result.exit_code == 0, result.output
    assert f"forecast: {said}" in " ".join(result.output.split())


def test_inspect_units(tiny_config: Path) -> None:
    result = runner.invoke(app, ["inspect", str(tiny_config), "--units"])
    assert result.exit_code == 0, result.output
    assert "unit k owns row k" in result.output


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path / "bad.yaml", model={"units": 8})
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2
    assert "unknown key 'model.units'" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_config_command_prints_resolved_config(tiny_config: Path) -> None:
    result = runner.invoke(app, ["config", str(tiny_config), "--set", "train.lr=0.01"])
    assert result.exit_code == 0, result.output
    assert "lr: 0.01" in result.output and "optimizer: adamw" in result.output


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from lstmcli.cli import app\n"
        "for cmd in ('train', 'inspect', 'predict', 'init', 'resume', 'config'):\n"
        "    r = CliRunner().invoke(app, [cmd, '--help'])\n"
        "    assert r.exit_code == 0, r.output\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        "assert 'checkpoint' in CliRunner().invoke(app, ['resume', '--help']).output\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "lstmcli", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0
    assert "inspect" in result.stdout
