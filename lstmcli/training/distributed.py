"""Data-parallel training across processes started by torchrun: ranks, shards, reductions.

``train.batch_size`` is the global batch: with K processes each rank takes its contiguous 1/K of
every batch of the one shuffled order (all ranks draw the same permutation from the same seed),
and DistributedDataParallel averages the gradients. The loss each rank differentiates is scaled so
that this average equals the gradient of the mean over the whole global batch, which makes K
processes train the same model as one process with the same config.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from lstmcli.errors import ConfigError, PeerLost


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; world 1 means no distribution at all."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # ranks on this machine (torchrun's LOCAL_WORLD_SIZE): one GPU each

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, origins: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch (sizes differ by at most one)."""
        if not self.enabled:
            return origins
        return torch.tensor_split(origins, self.world)[self.rank]

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over all ranks (in place where distributed); identity on one process."""
        if self.enabled:
            torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.SUM)
        return value


def from_env() -> Dist:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK; a plain process is rank 0 of 1."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Dist()
    rank = _env_int("RANK", None, world)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    dist = Dist(rank=rank, world=world, local_rank=_env_int("LOCAL_RANK", 0, world), local_world=local_world)
    if not 0 <= dist.rank < world or not 0 <= dist.local_rank < max(local_world, 1):
        raise ConfigError(
            f"environment: RANK={dist.rank}, LOCAL_RANK={dist.local_rank} do not fit WORLD_SIZE={world}, "
            f"LOCAL_WORLD_SIZE={local_world}; start the ranks with torchrun or lstm train --nproc K"
        )
    return dist


def _env_int(name: str, default: int | None, world: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        if default is None:
            raise ConfigError(
                f"environment: WORLD_SIZE={world} asks for a distributed run, but {name} is not set; "
                "start the ranks with torchrun or lstm train --nproc K (or unset WORLD_SIZE)"
            )
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment: {name}={raw!r} is not a whole number") from None


@contextlib.contextmanager
def peers_lost_is_one_line(dist: Dist) -> Iterator[None]:
    """A collective that fails because another rank is gone becomes PeerLost (one line, exit 1)."""
    try:
        yield
    except RuntimeError as exc:
        text = str(exc)
        lost = isinstance(exc, torch.distributed.DistError) or any(
            word in text
            for word in ("Connection closed by peer", "Connection reset by peer", "gloo", "NCCL", "Broken pipe")
        )
        if not dist.enabled or not lost:
            raise
        first = text.splitlines()[0]
        first = first.split("] ", 1)[-1][:120]  # drop the C++ source location
        raise PeerLost(
            f"rank {dist.rank} lost contact with the other ranks ({first}); another rank has failed or stopped"
        ) from None


def init(dist: Dist, device: torch.device) -> None:
    """Join the process group: nccl between GPUs, gloo on the CPU."""
    if not dist.enabled or torch.distributed.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown(dist: Dist) -> None:
    """Leave the process group once every rank is done (call after dropping the DDP wrapper)."""
    if dist.enabled and torch.distributed.is_initialized():
        import gc

        gc.collect()  # a DDP reducer outliving its process group aborts the process at exit
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def abandon(dist: Dist) -> None:
    """Leave the process group at once, on the way out of a run that failed or stopped: no barrier
    (the other ranks may be gone, or still stepping). Left to the interpreter's exit, the group's
    threads abort the process ("terminate called without an active exception")."""
    if dist.enabled and torch.distributed.is_initialized():
        import gc

        gc.collect()
        with contextlib.suppress(Exception):
            torch.distributed.destroy_process_group()
