"""The run directory: safetensors weights, JSON/YAML metadata, atomic writes, never a pickle."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lstmcli import __version__
from lstmcli.config import Config, parse_yaml, validate_config
from lstmcli.errors import CheckpointError
from lstmcli.fsutil import atomic_write, atomic_write_json, sha256
from lstmcli.model import LSTMForecaster

CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
META = "meta.json"
METRICS = "metrics.json"
HISTORY = "history.csv"
LOSS_PLOT = "loss.png"
FORMAT = "lstmcli-run"
FORMAT_VERSION = 1
LOCK = ".lock"
CHECKPOINT_DIR = "checkpoint"
STATE_POINTER = "state.json"
STATE_FORMAT = "lstmcli-train-state"
STATE_FORMAT_VERSION = 1
# Files that could hold a pickle: refused on sight, whatever their content.
_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib"}


def weights_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Serialise tensors as safetensors (CPU, contiguous)."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)


def read_weights(
    path: Path, expected_sha256: str | None = None, model: torch.nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """Load safetensors from ``path``; a truncated, garbled or altered file is a CheckpointError.

    With ``model``, every tensor's shape is checked before the checksum, so weights copied from
    another run name the tensor that differs rather than only failing the checksum.
    """
    from safetensors.torch import load

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: weights file is missing") from None
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
# Creating a run directory


def claim_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Make ``run_dir`` ready for a new run; refuse to replace a finished or unfinished run.

    With ``overwrite`` the old contents are removed, which the caller does only once the config
    and the data have been checked, so a typo never costs an existing run.
    """
    check_run_dir_path(run_dir)
    contents = [p for p in run_dir.iterdir() if p.name != LOCK] if run_dir.exists() else []
    if contents:
        foreign = sorted(p.name for p in contents if not _is_run_file(p.name))
        if foreign:
            # Never delete what lstm did not write: output.dir may point at a project folder.
            shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
            raise CheckpointError(
                f"{run_dir}: is not empty and not an lstm run directory (it holds {shown}); "
                "choose another output.dir (--set output.dir=...)"
            )
        if not overwrite:
            resume = " or --resume to continue it" if not (run_dir / METRICS).exists() else ""
            raise CheckpointError(
                f"{run_dir}: a run directory is already there; pass --overwrite to replace it{resume}, "
                "or set output.dir (--set output.dir=...)"
            )
        for item in contents:  # everything but the lock this process holds
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


_RUN_FILES = {CONFIG, WEIGHTS, META, METRICS, HISTORY, LOSS_PLOT, CHECKPOINT_DIR, LOCK}


def _is_run_file(name: str) -> bool:
    """A file ``lstm train`` writes (or a temporary file of one of its atomic writes)."""
    return name in _RUN_FILES or (name.startswith(".") and ".tmp-" in name)


