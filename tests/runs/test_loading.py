"""Loading a run directory: safetensors never mistaken for a pickle, pickles always refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import save
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.errors import CheckpointError
from lstmcli.fsutil import sha256
from lstmcli.runs.run import load_run
from lstmcli.runs.store import META, WEIGHTS
from lstmcli.runs.tensors import read_weights

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import write_config, write_csv

    d = tmp_path_factory.mktemp("run")
    write_csv(d / "series.csv")
    cfg = write_config(d / "tiny.yaml", train={"epochs": 2})
    assert runner.invoke(app, ["train", str(cfg), "-q"]).exit_code == 0
    return d / "run"


def _weights_with_header_length(tensors: dict, length: int) -> bytes:
    """Re-save ``tensors`` with metadata padding chosen so the JSON header is ``length`` bytes."""
    for pad in range(2000):
        data = save(tensors, {"pad": "x" * pad})
        if int.from_bytes(data[:8], "little") == length:
            return data
    raise AssertionError(f"no padding gives a {length}-byte header")


def test_safetensors_whose_length_bytes_look_like_pickle_magic_loads(run_dir: Path, tmp_path: Path) -> None:
    # A 896-byte header is stored as 80 03 00 ..., the same two bytes as a protocol-3 pickle.
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    data = _weights_with_header_length(read_weights(run / WEIGHTS), 0x380)
    assert data[:2] == b"\x80\x03"
    (run / WEIGHTS).write_bytes(data)
    meta = json.loads((run / META).read_text())
    meta["weights_sha256"] = sha256(data)
    (run / META).write_text(json.dumps(meta))
    loaded = load_run(run)
    assert loaded.model.m == 8


@pytest.mark.parametrize("name", ["model.safetensors", "extra.dat", "weights.pt"])
def test_pickle_files_are_refused(run_dir: Path, tmp_path: Path, name: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / name).write_bytes(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.")  # a protocol-4 pickle's start
    with pytest.raises(CheckpointError, match="looks like a pickle"):
        load_run(run)
    result = runner.invoke(app, ["inspect", str(run)])
    assert result.exit_code == 2 and "Traceback" not in result.output
