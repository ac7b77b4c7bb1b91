"""The run directory: safetensors weights, JSON/YAML metadata, atomic writes, never a pickle."""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lstmcli import __version__
from lstmcli.config import MAX_CONFIG_BYTES, Config, parse_yaml, validate_config
from lstmcli.errors import CheckpointError
from lstmcli.fsutil import (
    SMALL_FILE_BYTES,
    MiB,
    atomic_write_json,
    atomic_write_with,
    read_bytes,
    read_text,
    sha256,
    sha256_file,
)
from lstmcli.model.forecaster import LSTMForecaster
from lstmcli.runs.schema import Metrics, RunMeta, read_model
from lstmcli.runs.store import CHECKPOINT_DIR, CONFIG, META, METRICS, STATE_POINTER, WEIGHTS, RunDir

FORMAT = "lstmcli-run"
FORMAT_VERSION = 1
STATE_FORMAT = "lstmcli-train-state"
STATE_FORMAT_VERSION = 1
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
    size_limit = limit if limit is not None else weights_limit(sum(p.numel() for p in model.parameters()) if model else 0)
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


# ---------------------------------------------------------------------------------------------
# Writing a finished run


def run_meta(cfg: Config, config_text: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The metadata every run records next to its weights."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lstmcli_version": __version__,
        "torch_version": torch.__version__,
        "config_sha256": sha256(config_text),
        "columns": {
            "target": list(cfg.data.target),
            "features": list(cfg.data.features),
            "date_column": cfg.data.date_column,
        },
        **extra,
    }


def save_model(run_dir: Path, model: torch.nn.Module, config_sha: str) -> str:
    """Write ``model.safetensors`` atomically; return its sha256 for the metadata."""
    return save_tensors(run_dir / WEIGHTS, model.state_dict(), {"format": FORMAT, "config_sha256": config_sha})


# ---------------------------------------------------------------------------------------------
# Loading a run directory


@dataclass(frozen=True)
class Run:
    """A trained run: its config, metadata and model with the trained weights."""

    path: Path
    cfg: Config
    meta: RunMeta
    model: LSTMForecaster

    def metrics(self) -> Metrics | None:
        path = self.path / METRICS
        return read_model(path, Metrics) if path.exists() else None


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


def load_run(run_dir: str | Path) -> Run:
    """Rebuild the model from the stored config, check every weight's shape, then load it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file, not a run directory" if run_dir.is_file() else "run directory not found"
        raise CheckpointError(f"{run_dir}: {what} (runs are the directories lstm train writes)")
    store = RunDir(run_dir)
    missing = [name for name in (CONFIG, META, WEIGHTS) if not (run_dir / name).is_file()]
    if store.awaiting_commit():
        _complete_move(store)
    if missing and (store.in_progress() or store.legacy_unfinished()):
        raise CheckpointError(
            f"{run_dir}: {missing[0]} is missing: the run has not finished (it stopped after a checkpoint); "
            f"continue it with: lstm resume {run_dir}"
        )
    if missing:
        raise CheckpointError(f"{run_dir}: {missing[0]} is missing; not a complete lstm run directory")
    refuse_pickles(run_dir)
    meta = read_model(run_dir / META, RunMeta)
    config_path = run_dir / CONFIG
    config_text = read_text(config_path, "run config", CheckpointError, MAX_CONFIG_BYTES)
    if sha256(config_text) != meta.config_sha256:
        raise CheckpointError(
            f"{config_path}: was edited after training (its checksum differs from {META}); "
            "the weights belong to the original config — retrain, or restore the file"
        )
    cfg = validate_config(parse_yaml(config_text, str(config_path)), str(config_path))
    model = LSTMForecaster.from_config(cfg)
    tensors = read_weights(run_dir / WEIGHTS, meta.weights_sha256, model)
    model.load_state_dict(tensors)
    model.eval()
    return Run(path=run_dir, cfg=cfg, meta=meta, model=model)


def _complete_move(store: RunDir) -> None:
    """A finished run whose move into place was interrupted (a kill in the milliseconds it takes):
    complete it, as SQLite's readers roll back a hot journal, so the reader gets the new run."""
    try:
        with store.locked():
            pass  # taking the lock completes the move (RunDir.recover)
    except CheckpointError as exc:
        raise CheckpointError(
            f"{store.path}: a finished run is being moved into place here and could not be completed now "
            f"({exc}); try again in a moment"
        ) from None


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
# Training checkpoints: checkpoint/state-<epoch>.safetensors (tensors) + checkpoint/state.json
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
    name = f"state-{int(info['epoch']):06d}.safetensors"
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
    info = from_json_safe({k: v for k, v in pointer.items() if k not in {"format", "format_version", "tensors", "tensors_sha256"}})
    for key in ("epoch", "config_sha256", "trainer", "optimizer", "rng"):
        if key not in info:
            raise CheckpointError(f"{pointer_path}: key '{key}' is missing; the checkpoint is incomplete")
    return TrainCheckpoint(tensors=tensors, info=info)
