"""Data-parallel training across processes started by torchrun: ranks, shards, reductions.

``train.batch_size`` is the global batch: with K processes each rank takes its contiguous 1/K of
every batch of the one shuffled order (all ranks draw the same permutation from the same seed),
and DistributedDataParallel averages the gradients. The loss each rank differentiates is scaled so
that this average equals the gradient of the mean over the whole global batch, which makes K
processes train the same model as one process with the same config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


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
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(
        rank=int(os.environ["RANK"]),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )


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


def launch(nproc: int, argv: list[str]) -> int:
    """Start ``python -m lstmcli ARGV`` in ``nproc`` processes on this machine, as torchrun would.

    Each child gets torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR on loopback,
    a free MASTER_PORT) and an equal share of the CPU threads. If one child fails the others are
    stopped, and its exit code is returned; each child prints its own one-line error.
    """
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    base.update(WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc))
    base.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    procs = [
        subprocess.Popen([sys.executable, "-m", "lstmcli", *argv], env=dict(base, RANK=str(r), LOCAL_RANK=str(r)))
        for r in range(nproc)
    ]
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed or all(c == 0 for c in codes):
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        failed = [130]
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:  # a rank blocked in a collective (waiting for the one that failed) never sees SIGTERM
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return failed[0] if failed else 0
