"""``lstm train --nproc K``: start K ranks on this machine, as torchrun would, and see them end.

Each rank gets torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR on loopback, a free
MASTER_PORT) and an equal share of the CPU threads, in a process group of its own, so that a
terminal's Ctrl-C reaches the launcher only. A SIGINT or SIGTERM is forwarded to rank 0 alone: the
other ranks keep stepping with it, so it always reaches its next batch boundary, where it stops
with its checkpoint intact and says how to resume; the others, which write nothing, are then
killed. The same happens when any rank ends: a rank that exits with an error has printed it, one
killed by a signal is named here, in one line. Every write is atomic and the lock is the kernel's,
so a killed rank loses nothing.

Written here rather than delegated to ``torch.distributed.run``, whose failure report is a
multi-line ChildFailedError summary, where every lstm error is one line.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from lstmcli.errors import Interrupted, RankFailed

LAUNCHED_ENV = "LSTMCLI_LAUNCHED"  # set for the ranks: the launcher reports a lost rank, not its peers
GRACE_SECONDS = 60.0  # after a stop, how long rank 0 may take to reach its next batch boundary
POLL_SECONDS = 0.05


def launch(nproc: int, argv: list[str], resume_hint: str) -> int:
    """Run ``python -m lstmcli ARGV`` in ``nproc`` ranks; return the job's exit code (a rank killed by
    a signal, or a stop whose rank 0 could not say so itself, raises its one line instead)."""
    return _Job(nproc, argv).run(resume_hint)


class _Job:
    def __init__(self, nproc: int, argv: list[str]) -> None:
        self.nproc, self.argv = nproc, argv
        self.procs: list[subprocess.Popen[bytes]] = []
        self.received: list[int] = []  # signals this launcher got, in order

    def run(self, resume_hint: str) -> int:
        old = {sig: signal.signal(sig, self._forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._start()
            ended = self._watch()
        finally:
            self._kill_all()  # only if watching failed: never leave a rank behind
            for p in self.procs:
                p.wait()
            for sig, handler in old.items():
                signal.signal(sig, handler)
        return self._outcome(ended, resume_hint)

    def _start(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        base = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        base.update(WORLD_SIZE=str(self.nproc), LOCAL_WORLD_SIZE=str(self.nproc), **{LAUNCHED_ENV: "1"})
        base.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.nproc)))
        for r in range(self.nproc):
            env = dict(base, RANK=str(r), LOCAL_RANK=str(r))
            if sys.version_info >= (3, 11):
                proc = subprocess.Popen([sys.executable, "-m", "lstmcli", *self.argv], env=env, process_group=0)
            else:  # pragma: no cover - Python 3.10
                proc = subprocess.Popen([sys.executable, "-m", "lstmcli", *self.argv], env=env, preexec_fn=os.setpgrp)
            self.procs.append(proc)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.procs and self.procs[0].poll() is None:
            self.procs[0].send_signal(signum)

    def _watch(self) -> tuple[int, int] | None:
        """Wait for every rank; the (rank, exit code) of the first to end unsuccessfully, if any."""
        ended: tuple[int, int] | None = None
        stopping = False  # from here on, the ranks still running are killed by this launcher
        deadline: float | None = None
        while any(p.poll() is None for p in self.procs):
            codes = [p.poll() for p in self.procs]
            if not stopping:
                ended = next(((r, c) for r, c in enumerate(codes) if c not in (None, 0)), None)
                stopping = ended is not None or codes[0] is not None
            if self.received and deadline is None:
                deadline = time.monotonic() + GRACE_SECONDS
            if stopping or (deadline is not None and time.monotonic() > deadline):
                self._kill_all()  # rank 0 is done (or a rank failed): the others have nothing left to write
            time.sleep(POLL_SECONDS)
        return ended

    def _kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()

    def _outcome(self, ended: tuple[int, int] | None, resume_hint: str) -> int:
        main = self.procs[0].returncode
        if self.received:
            signum = self.received[0]
            if main != 128 + signum:  # rank 0 did not stop by itself, so it said nothing
                name = signal.Signals(signum).name
                raise Interrupted(
                    f"{name}: the {self.nproc} ranks were stopped. Resume with: {resume_hint}", 128 + signum
                )
            return main
        if ended is None:
            return 0
        rank, code = ended
        if code < 0:
            raise RankFailed(
                f"rank {rank} of {self.nproc} was killed by {signal.Signals(-code).name}; the other ranks were "
                f"stopped (the last finished epoch's checkpoint is kept). Resume with: {resume_hint}",
                128 - code,
            )
        return code
