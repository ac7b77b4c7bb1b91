"""Training checkpoints: one generation per epoch, written so that a kill at any moment leaves the
previous generation or the new one, never a mix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lstmcli.errors import CheckpointError
from lstmcli.fsutil import (
    atomic_write_json,
)
from lstmcli.runs.store import CHECKPOINT_DIR, STATE_POINTER
from lstmcli.runs.tensors import read_json, read_weights, refuse_pickles, save_tensors, weights_limit

STATE_FORMAT = "lstmcli-train-state"
STATE_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# JSON that keeps non-finite floats (a scheduler's "best" starts at inf) and stays strict JSON


def to_json_safe(obj: Any) -> Any:
    """Tuples become lists; inf/-inf/nan become ``{"$float": "inf"}`` so the file is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"$float": repr(obj)}
    if isinstance(obj, dict):
        return {str(k): to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json_safe(v) for v in obj]
    return obj


def from_json_safe(obj: Any) -> Any:
    """Undo ``to_json_safe``."""
    if isinstance(obj, dict):
        if set(obj) == {"$float"}:
            return float(obj["$float"])
        return {k: from_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# Training checkpoints: checkpoint/state-<generation>.safetensors (tensors) + checkpoint/state.json
#
# The JSON is the pointer: it names the tensors file of its generation and that file's sha256,
# and it is replaced last (atomic rename), so a kill at any moment leaves either the old pair or
# the new pair, never a mix. Older generations are deleted only after the pointer moved.


@dataclass(frozen=True)
class TrainCheckpoint:
    """One saved end-of-epoch training state: tensors and the JSON that describes them."""

    tensors: dict[str, torch.Tensor]
    info: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.info["epoch"])


def save_train_state(run_dir: Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> Path:
    """Write one checkpoint generation atomically; return the pointer's path."""
    ck_dir = run_dir / CHECKPOINT_DIR
    ck_dir.mkdir(exist_ok=True)
    # A generation is named by the epochs trained, the refit's after early stopping's, so that a
    # new generation never overwrites the file of the one the pointer still names.
    generation = int(info["epoch"]) + int(info.get("trainer", {}).get("refit_epoch") or 0)
    name = f"state-{generation:06d}.safetensors"
    digest = save_tensors(ck_dir / name, tensors, {"format": STATE_FORMAT})
    pointer = {
        "format": STATE_FORMAT,
        "format_version": STATE_FORMAT_VERSION,
        "tensors": name,
        "tensors_sha256": digest,
        **to_json_safe(info),
    }
    atomic_write_json(ck_dir / STATE_POINTER, pointer)
    for old in ck_dir.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return ck_dir / STATE_POINTER


def load_train_state(run_dir: Path, parameters: int) -> TrainCheckpoint | None:
    """The last checkpoint in ``run_dir``, or None when no epoch was saved yet. ``parameters``
    (the config's model size) bounds the size of the tensors file read."""
    ck_dir = run_dir / CHECKPOINT_DIR
    pointer_path = ck_dir / STATE_POINTER
    if not pointer_path.exists():
        return None
    refuse_pickles(run_dir)
    pointer = read_json(pointer_path)
    if not isinstance(pointer, dict) or pointer.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{pointer_path}: not an lstm training checkpoint (no format: {STATE_FORMAT})")
    if pointer.get("format_version") != STATE_FORMAT_VERSION:
        raise CheckpointError(
            f"{pointer_path}: checkpoint format_version {pointer.get('format_version')!r}, "
            f"this lstm reads version {STATE_FORMAT_VERSION}"
        )
    name = pointer.get("tensors")
    if not isinstance(name, str) or "/" in name or "\\" in name or not name.endswith(".safetensors"):
        raise CheckpointError(f"{pointer_path}: key 'tensors' must name a .safetensors file in {ck_dir}")
    try:
        # the weights, the best weights, two Adam moments: four copies of the model
        tensors = read_weights(ck_dir / name, pointer.get("tensors_sha256"), limit=weights_limit(parameters, copies=4))
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (named by {pointer_path})") from None
    info = from_json_safe(
        {k: v for k, v in pointer.items() if k not in {"format", "format_version", "tensors", "tensors_sha256"}}
    )
    for key in ("epoch", "config_sha256", "trainer", "optimizer", "rng"):
        if key not in info:
            raise CheckpointError(f"{pointer_path}: key '{key}' is missing; the checkpoint is incomplete")
    return TrainCheckpoint(tensors=tensors, info=info)
