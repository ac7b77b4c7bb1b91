"""Errors meant for users: the CLI prints each as one line and exits with its code."""

from __future__ import annotations


class LstmcliError(Exception):
    """Base class; ``exit_code`` 2 means bad input, 1 a runtime failure."""

    exit_code = 2


class ConfigError(LstmcliError):
    """A config file, key or override is malformed or out of range."""


class DataError(LstmcliError):
    """A CSV file is unreadable, lacks a column, or holds a bad cell."""


class GapError(DataError):
    """A series' time axis lacks timestamps (and data.missing does not fill them)."""

    def __init__(self, message: str, where: str, count: int, first: str) -> None:
        super().__init__(message)
        self.where, self.count, self.first = where, count, first


class CheckpointError(LstmcliError):
    """A run directory is incomplete, tampered with or does not match its config."""


class OutputError(LstmcliError):
    """A file the user asked for (or a run file) cannot be written: missing folder, no permission."""


class ResourceError(LstmcliError):
    """The machine ran out of something at run time: disk space, a quota, memory, file locks."""

    exit_code = 1


class MissingDependency(LstmcliError):
    """An optional package a command needs is not installed (the message names the pip command)."""

    exit_code = 1


class InternalError(LstmcliError):
    """A failure no part of lstm anticipated (a bug): still one line, exit 1."""

    exit_code = 1


class TrainingError(LstmcliError):
    """Training failed at run time (for example the loss diverged)."""

    exit_code = 1


class Interrupted(BaseException):
    """Training stopped on a signal after leaving a consistent run directory.

    A BaseException, like KeyboardInterrupt: it can be raised by a signal handler at any point,
    and no ``except Exception`` on the way up may take it for a failure to recover from."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class RankFailed(LstmcliError):
    """A process of a data-parallel job died (killed by a signal); the exit code says how."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PeerLost(LstmcliError):
    """A rank of a data-parallel job lost contact with another one (which has failed or stopped)."""

    exit_code = 1


class CheckFailed(LstmcliError):
    """A self-check of lstm's own output failed (an exported graph that does not compute what
    predict computes): nothing was written, exit 1."""

    exit_code = 1
