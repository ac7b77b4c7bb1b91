"""The run directory on disk: what makes a folder a run, where a run in progress lives, and how a
finished run replaces the previous one without ever losing it.

Layout of ``RUN/``::

    .lstmcli-run          the marker: this folder is an lstm run directory (format and version)
    .lock                 held (flock) by the one process training into RUN
    config.yaml  model.safetensors  meta.json  history.csv  loss.png  metrics.json
                          the last finished run (metrics.json, moved in last, marks it finished)
    partial/              the run in progress: config.yaml and checkpoint/, then its finished files
    partial.prev/         an unfinished run that --overwrite replaces, kept until the new run has
                          saved its first epoch (and put back if the new run fails before that)

Nothing in ``RUN`` is removed but what the tool itself wrote: a folder is taken for a run only by
its marker (or, for runs written before the marker existed, by the JSON of their ``meta.json`` or
checkpoint, never by file names), and files of other names inside a run are left alone.

A new run (fresh, ``--overwrite`` or ``--resume``) trains in ``partial/``; when it has finished,
its files are moved up one by one, the old run's ``metrics.json`` first and the new one last
(:meth:`RunDir.commit`). A crash in the middle leaves ``partial/metrics.json`` behind, and the next
command that takes the lock completes the move (:meth:`RunDir.recover`); so at every moment the
previous finished run, or the new one, is whole on disk.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lstmcli import __version__
from lstmcli.errors import CheckpointError
from lstmcli.fsutil import (
    SMALL_FILE_BYTES,
    TMP_INFIX,
    atomic_write,
    describe_kind,
    fsync_dir,
    json_text,
    os_error,
    read_bytes,
)
from lstmcli.runs.lock import LOCK, RunLock

MARKER = ".lstmcli-run"
MARKER_FORMAT = "lstmcli-run-directory"
LAYOUT_VERSION = 2  # 1: no marker, the run in progress in RUN itself (lstmcli 0.1.0)
CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
META = "meta.json"
METRICS = "metrics.json"
HISTORY = "history.csv"
LOSS_PLOT = "loss.png"
CHECKPOINT_DIR = "checkpoint"
STATE_POINTER = "state.json"
PARTIAL = "partial"
PREVIOUS = "partial.prev"
COMMITTED = ".partial.committed"  # partial/ after its files were moved up, while it is removed
# The finished run's files in the order they are moved into place: metrics.json last.
FINISHED = (CONFIG, WEIGHTS, META, HISTORY, LOSS_PLOT, METRICS)


def _json_format(path: Path) -> str | None:
    """The ``format`` field of a small JSON file, or None if it is absent, unreadable or not JSON."""
    if not path.is_file():
        return None
    try:
        data = json.loads(read_bytes(path, "JSON file", CheckpointError, SMALL_FILE_BYTES))
    except (CheckpointError, ValueError):
        return None
    value = data.get("format") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _there(path: Path) -> bool:
    return os.path.lexists(path)


class RunDir:
    """``RUN`` and the places inside it (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path / PARTIAL
        self.previous = path / PREVIOUS
        self.committed = path / COMMITTED
        self.created = False  # this process made RUN (removed again if it ends up holding nothing)
        self.marked = False  # this process wrote the marker (removed again if nothing else is left)

    # -- what is there ------------------------------------------------------------------------

    def is_ours(self) -> bool:
        """RUN carries the marker, or is a run written before the marker (by its metadata's JSON)."""
        if _json_format(self.path / MARKER) == MARKER_FORMAT:
            return True
        return _json_format(self.path / META) == "lstmcli-run" or (
            _json_format(self.path / CHECKPOINT_DIR / STATE_POINTER) == "lstmcli-train-state"
        )

    # The states below look only at whether a file is there (any kind of file): the readers refuse
    # one that is not a regular file, where a state that skipped it would lose the run around it.

    def finished(self) -> bool:
        return _there(self.path / METRICS)

    def in_progress(self) -> bool:
        """A run in progress with at least one epoch saved (something a new run would lose)."""
        return _there(self.partial / CHECKPOINT_DIR / STATE_POINTER)

    def awaiting_commit(self) -> bool:
        """A finished run in ``partial/`` whose move into place was interrupted."""
        return _there(self.partial / METRICS)

    def legacy_unfinished(self) -> bool:
        """An unfinished run of layout 1: its checkpoint in RUN itself."""
        return _there(self.path / CHECKPOINT_DIR / STATE_POINTER) and not self.finished()

    def check_target(self, ignore: frozenset[str] = frozenset()) -> None:
        """RUN may be trained into: absent, empty (but for ``ignore``), or an lstm run directory.
        Writes nothing."""
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{self.path}: exists and is not a directory; choose another output.dir")
        if not self.path.exists() or self.is_ours():
            return
        try:
            entries = sorted(p.name for p in self.path.iterdir() if p.name not in ignore)
        except OSError as exc:
            raise os_error(self.path, exc, "list", CheckpointError) from None
        if entries:
            shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
            raise CheckpointError(
                f"{self.path}: is not empty and not an lstm run directory (it holds {shown}; lstm writes a "
                f"{MARKER} marker into its runs); choose another output.dir (--set output.dir=...)"
            )

    # -- taking it ---------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[RunLock]:
        """Create RUN if needed, hold its lock, finish any interrupted move; on the way out, remove
        what this process created and left empty."""
        self.check_target()
        if not self.path.exists():
            try:
                self.path.mkdir(parents=True)
                self.created = True
                self.mark()  # at once, so that another lstm sees a run directory that is locked
            except FileExistsError:
                pass
            except OSError as exc:
                raise os_error(self.path, exc, "create the run directory", CheckpointError) from None
        try:
            with RunLock(self.path) as lock:
                self.check_target(ignore=frozenset({LOCK}))  # again, now that no other lstm can change it
                self.mark()
                self.recover()
                try:
                    yield lock
                finally:
                    self.abandon_unsaved()
        finally:
            self._tidy()

    def mark(self) -> None:
        """Write the marker (once)."""
        if _json_format(self.path / MARKER) != MARKER_FORMAT:
            marker = {"format": MARKER_FORMAT, "format_version": LAYOUT_VERSION, "lstmcli_version": __version__}
            atomic_write(self.path / MARKER, json_text(marker))
            self.marked = True

    def start(self, config_text: str) -> Path:
        """A fresh ``partial/`` holding ``config_text``; an unfinished run already there is set aside
        in ``partial.prev/`` until the new one saves its first epoch. Returns ``partial/``."""
        if self.in_progress():
            self._rmtree(self.previous)
            self._rename(self.partial, self.previous)
        else:
            self._rmtree(self.partial)  # a stub: a start that saved no epoch has nothing to lose
        self._mkdir(self.partial)
        atomic_write(self.partial / CONFIG, config_text)
        return self.partial

    def adopt_legacy(self) -> None:
        """Move a layout-1 unfinished run (config.yaml and checkpoint/ in RUN) into ``partial/``."""
        if not self.legacy_unfinished() or self.partial.exists():
            return
        self.mark()
        self._mkdir(self.partial)
        if (self.path / CONFIG).is_file():
            self._rename(self.path / CONFIG, self.partial / CONFIG)
        self._rename(self.path / CHECKPOINT_DIR, self.partial / CHECKPOINT_DIR)

    def epoch_saved(self) -> None:
        """The new run has a checkpoint: the unfinished run it replaces can go."""
        self._rmtree(self.previous)

    def check_replaceable(self) -> None:
        """Every place a finished file goes is free or holds a file: a directory (or a device) there
        would stop the move into place halfway, so it is refused before anything is trained."""
        for name in FINISHED:
            target = self.path / name
            if target.exists() and not target.is_file():
                raise CheckpointError(
                    f"{target}: is {describe_kind(target.stat().st_mode)}, where the run's {name} goes; move it away"
                )

    def commit(self) -> None:
        """Move the finished run in ``partial/`` into place (see the module docstring)."""
        self.check_replaceable()  # before the old metrics.json goes: a move that cannot finish never starts
        self._unlink(self.path / METRICS)  # from here on readers never take a mix for a finished run
        for name in FINISHED:
            if (self.partial / name).exists():
                self._replace(self.partial / name, self.path / name)
        fsync_dir(self.path)
        # What is left of partial/ (the checkpoint) is renamed before it is removed, so that a kill
        # in the middle of the removal cannot leave something that looks like a run to resume.
        self._rename(self.partial, self.committed)
        self._rmtree(self.committed)
        if _json_format(self.path / CHECKPOINT_DIR / STATE_POINTER) == "lstmcli-train-state":
            self._rmtree(self.path / CHECKPOINT_DIR)  # a layout-1 checkpoint left beside a finished run

    def recover(self) -> None:
        """Complete or undo what a killed process left half done (called holding the lock)."""
        if self.awaiting_commit():
            self.commit()
        self._rmtree(self.committed)
        if self.previous.exists():
            if self.in_progress():
                self._rmtree(self.previous)
            else:
                self._rmtree(self.partial)
                self._rename(self.previous, self.partial)
        for folder in (self.path, self.partial, self.partial / CHECKPOINT_DIR):
            if folder.is_dir():
                for tmp in folder.glob(f".*{TMP_INFIX}*"):
                    self._unlink(tmp)

    def abandon_unsaved(self) -> None:
        """A run that ends without having saved an epoch leaves nothing: its ``partial/`` goes
        (and a run it was replacing comes back)."""
        if self.partial.exists() and not self.in_progress() and not self.awaiting_commit():
            self._rmtree(self.partial)
        self.recover()

    def _tidy(self) -> None:
        """What this process added to a folder that ends up holding nothing else goes again: the
        marker it wrote, and the folder itself if it created it."""
        if not (self.created or self.marked):
            return
        try:
            left = {p.name for p in self.path.iterdir()}
            if left <= {MARKER, LOCK}:
                (self.path / MARKER).unlink(missing_ok=True)
                if self.created:
                    (self.path / LOCK).unlink(missing_ok=True)
                    self.path.rmdir()
        except OSError:
            pass

    # -- file operations, each an OSError turned into one line --------------------------------

    def _rmtree(self, path: Path) -> None:
        if path.is_symlink():
            self._unlink(path)
        elif path.exists():
            try:
                shutil.rmtree(path)
            except OSError as exc:
                raise os_error(path, exc, "remove", CheckpointError) from None

    def _rename(self, src: Path, dst: Path) -> None:
        try:
            os.rename(src, dst)
        except OSError as exc:
            raise os_error(src, exc, f"move it to {dst.name}", CheckpointError) from None

    _replace = _rename  # os.rename replaces a file on POSIX, atomically

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise os_error(path, exc, "remove", CheckpointError) from None

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise os_error(path, exc, "create", CheckpointError) from None


def enclosing_run(path: Path) -> Path | None:
    """The lstm run directory that is ``path`` or holds it, if any (only lstm train writes there)."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return None
    for folder in [resolved, *resolved.parents]:
        if folder.is_dir() and RunDir(folder).is_ours():
            return folder
    return None
