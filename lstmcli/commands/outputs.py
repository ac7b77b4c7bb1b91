"""Files a command writes for the user: never an input, never inside a run directory, all or none."""

from __future__ import annotations

from pathlib import Path

from lstmcli.errors import OutputError
from lstmcli.fsutil import atomic_write_all
from lstmcli.fsutil import check_outputs as check_paths
from lstmcli.runs.store import enclosing_run


def check_outputs(outputs: dict[str, Path | None], inputs: list[Path]) -> None:
    """Refuse (``{flag: path}``) a path that is an input, another output, or inside an lstm run
    directory (whose files only ``lstm train`` writes), before any work is done."""
    check_paths(outputs, inputs)
    for flag, out in outputs.items():
        run = enclosing_run(out) if out is not None else None
        if run is not None:
            raise OutputError(f"{flag} {out}: is inside the run directory {run}; write it elsewhere")


def write_outputs(files: dict[Path, bytes | str]) -> None:
    """Write every file, or none of them: each is written in full before the first replaces anything."""
    if files:
        atomic_write_all(files)
