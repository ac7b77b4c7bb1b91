"""Every shipped config trains end to end through the CLI and beats seasonal naive on its test windows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmcli.cli import app
from tests.conftest import ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_beats_seasonal_naive(config: Path, tmp_path: Path) -> None:
    run = tmp_path / config.stem
    result = CliRunner().invoke(app, ["train", str(config), "-q", "--set", f"output.dir={run}"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["model"]["relMAE"] < 1.0, metrics["test"]  # beats seasonal naive on the test windows
    assert metrics["test"]["model"]["MAE"] < metrics["test"]["naive"]["MAE"]
