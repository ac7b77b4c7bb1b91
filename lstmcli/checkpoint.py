"""The run directory: safetensors weights, JSON/YAML metadata, atomic writes, never a pickle."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lstmcli import __version__
from lstmcli.config import Config, parse_yaml, validate_config
from lstmcli.errors import CheckpointError
from lstmcli.model import LSTMForecaster

CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
META = "meta.json"
METRICS = "metrics.json"
HISTORY = "history.csv"
LOSS_PLOT = "loss.png"
FORMAT = "lstmcli-run"
FORMAT_VERSION = 1
# Files that could hold a pickle: refused on sight, whatever their content.
_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib"}


# ---------------------------------------------------------------------------------------------
# Atomic writes


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write to a temporary file in the same directory, fsync it, then rename over ``path``."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def weights_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Serialise tensors as safetensors (CPU, contiguous)."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)


def read_weights(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load safetensors from ``path``; a truncated, garbled or altered file is a CheckpointError."""
    from safetensors.torch import load

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: weights file is missing") from None
    if expected_sha256 is not None and sha256(data) != expected_sha256:
        raise CheckpointError(
            f"{path}: weights do not match the checksum recorded in {META} (truncated or altered after training)"
        )
    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


# ---------------------------------------------------------------------------------------------
# Creating a run directory


def claim_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Make ``run_dir`` ready for a new run; refuse to replace a finished or unfinished run.

    With ``overwrite`` the old contents are removed, which the caller does only once the config
    and the data have been checked, so a typo never costs an existing run.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: exists and is not a directory; choose another output.dir")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            resume = " or --resume to continue it" if not (run_dir / METRICS).exists() else ""
            raise CheckpointError(
                f"{run_dir}: a run directory is already there; pass --overwrite to replace it{resume}, "
                "or set output.dir (--set output.dir=...)"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


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
    # starts with its header length as a little-endian u64, which can begin with the same two
    # bytes (a 896-byte header is 80 03 00 ...), so that layout is recognised first.
    with open(path, "rb") as fh:
        head = fh.read(9)
        if _is_safetensors(head, path.stat().st_size):
            return False
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _is_safetensors(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length that fits the file, then the JSON header's '{'."""
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 2 <= length <= size - 8


def load_run(run_dir: str | Path) -> Run:
    """Rebuild the model from the stored config, check every weight's shape, then load it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run directory not found")
    for name in (CONFIG, META, WEIGHTS):
        if not (run_dir / name).is_file():
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
    # Shapes first: weights copied from another run fail here, naming the tensor that differs,
    # rather than at the checksum, which would only say "altered".
    check_shapes(model, read_weights(run_dir / WEIGHTS), run_dir / WEIGHTS)
    tensors = read_weights(run_dir / WEIGHTS, meta.get("weights_sha256"))
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
