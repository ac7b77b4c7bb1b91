"""`lstm tune --jobs 2`: two worker processes share the study, each trial on its share of the cores."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, write_config, write_csv


@pytest.mark.slow
def test_two_jobs_share_one_study_and_split_the_threads(tmp_path: Path) -> None:
    write_csv(tmp_path / "series.csv")
    cfg = write_config(tmp_path / "tiny.yaml", train={"epochs": 2})
    raw = yaml.safe_load(cfg.read_text())
    raw["tune"] = {"model.m": [4, 8]}
    cfg.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "lstmcli", "tune", str(cfg), "--trials", "4", "--jobs", "2", "-q"]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "trial 1:" not in done.stdout + done.stderr  # -q reaches the workers too
    out = tmp_path / "run-tune"
    with open(out / "trials.csv", newline="") as fh:
        states = [r["state"] for r in csv.DictReader(fh)]
    assert states.count("complete") + states.count("pruned") == 4
    threads = {yaml.safe_load((t / "config.yaml").read_text())["train"]["threads"] for t in (out / "trials").iterdir()}
    cores = len(os.sched_getaffinity(0))
    assert threads == {max(1, cores // 2)}
    assert (out / "best" / "metrics.json").is_file()
