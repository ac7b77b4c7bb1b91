"""End to end: real processes killed with SIGKILL, SIGTERM and SIGINT, then resumed.

The final weights must equal (torch.equal, every tensor) those of a run that was never interrupted.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.config import load_config
from lstmcli.fsutil import TMP_INFIX
from lstmcli.runs import checkpoints as ck
from lstmcli.runs.lock import LOCK
from lstmcli.runs.store import CHECKPOINT_DIR, METRICS, STATE_POINTER, WEIGHTS
from tests.conftest import Proc, assert_same_tensors, write_config

pytestmark = pytest.mark.slow

runner = CliRunner()


def tiny_run_config(tmp_path: Path) -> Path:
    # 30 short epochs (11 batches each, dropout on) so that the kills land mid-training.
    return write_config(
        tmp_path / "c.yaml",
        model={"m": 8, "dropout": 0.2},
        train={"epochs": 30, "batch_size": 4, "patience": 100, "threads": 1},
    )


def uninterrupted(config: Path, tmp_path: Path) -> dict[str, torch.Tensor]:
    ref = tmp_path / "ref"
    result = runner.invoke(app, ["train", str(config), "-q", "--set", f"output.dir={ref}"])
    assert result.exit_code == 0, result.output
    return load_file(ref / WEIGHTS)


def test_sigkill_at_random_moments_then_resume_gives_identical_weights(tmp_path: Path, tiny_csv: Path) -> None:
    seed = int(os.environ.get("KILL_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    print(f"KILL_SEED={seed}")  # shown on failure, to replay the same kill times
    config = tiny_run_config(tmp_path)
    run = tmp_path / "run"
    kills_mid_training = 0
    for attempt in range(3):
        proc = Proc(["train", str(config), "--resume"], tmp_path)
        if attempt == 0:
            time.sleep(rng.uniform(0.2, 3.0))  # anywhere: start-up, data, lock, config write, training
        elif not proc.wait_for("epoch "):  # an epoch line, not "resuming from ... epoch"
            break  # finished before we could kill it
        else:
            time.sleep(rng.uniform(0.0, 0.4))
        alive = proc.p.poll() is None
        proc.p.send_signal(signal.SIGKILL)
        out = proc.finish()
        if not alive:
            assert proc.p.returncode == 0, out
            break
        assert proc.p.returncode == -signal.SIGKILL
        kills_mid_training += any(line.startswith("epoch ") for line in proc.seen)
        if (run / "partial" / CHECKPOINT_DIR / STATE_POINTER).exists():
            # whatever the moment, the pair is consistent
            assert ck.load_train_state(run / "partial", load_config(config).parameters) is not None
    if not (run / METRICS).exists():
        final = Proc(["train", str(config), "--resume"], tmp_path)
        out = final.finish()
        assert final.p.returncode == 0, out
    assert kills_mid_training >= 1, f"seed {seed}: no kill landed during training"
    assert not (run / LOCK).exists()
    assert_same_tensors(uninterrupted(config, tmp_path), load_file(run / WEIGHTS))


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_exit_with_a_resume_hint_and_resume_identically(
    tmp_path: Path, tiny_csv: Path, sig: signal.Signals, code: int
) -> None:
    config = tiny_run_config(tmp_path)
    run = tmp_path / "run"
    proc = Proc(["train", str(config)], tmp_path)
    assert proc.wait_for("epoch 3/30")
    proc.p.send_signal(sig)
    out = proc.finish()
    assert proc.p.returncode == code, out
    last = out.strip().splitlines()[-1]
    assert last.startswith("interrupted:") and f"lstm resume {run}" in last, out
    assert "Traceback" not in out
    saved = ck.load_train_state(run / "partial", load_config(config).parameters)
    assert saved is not None and saved.epoch >= 3
    assert not (run / LOCK).exists() and not list(run.rglob(f".*{TMP_INFIX}*"))
    resumed = Proc(["resume", str(run)], tmp_path)
    out = resumed.finish()
    assert resumed.p.returncode == 0, out
    assert f"resuming from the checkpoint of epoch {saved.epoch}" in out
    assert_same_tensors(uninterrupted(config, tmp_path), load_file(run / WEIGHTS))


def test_a_run_stopped_in_its_refit_resumes_the_refit_identically(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        model={"m": 8, "dropout": 0.2},
        train={"epochs": 12, "batch_size": 4, "patience": 100, "threads": 1, "refit": True},
    )
    run = tmp_path / "run"
    proc = Proc(["train", str(config)], tmp_path)
    assert proc.wait_for("refit 2/")
    proc.p.send_signal(signal.SIGTERM)
    out = proc.finish()
    assert proc.p.returncode == 143, out
    resumed = Proc(["resume", str(run)], tmp_path)
    out = resumed.finish()
    assert resumed.p.returncode == 0, out
    assert "resuming the refit after its epoch" in out
    assert_same_tensors(uninterrupted(config, tmp_path), load_file(run / WEIGHTS))
