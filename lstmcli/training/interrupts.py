"""Ctrl-C and SIGTERM as a request to stop at a safe point, never in the middle of a write."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from lstmcli.errors import Interrupted

_NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class StopSignals:
    """While active, SIGINT/SIGTERM only set ``signum``; the training loop polls it between batches.

    A second signal stops at once (the writes are atomic, so the run directory stays consistent).
    Outside the main thread (where Python cannot install handlers) this does nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in _NAMES:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
            # Nested (lstm tune around each trial's train): a request this scope took but did not
            # act on (it came during the last writes) is the enclosing scope's, not lost.
            outer = getattr(old, "__self__", None)
            if isinstance(outer, StopSignals) and outer.signum is None:
                outer.signum = self.signum
        self._old.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise Interrupted(f"{self.name} again: stopped at once", 128 + signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return _NAMES.get(self.signum, f"signal {self.signum}") if self.signum else ""

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)