def check_run_dir_path(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: exists and is not a directory; choose another output.dir")


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
    data = weights_bytes(model.state_dict(), {"format": FORMAT, "config_sha256": config_sha})
    atomic_write(run_dir / WEIGHTS, data)
    return sha256(data)


# ---------------------------------------------------------------------------------------------
# Loading a run directory


@dataclass(frozen=True)
class Run:
    """A trained run: its config, metadata and model with the trained weights."""

    path: Path
    cfg: Config
    meta: dict[str, Any]
    model: LSTMForecaster

    def metrics(self) -> dict[str, Any] | None:
        path = self.path / METRICS
        if not path.exists():
            return None
        return read_json(path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file is missing") from None
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
    for name in (CONFIG, META, WEIGHTS):
        if not (run_dir / name).is_file():
            if (run_dir / CHECKPOINT_DIR / STATE_POINTER).is_file():
                raise CheckpointError(
                    f"{run_dir}: {name} is missing: the run has not finished (it stopped after a checkpoint); "
                    f"continue it with: lstm resume {run_dir}"
                )
            raise CheckpointError(f"{run_dir}: {name} is missing; not a complete lstm run directory")
    refuse_pickles(run_dir)
    meta = read_json(run_dir / META)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{run_dir / META}: not an lstm run's metadata (no format: {FORMAT})")
    config_text = (run_dir / CONFIG).read_text(encoding="utf-8")
    if sha256(config_text) != meta.get("config_sha256"):
        raise CheckpointError(
            f"{run_dir / CONFIG}: was edited after training (its checksum differs from {META}); "
            "the weights belong to the original config — retrain, or restore the file"
        )
    cfg = validate_config(parse_yaml(config_text, str(run_dir / CONFIG)), str(run_dir / CONFIG))
    model = LSTMForecaster.from_config(cfg)
    tensors = read_weights(run_dir / WEIGHTS, meta.get("weights_sha256"), model)
    model.load_state_dict(tensors)
    model.eval()
    return Run(path=run_dir, cfg=cfg, meta=meta, model=model)


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
    data = weights_bytes(tensors, {"format": STATE_FORMAT})
    atomic_write(ck_dir / name, data)
    pointer = {
        "format": STATE_FORMAT,
        "format_version": STATE_FORMAT_VERSION,
        "tensors": name,
        "tensors_sha256": sha256(data),
        **to_json_safe(info),
    }
    atomic_write_json(ck_dir / STATE_POINTER, pointer)
    for old in ck_dir.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return ck_dir / STATE_POINTER


def load_train_state(run_dir: Path) -> TrainCheckpoint | None:
    """The last checkpoint in ``run_dir``, or None when no epoch was saved yet."""
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
        tensors = read_weights(ck_dir / name, pointer.get("tensors_sha256"))
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (named by {pointer_path})") from None
    info = from_json_safe({k: v for k, v in pointer.items() if k not in {"format", "format_version", "tensors", "tensors_sha256"}})
    for key in ("epoch", "config_sha256", "trainer", "optimizer", "rng"):
        if key not in info:
            raise CheckpointError(f"{pointer_path}: key '{key}' is missing; the checkpoint is incomplete")
    return TrainCheckpoint(tensors=tensors, info=info)


def remove_stale_temps(run_dir: Path) -> None:
    """Delete temporary files a killed writer left behind (called while holding the lock)."""
    for item in [*run_dir.glob(".*.tmp-*"), *(run_dir / CHECKPOINT_DIR).glob(".*.tmp-*")]:
        item.unlink(missing_ok=True)


def remove_checkpoint(run_dir: Path) -> None:
    """Drop the training checkpoint once the finished run's files are written."""
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# One trainer per run directory


class RunLock:
    """``run_dir/.lock`` created with O_CREAT|O_EXCL, holding our pid; a dead holder's lock is cleared.

    The lock is a context manager; it creates ``run_dir`` (and parents) if needed.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        check_run_dir_path(self.run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"{self.run_dir}: cannot create the run directory ({exc.strerror})") from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid())}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except PermissionError as exc:
                raise CheckpointError(f"{self.path}: cannot create the lock file ({exc.strerror})") from None
            except FileExistsError:
                holder = self._read_holder()
                if holder == {}:
                    continue  # released between our open and our read
                if holder is not None and _alive(holder):
                    raise CheckpointError(
                        f"{self.run_dir}: locked by another lstm process (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, see {self.path}); wait for it to finish, or delete the lock "
                        "file if that process is gone"
                    ) from None
                self._break_stale(holder)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(me) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self.held = True
            return
        raise CheckpointError(f"{self.path}: could not take the lock (it keeps reappearing); try again")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def _read_holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}  # released between our open and our read: not stale, just gone
        except (OSError, ValueError):
            return None  # unreadable (a writer killed mid-write): stale
        return holder if isinstance(holder, dict) else None

    def _break_stale(self, holder: dict[str, Any] | None) -> None:
        # Only remove the file if it still says what we judged stale (narrows the race with a
        # second process breaking the same lock and taking a fresh one).
        try:
            now = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            now = None
        if now == holder or holder is None:
            self.path.unlink(missing_ok=True)


def _proc_stat(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()  # fields from 3 (state) on; the name may hold spaces


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), to tell a reused pid from the holder."""
    fields = _proc_stat(pid)
    return fields[19] if fields else None


def _alive(holder: dict[str, Any]) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if holder.get("host") not in (None, socket.gethostname()):
        return True  # another machine's process: we cannot tell, so keep out
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc: the pid answers, so assume it is the holder
    if fields[0] in ("Z", "X"):
        return False  # killed, waiting to be reaped
    start = holder.get("start")
    return start is None or fields[19] == start
