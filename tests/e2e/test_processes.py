"""Real processes: --nproc ranks match one process, signals stop every rank, a killed rank is named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.config import load_config
from lstmcli.model.forecaster import LSTMForecaster
from tests.conftest import ROOT, Proc, write_config


def test_nproc_with_a_bad_config_reports_once(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lstmcli", "train", str(tmp_path / "nope.yaml"), "--nproc", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.count("config file not found") == 1, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mae", "quantile"])
def test_two_processes_match_one_process_after_an_epoch(tmp_path: Path, tiny_csv: Path, loss: str) -> None:
    # 42 training windows, global batch 16: batches 16, 16, 10 -> per-rank 8, 8, 5
    cfg = write_config(tmp_path / "c.yaml", train={"epochs": 1, "batch_size": 16, "loss": loss})
    one = CliRunner().invoke(app, ["train", str(cfg), "-q", "--set", f"output.dir={tmp_path / 'one'}"])
    assert one.exit_code == 0, one.output
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstmcli",
            "train",
            str(cfg),
            "-q",
            "--nproc",
            "2",
            "--set",
            f"output.dir={tmp_path / 'two'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert two.returncode == 0, two.stderr
    a = load_file(tmp_path / "one" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model.safetensors")
    torch.manual_seed(0)  # the initial weights both runs started from: training must have moved them
    initial = LSTMForecaster.from_config(load_config(cfg)).state_dict()
    assert (a["lstm.weight_hh_l0"] - initial["lstm.weight_hh_l0"]).abs().max() > 1e-4
    assert a.keys() == b.keys()
    # Adam moves a weight by about lr whatever its gradient's size, so a gradient that sums to exactly
    # zero in one process and to a rounding error in the other moves it in one only. The pinball loss's
    # gradient for a median's bias is a sum of ±0.5 per value, which can cancel: one such entry is allowed.
    ties = 1 if loss == "quantile" else 0
    for name in a:
        assert int(((a[name] - b[name]).abs() > 1e-6).sum()) <= ties, name
    # rank 0 calibrates the intervals on the same validation windows as one process does
    cal_one, cal_two = (json.loads((tmp_path / d / "metrics.json").read_text())["calibration"] for d in ("one", "two"))
    for name in ("model", "seasonal_naive"):
        assert cal_one[name].get("bands") == cal_two[name].get("bands")
        # (within such a tie's lr-sized move of a forecast, in window scales)
        assert np.allclose(np.array(cal_one[name]["radius"]), np.array(cal_two[name]["radius"]), atol=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["one", "two"]


@pytest.mark.slow
def test_failure_in_a_rank_gives_one_line_and_its_exit_code(tmp_path: Path, tiny_csv: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", model={"n": 2})
    two = subprocess.run(
        [sys.executable, "-m", "lstmcli", "train", str(cfg), "--nproc", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert two.returncode == 2
    assert "Traceback" not in two.stderr
    assert "model.n is 2" in two.stderr


def _ranks_of(config: Path) -> dict[int, int]:
    """rank -> pid of the running lstm processes whose command line names ``config``."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if str(config).encode() not in (d / "cmdline").read_bytes().split(b"\0"):
                continue
            env = dict(
                kv.split("=", 1)
                for kv in (d / "environ").read_bytes().decode(errors="replace").split("\0")
                if "=" in kv
            )
        except OSError:
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(d.name)
    return found


def _long_job(tmp_path: Path) -> Path:
    return write_config(tmp_path / "c.yaml", train={"epochs": 300, "batch_size": 4, "patience": 300, "threads": 1})


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_launcher_stops_every_rank_and_says_how_to_resume(
    tmp_path: Path, tiny_csv: Path, sig: signal.Signals, code: int
) -> None:
    config = _long_job(tmp_path)
    proc = Proc(["train", str(config), "--nproc", "2"], tmp_path)
    assert proc.wait_for("epoch 2/")
    ranks = _ranks_of(config)
    assert set(ranks) == {0, 1}
    proc.p.send_signal(sig)
    out = proc.finish(timeout=90)
    assert proc.p.returncode == code, out
    lines = [line for line in out.strip().splitlines() if not line.startswith(("epoch ", str(tiny_csv)))]
    assert len(lines) == 1 and lines[0].startswith("interrupted:"), out
    assert f"lstm resume {tmp_path / 'run'}" in lines[0]
    assert _ranks_of(config) == {}  # no rank left training in the background
    from lstmcli.runs.lock import RunLock

    with RunLock(tmp_path / "run"):  # and none holds the lock
        pass


@pytest.mark.slow
def test_a_rank_killed_by_a_signal_is_named_in_one_line_with_how_to_resume(tmp_path: Path, tiny_csv: Path) -> None:
    config = _long_job(tmp_path)
    proc = Proc(["train", str(config), "--nproc", "2"], tmp_path)
    assert proc.wait_for("epoch 2/")
    os.kill(_ranks_of(config)[1], signal.SIGKILL)
    out = proc.finish(timeout=90)
    assert proc.p.returncode == 137, out
    lines = [line for line in out.strip().splitlines() if not line.startswith(("epoch ", str(tiny_csv)))]
    assert len(lines) == 1, out
    assert (
        lines[0].startswith("error: rank 1 of 2 was killed by SIGKILL")
        and f"lstm resume {tmp_path / 'run'}" in lines[0]
    )
    assert _ranks_of(config) == {}


@pytest.mark.slow
def test_every_option_reaches_the_ranks(tmp_path: Path, tiny_csv: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", train={"epochs": 1, "batch_size": 16})
    two = subprocess.run(
        [sys.executable, "-m", "lstmcli", "train", str(cfg), "--nproc=2", "-q", "--print-config", "-s", "model.m=6"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert two.returncode == 0, two.stderr
    assert "m: 6" in two.stderr  # --print-config and -s, as given, in rank 0
    assert "best epoch" in two.stdout
