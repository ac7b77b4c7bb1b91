"""A run directory from elsewhere cannot run code: planted pickles are refused, never loaded."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.commands.train import train
from lstmcli.config import load_config
from tests.conftest import Crash, crash_after, write_config

runner = CliRunner()


class Payload:
    """Unpickling this opens ``marker`` for writing, which creates the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.marker), "w"))


def payload(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker), protocol=4)


def test_the_payload_really_executes_when_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "proof"
    pickle.loads(payload(marker)).close()  # the one deliberate unpickle, to prove the threat is real
    assert marker.exists()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished run and an unfinished one (checkpoint of epoch 1), built once."""
    d = tmp_path_factory.mktemp("runs")
    from tests.conftest import write_csv

    write_csv(d / "series.csv")
    config = write_config(d / "c.yaml", train={"epochs": 3})
    train(load_config(config), d / "finished")

    with pytest.raises(Crash):
        train(load_config(config, [f"output.dir={d / 'unfinished'}"]), d / "unfinished", "new", crash_after(1))
    return {"finished": d / "finished", "unfinished": d / "unfinished", "config": config}


PLANTS: dict[str, Callable[[Path, bytes], None]] = {
    "model.pt": lambda run, data: (run / "model.pt").write_bytes(data),
    "state.pkl": lambda run, data: (run / "state.pkl").write_bytes(data),
    "checkpoint/opt.bin": lambda run, data: (
        (run / "checkpoint").mkdir(exist_ok=True) or (run / "checkpoint" / "opt.bin").write_bytes(data)
    ),
    "pickle as model.safetensors": lambda run, data: (run / "model.safetensors").write_bytes(data),
    "pickle as metrics.json": lambda run, data: (run / "metrics.json").write_bytes(data),
    "pickle as checkpoint tensors": lambda run, data: [
        p.write_bytes(data) for p in (run / "partial" / "checkpoint").glob("state-*.safetensors")
    ],
}


@pytest.mark.parametrize("which", ["finished", "unfinished"])
@pytest.mark.parametrize("plant", PLANTS, ids=list(PLANTS))
def test_no_command_executes_a_planted_pickle(
    tmp_path: Path, runs: dict[str, Path], which: str, plant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if plant == "pickle as checkpoint tensors" and which == "finished":
        pytest.skip("a finished run has no checkpoint")
    run = tmp_path / "run"
    shutil.copytree(runs[which], run)
    marker = tmp_path / "PWNED"
    PLANTS[plant](run, payload(marker))
    config = write_config(tmp_path / "c.yaml", csv=str(runs["config"].parent / "series.csv"))
    monkeypatch.chdir(tmp_path)
    csv = str(runs["config"].parent / "series.csv")
    commands = [
        ["inspect", str(run)],
        ["inspect", str(run), "--json"],
        ["resume", str(run)],
        ["train", str(config), "--resume"],
        ["predict", str(run), "--data", csv],
        ["predict", str(run), "--data", csv, "--backtest"],
    ]
    for args in commands:
        result = runner.invoke(app, args)
        assert not marker.exists(), f"{args} executed the pickle"
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        line = result.output.strip()
        assert len(line.splitlines()) == 1, result.output
        assert "pickle" in line or "missing" in line or "not found" in line, (args, line)


def test_safetensors_header_that_starts_like_a_pickle_is_not_refused(tmp_path: Path) -> None:
    # A safetensors header of 640..1535 bytes begins 0x80 0x02..0x05, like a pickle's PROTO opcode.
    import torch
    from safetensors.torch import save

    from lstmcli.runs.tensors import refuse_pickles

    for pad in range(0, 1500):
        data = save({"w": torch.zeros(1)}, metadata={"pad": "x" * pad})
        if data[0] == 0x80 and 2 <= data[1] <= 5:
            break
    else:
        pytest.fail("no header length hit the pickle prefix")
    (tmp_path / "model.safetensors").write_bytes(data)
    refuse_pickles(tmp_path)  # no error
