"""Safetensors files, written streamed and atomically, read bounded and checked; pickles refused.

Nothing in a run directory is ever unpickled: weights and checkpoints are safetensors, everything
else JSON or YAML. A file that could hold a pickle (by its suffix, or by starting like one) makes
the whole run directory refused before anything is read.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import torch

from lstmcli.errors import CheckpointError
from lstmcli.fsutil import (
    SMALL_FILE_BYTES,
    MiB,
    atomic_write_with,
    read_bytes,
    sha256,
    sha256_file,
)
from lstmcli.runs.store import META

# Files that could hold a pickle: refused on sight, whatever their content.
_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib"}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """Write tensors (CPU, contiguous) as a safetensors file, atomically; returns its sha256.

    ``save_file`` streams each tensor to the file; building the whole file as bytes first (``save``)
    doubled the memory at every checkpoint, and a failed allocation in its Rust code aborts the
    process instead of raising MemoryError."""
    from safetensors.torch import save_file

    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        try:
            save_file(flat, tmp, metadata=metadata)
        except OSError:
            raise
        except Exception as exc:  # SafetensorError wraps the OS error: "... (os error 28)"
            code = re.search(r"os error (\d+)", str(exc))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1)))) from None

    atomic_write_with(path, write)
    return sha256_file(path, CheckpointError)


def read_weights(
    path: Path, expected_sha256: str | None = None, model: torch.nn.Module | None = None, limit: int | None = None
) -> dict[str, torch.Tensor]:
    """Load safetensors from ``path``; a truncated, garbled or altered file is a CheckpointError.

    With ``model``, every tensor's shape is checked before the checksum, so weights copied from
    another run name the tensor that differs rather than only failing the checksum.
    """
    from safetensors.torch import load

    if not path.exists():
        raise CheckpointError(f"{path}: weights file is missing")
    size_limit = (
        limit if limit is not None else weights_limit(sum(p.numel() for p in model.parameters()) if model else 0)
    )
    data = read_bytes(path, "safetensors file", CheckpointError, size_limit)
    altered = expected_sha256 is not None and sha256(data) != expected_sha256
    altered_msg = f"{path}: weights do not match the checksum recorded in {META} (truncated or altered after training)"
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise CheckpointError(altered_msg if altered else f"{path}: not a readable safetensors file ({exc})") from None
    if model is not None:
        check_shapes(model, tensors, path)
    if altered:
        raise CheckpointError(altered_msg)
    return tensors


def read_json(path: Path) -> Any:
    """A small JSON file of the run (a regular file, bounded in size)."""
    if not path.exists():
        raise CheckpointError(f"{path}: file is missing")
    try:
        return json.loads(read_bytes(path, "JSON file", CheckpointError, SMALL_FILE_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None


def refuse_pickles(run_dir: Path) -> None:
    """Refuse a run directory that holds anything that could be a pickle; nothing is opened."""
    for item in sorted(run_dir.rglob("*")):
        if not item.is_file():
            continue
        if item.suffix.lower() in _PICKLE_SUFFIXES or _looks_pickled(item):
            raise CheckpointError(
                f"{item}: looks like a pickle file; lstm never unpickles and refuses run directories "
                "that hold one (weights belong in model.safetensors)"
            )


def _looks_pickled(path: Path) -> bool:
    # Pickle protocols 2-5 start with PROTO (0x80) and the protocol number. A safetensors file
    # starts with its header length (u64, little-endian) and then '{'; a header of 640..1535 bytes
    # also starts 0x80 0x02..0x05, so recognise safetensors first.
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if n <= path.stat().st_size - 8:
            return False
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def weights_limit(parameters: int, copies: int = 1) -> int:
    """The largest safetensors file that can hold ``copies`` fp32 copies of a model's weights (plus
    the header and, for a checkpoint, the RNG states): a bigger one is refused unread."""
    return copies * 4 * parameters + 16 * MiB


def check_shapes(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Every tensor the config's model needs, with its exact shape, and nothing else."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name, shape in expected.items():
        if name not in tensors:
            raise CheckpointError(f"{source}: tensor '{name}' is missing (config expects shape {list(shape)})")
        got = tuple(tensors[name].shape)
        if got != shape:
            raise CheckpointError(
                f"{source}: tensor '{name}' has shape {list(got)} but the config (n, m, layers, horizon) "
                f"expects {list(shape)}"
            )
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise CheckpointError(f"{source}: unexpected tensor(s) {', '.join(extra)} for this config")
