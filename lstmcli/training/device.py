"""Process set-up: a stable allocator before torch allocates anything, and the device to run on."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import TYPE_CHECKING

from lstmcli.errors import ConfigError

if TYPE_CHECKING:
    import torch

# glibc's default mmap threshold grows and shrinks with the workload, and a training loop that
# frees and reallocates batch-sized buffers can fall into a page-fault storm: the same run came out
# 2x slower from one process to the next (shared/FINDINGS.md). Fixed thresholds make it stable.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def stable_malloc() -> bool:
    """Pin glibc's mmap/trim thresholds (32 MiB / 4 GiB); a no-op elsewhere. True if applied."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok_mmap = libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        ok_trim = libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    except (OSError, AttributeError):
        return False
    return bool(ok_mmap and ok_trim)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_threads(threads: int | None) -> None:
    """``train.threads`` no larger than the cores this process may use (OpenMP given 100,000
    threads crashes the process without a message)."""
    cores = available_cores()
    if threads is not None and threads > cores:
        raise ConfigError(
            f"train.threads is {threads}, but this process may use {cores} CPU core(s); "
            f"use at most {cores} (or leave it unset)"
        )


def resolve_device(name: str, processes: int = 1, local_rank: int | None = None) -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; an explicit choice must be available.

    With ``processes`` data-parallel ranks on this machine each rank needs a GPU of its own:
    ``auto`` takes CUDA only if there are enough (else every rank uses the CPU, so the ranks agree
    on one backend), and ``cuda`` with too few GPUs is a config error. A rank of a distributed job
    (``local_rank`` given, even with one process per node) gets ``cuda:local_rank``.
    """
    import torch  # here, not at the top: the CLI calls stable_malloc before torch is imported

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":
        if gpus >= processes:
            return _cuda(local_rank)
        if processes == 1 and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda":
        if not gpus:
            raise ConfigError("train.device: cuda was asked for but torch sees no CUDA device; use auto or cpu")
        if gpus < processes:
            raise ConfigError(
                f"train.device: cuda with {processes} processes on this machine needs one GPU each, "
                f"but torch sees {gpus}; use at most {gpus} processes, or train.device=cpu"
            )
        return _cuda(local_rank)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("train.device: mps was asked for but is not available; use auto or cpu")
    if name == "mps" and processes > 1:
        raise ConfigError("train.device: mps trains in one process; use train.device=cpu for --nproc > 1")
    return torch.device(name)


def _cuda(local_rank: int | None) -> torch.device:
    import torch

    return torch.device("cuda") if local_rank is None else torch.device("cuda", local_rank)
