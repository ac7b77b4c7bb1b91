"""One trainer per run directory: an exclusive ``flock`` on ``RUN/.lock``.

The kernel releases a flock when its holder dies, however it dies (``kill -9``, a container
restart, a reboot), so a lock is never stale and there is nothing to clear by hand. On NFS (v4,
or v3 with lockd) Linux maps flock to a POSIX lock on the server, which lets go of a vanished
client's lock when its lease expires (about 90 s). Where the file system has no locks at all
(some FUSE mounts), ``LSTMCLI_LOCK=off`` trains without the guard: the user then promises that
no other lstm trains into the directory.

Written here rather than with the ``filelock`` package because filelock opens the lock file with
O_TRUNC on every attempt, which would wipe the holder's pid that the refusal message names.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time
from pathlib import Path

from lstmcli.errors import CheckpointError
from lstmcli.fsutil import describe_kind, os_error

LOCK = ".lock"
LOCK_ENV = "LSTMCLI_LOCK"


class RunLock:
    """Hold ``run_dir/.lock`` exclusively (a context manager; ``run_dir`` must exist).

    With ``wait``, a lock that processes take in turn (``name`` another file of the directory):
    ``acquire`` waits for the holder instead of refusing."""

    def __init__(self, run_dir: Path, name: str = LOCK, wait: bool = False) -> None:
        self.run_dir = run_dir
        self.path = run_dir / name
        self.wait = wait
        self.fd: int | None = None
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        if os.environ.get(LOCK_ENV, "").strip().lower() in {"off", "0", "no", "false"}:
            self.held = True
            return
        attempts = 0
        while self.wait or attempts < 20:  # a waiter retries once per holder that released before it
            attempts += 1
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if self.wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise CheckpointError(
                    f"{self.run_dir}: another lstm process is training into it ({holder}); wait for it to finish "
                    "or stop it (the lock goes the moment that process ends)"
                ) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise CheckpointError(
                        f"{self.path}: this file system does not support file locks ({exc.strerror}); set "
                        f"{LOCK_ENV}=off to train without the one-trainer guard, if no other lstm trains into "
                        f"{self.run_dir}"
                    ) from None
                raise os_error(self.path, exc, "lock", CheckpointError) from None
            # A holder that released unlinked the file first: ours must still be the one at the path.
            if _same_inode(fd, self.path):
                self._write_holder(fd)
                self.fd, self.held = fd, True
                return
            os.close(fd)
        raise CheckpointError(f"{self.path}: could not take the lock (it kept being replaced); try again")

    def release(self) -> None:
        if self.fd is not None:
            try:
                self.path.unlink(missing_ok=True)  # while holding it: see acquire's inode check
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None
        self.held = False

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EISDIR, errno.ELOOP, errno.ENXIO):
                raise CheckpointError(
                    f"{self.path}: is not lstm's lock file (it is {_kind(self.path)}); remove it"
                ) from None
            raise os_error(self.path, exc, "create the lock file", CheckpointError) from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise CheckpointError(f"{self.path}: is {describe_kind(mode)}, not lstm's lock file; remove it")
        os.set_blocking(fd, True)
        return fd

    def _write_holder(self, fd: int) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        except OSError:
            pass  # the holder's name is for messages only; the flock is the lock


def _same_inode(fd: int, path: Path) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"pid {int(holder['pid'])} on {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its pid is not recorded yet"


def _kind(path: Path) -> str:
    try:
        return describe_kind(os.lstat(path).st_mode) if not path.is_symlink() else "a symbolic link"
    except OSError:
        return "unreadable"
