"""Data-parallel units: shards of a global batch, a GPU per rank or the CPU for all."""

from __future__ import annotations

import pytest
import torch

from lstmcli.errors import ConfigError
from lstmcli.training.device import resolve_device
from lstmcli.training.distributed import Dist


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
