"""Two gloo processes on loopback train the same model as one process with the same global batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.config import load_config
from lstmcli.distributed import Dist
from lstmcli.errors import ConfigError
from lstmcli.model import LSTMForecaster
from lstmcli.runtime import resolve_device

from .conftest import ROOT, write_config


def test_shards_partition_each_global_batch_in_order() -> None:
    batch = torch.arange(11)
    parts = [Dist(rank=r, world=3).shard(batch) for r in range(3)]
    assert torch.equal(torch.cat(parts), batch)
    assert [len(p) for p in parts] == [4, 4, 3]
    assert torch.equal(Dist().shard(batch), batch)


@pytest.mark.parametrize(
    ("name", "gpus", "processes", "local_rank", "expected"),
    [
        ("auto", 0, 2, 1, "cpu"),
        ("auto", 1, 1, None, "cuda"),  # one process, not distributed
        ("auto", 1, 1, 0, "cuda:0"),  # one process per node of a multi-node job: numbered all the same
        ("auto", 1, 2, 1, "cpu"),  # too few GPUs for one each: every rank on the CPU, one backend
        ("auto", 2, 2, 1, "cuda:1"),
        ("cuda", 4, 2, 0, "cuda:0"),
        ("cpu", 2, 2, 1, "cpu"),
    ],
)
def test_each_rank_gets_its_own_gpu_or_all_use_the_cpu(
    monkeypatch: pytest.MonkeyPatch, name: str, gpus: int, processes: int, local_rank: int | None, expected: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert str(resolve_device(name, processes, local_rank)) == expected


def test_cuda_with_fewer_gpus_than_processes_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="2 processes on this machine needs one GPU each, but torch sees 1"):
        resolve_device("cuda", 2, 1)


@pytest.mark.slow
def test_two_processes_match_one_process_after_an_epoch(tmp_path: Path, tiny_csv: Path) -> None:
    # 42 training windows, global batch 16: batches 16, 16, 10 -> per-rank 8, 8, 5
    cfg = write_config(tmp_path / "c.yaml", train={"epochs": 1, "batch_size": 16})
    one = CliRunner().invoke(app, ["train", str(cfg), "-q", "--set", f"output.dir={tmp_path / 'one'}"])
    assert one.exit_code == 0, one.output
    two = subprocess.run(
        [sys.executable, "-m", "lstmcli", "train", str(cfg), "-q", "--nproc", "2", "--set", f"output.dir={tmp_path / 'two'}"],
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
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6, rtol=0), name
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["one", "two"]


@pytest.mark.slow
def test_failure_in_a_rank_gives_one_line_and_its_exit_code(tmp_path: Path, tiny_csv: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", model={"n": 2})
    two = subprocess.run(
        [sys.executable, "-m", "lstmcli", "train", str(cfg), "--nproc", "2"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert two.returncode == 2
    assert "Traceback" not in two.stderr
    assert "model.n is 2" in two.stderr


def test_an_unavailable_device_for_nproc_is_one_line_before_any_process_starts(tiny_config: Path) -> None:
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    result = CliRunner().invoke(app, ["train", str(tiny_config), "--nproc", "2", "--set", "train.device=mps"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "train.device: mps" in result.output
