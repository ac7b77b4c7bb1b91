"""The CUDA path, on a machine with a GPU (skipped elsewhere: CI has none; run on a lent card).

The captured step must train exactly like the same step run eagerly, a resumed run must end
where an uninterrupted one does, and --nproc must refuse more CUDA processes than GPUs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lstmcli.commands.train import train
from lstmcli.config import load_config
from lstmcli.data.dataset import load_dataset
from lstmcli.runs.store import WEIGHTS
from lstmcli.training.trainer import Trainer, fit
from tests.conftest import ROOT, Crash, assert_same_tensors, crash_after

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = ["train.device=cuda", "train.batch_size=8", "model.dropout=0"]  # cuDNN's dropout state is not ours


@pytest.fixture(autouse=True)
def deterministic_cudnn() -> Iterator[None]:
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic = False


def test_captured_graph_trains_exactly_like_the_same_step_run_eagerly(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, [*CUDA, "train.epochs=4", "train.schedule=cosine"])  # lr changes: recaptures
    ds = load_dataset(cfg.data)
    runs = []
    for mode in ("captured", "eager"):
        tr = Trainer(cfg, ds, static_step=mode)
        assert tr.use_graph
        runs.append(fit(tr))
        assert (tr.static_step.graph is not None) is (mode == "captured")  # type: ignore[union-attr]
    graph, eager = runs
    assert [h["train_loss"] for h in graph.state.history] == [h["train_loss"] for h in eager.state.history]
    for name, value in eager.model.state_dict().items():
        assert torch.equal(value, graph.model.state_dict()[name]), name


def test_resume_on_cuda_ends_with_the_uninterrupted_weights(tiny_config: Path, tmp_path: Path) -> None:
    base = [*CUDA, "train.epochs=6", "train.schedule=plateau", "train.patience=2"]
    ref = tmp_path / "ref"
    train(load_config(tiny_config, [*base, f"output.dir={ref}"]), ref)
    cut = tmp_path / "cut"
    cfg = load_config(tiny_config, [*base, f"output.dir={cut}"])

    with pytest.raises(Crash):
        train(cfg, cut, "new", crash_after(3))
    train(cfg, cut, "resume")
    assert_same_tensors(load_file(ref / WEIGHTS), load_file(cut / WEIGHTS))


def test_more_cuda_processes_than_gpus_is_one_line_and_exit_2(tiny_config: Path) -> None:
    procs = torch.cuda.device_count() + 1
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstmcli",
            "train",
            str(tiny_config),
            "-q",
            "--nproc",
            str(procs),
            "--set",
            "train.device=cuda",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"needs one GPU each, but torch sees {procs - 1}" in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr  # said once, not once per process
