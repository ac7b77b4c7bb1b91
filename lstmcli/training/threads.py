"""How many CPU threads a training process uses, chosen so that a busy machine never collapses it.

OpenMP threads that wait for a core keep spinning on it by default. When another process holds
that core, a 2-thread run of the CO2 config took over 140 s for 5 epochs against 6 s on one
thread (shared/FINDINGS.md). So by default:

- waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``, set before torch loads its OpenMP runtime,
  unless the user set it);
- the thread count is what the model can use: one thread per WORK_PER_THREAD multiply-adds of one
  time step of a batch (the shipped configs' models gain nothing from a second one, BENCHMARKS.md),
  at most the cores this process may use (its affinity mask and cgroup CPU quota).
  The load of other processes is not consulted: it changes during a run, and with passive waiting
  a thread whose core is taken costs little (BENCHMARKS.md, "busy machine").

``train.threads`` overrides the choice, and then OpenMP waits as it does by default (spin, then
sleep). The summary says what was chosen and why.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from lstmcli.training.device import available_cores

# Multiply-adds of the gate layers for one time step of one batch per thread. On this project's
# 2-vCPU Xeon with passive waiting, a second thread did not pay for the shipped configs (m 32 x 2
# at batch 64, 0.8M; m 64 x 2, 3.2M: 6.99 s against 6.41 s on one) and began to at m 128 x 2
# (12.6M), within the noise (BENCHMARKS.md, "busy machine").
WORK_PER_THREAD = 8_000_000


_PASSIVE_BY_DEFAULT = False  # whether passive_waiting set the policy (the user had not)


def passive_waiting() -> None:
    """Waiting OpenMP threads sleep instead of spinning, unless the user set OMP_WAIT_POLICY; call
    before torch is imported (libgomp reads it when it loads)."""
    global _PASSIVE_BY_DEFAULT
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        _PASSIVE_BY_DEFAULT = True


def pinned_threads(threads: int | None) -> None:
    """A run whose ``train.threads`` is set keeps OpenMP's own waiting (spin, then sleep): the user
    chose the thread count for a machine they know, and on a quiet one two spinning threads run the
    CO2 config 1.3x faster than two passive ones (BENCHMARKS.md). Call before torch is imported."""
    global _PASSIVE_BY_DEFAULT
    if threads and _PASSIVE_BY_DEFAULT:
        del os.environ["OMP_WAIT_POLICY"]
        _PASSIVE_BY_DEFAULT = False


def cpu_quota() -> float | None:
    """Cores' worth of CPU time the cgroup (v2 ``cpu.max``, or v1) allows this process; None without a limit."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    why: str


def choose_threads(setting: int | None, work_per_step: int, processes: int = 1) -> ThreadChoice:
    """``train.threads``, or the default described in the module docstring for a model doing
    ``work_per_step`` multiply-adds per time step of a batch, in one of ``processes`` ranks."""
    if setting:
        return ThreadChoice(setting, "train.threads")
    cores = available_cores()
    quota = cpu_quota()
    allowed = max(1, min(cores, math.floor(quota) if quota else cores) // max(1, processes))
    useful = max(1, work_per_step // WORK_PER_THREAD)
    threads = min(allowed, useful)
    if useful < allowed:
        why = f"the model's {work_per_step / 1e6:.2g}M multiply-adds per step gain nothing from more"
    else:
        why = f"the {allowed} core(s) this process may use, waiting passively"
    return ThreadChoice(threads, why)


def work_per_step(n: int, m: int, layers: int, batch: int) -> int:
    """Multiply-adds of the four gate layers for one time step of a batch: 4m(n_l + m) per layer."""
    return batch * sum(4 * m * ((n if layer == 0 else m) + m) for layer in range(layers))
