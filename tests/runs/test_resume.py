"""Checkpoint every epoch; resume bit-identical; locks; signals; divergence keeps the checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.commands.train import train
from lstmcli.config import load_config
from lstmcli.errors import CheckpointError, Interrupted
from lstmcli.runs import checkpoints as ck
from lstmcli.runs.lock import LOCK, RunLock
from lstmcli.runs.store import MARKER, METRICS, WEIGHTS, RunDir
from tests.conftest import Crash, OnEpoch, assert_same_tensors, crash_after, write_config

runner = CliRunner()


def assert_same_weights(a: Path, b: Path) -> None:
    assert_same_tensors(load_file(a / WEIGHTS), load_file(b / WEIGHTS))


CASES = {
    "adamw-plateau-dropout": ["model.dropout=0.3", "train.schedule=plateau", "train.patience=3"],
    "adam-cosine": ["train.optimizer=adam", "train.schedule=cosine", "train.weight_decay=0.01"],
    "early-stop": ["train.lr=0.05", "train.schedule=none", "train.patience=2"],
    "quantile": ["train.loss=quantile", "model.quantiles=[0.05, 0.5, 0.95]"],
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_resume_after_a_crash_is_bit_identical(tmp_path: Path, tiny_csv: Path, overrides: list[str]) -> None:
    config = write_config(tmp_path / "c.yaml")
    base = ["train.epochs=8", "train.batch_size=8", *overrides]
    ref = train(load_config(config, [*base, f"output.dir={tmp_path / 'ref'}"]), tmp_path / "ref")
    cfg = load_config(config, [*base, f"output.dir={tmp_path / 'cut'}"])
    for cut in (2, 4):
        try:
            train(cfg, tmp_path / "cut", "resume" if cut > 2 else "new", crash_after(cut))
        except Crash:
            pass
        else:  # early stopping may finish first
            break
        state = json.loads((tmp_path / "cut" / "partial" / "checkpoint" / "state.json").read_text())
        assert state["epoch"] == cut
        assert not (tmp_path / "cut" / LOCK).exists()
    resumed = train(cfg, tmp_path / "cut", "resume")
    assert_same_weights(tmp_path / "ref", tmp_path / "cut")
    assert [h["val_loss"] for h in resumed.result.state.history] == [h["val_loss"] for h in ref.result.state.history]
    assert resumed.metrics is not None and ref.metrics is not None and resumed.metrics.test == ref.metrics.test
    assert resumed.metrics.calibration == ref.metrics.calibration and resumed.metrics.intervals == ref.metrics.intervals
    assert resumed.metrics.quantiles == ref.metrics.quantiles
    assert not (tmp_path / "cut" / "partial").exists()  # moved into place once the run finished


def test_each_refit_epoch_is_a_new_checkpoint_generation(tmp_path: Path) -> None:
    # The refit's epochs keep early stopping's epoch count: were the generations named by it alone,
    # each would overwrite the file the pointer still names.
    run = tmp_path / "partial"
    run.mkdir()
    for refit in (1, 2):
        info = {"epoch": 7, "trainer": {"refit_epoch": refit}, "config_sha256": "x", "optimizer": {}, "rng": {}}
        ck.save_train_state(run, {"w": torch.full((2,), float(refit))}, info)
        saved = ck.load_train_state(run, 10)
        assert saved is not None and saved.info["trainer"]["refit_epoch"] == refit
        assert torch.equal(saved.tensors["w"], torch.full((2,), float(refit)))
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == ["state-000009.safetensors", "state.json"]


def test_checkpoint_holds_every_part_of_the_state(tmp_path: Path, tiny_csv: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["train.epochs=5"])
    with pytest.raises(Crash):
        train(cfg, tmp_path / "run", "new", crash_after(2))
    ck_dir = tmp_path / "run" / "partial" / "checkpoint"
    assert sorted(p.name for p in ck_dir.iterdir()) == ["state-000002.safetensors", "state.json"]
    saved = ck.load_train_state(tmp_path / "run" / "partial", cfg.parameters)
    assert saved is not None and saved.epoch == 2
    names = set(saved.tensors)
    assert {"rng.torch", "rng.shuffle", "rng.numpy_keys"} <= names
    assert any(n.startswith("model.") for n in names) and any(n.startswith("best.") for n in names)
    assert any(n.startswith("optim.") and n.endswith("exp_avg_sq") for n in names)
    assert {"python", "numpy"} <= set(saved.info["rng"])
    assert saved.info["scheduler"]["last_epoch"] == 2 and saved.info["scheduler"]["num_bad_epochs"] >= 0
    assert len(saved.info["trainer"]["history"]) == 2
    assert "Infinity" not in (ck_dir / "state.json").read_text()


def test_a_kill_between_tensors_and_pointer_keeps_the_previous_generation(
    tmp_path: Path, tiny_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml"), ["train.epochs=5"])
    real = ck.atomic_write_json

    def dies_on_epoch_3_pointer(path, obj) -> None:  # noqa: ANN001
        if Path(path).name == "state.json" and obj["epoch"] == 3:
            raise Crash
        real(path, obj)

    monkeypatch.setattr(ck, "atomic_write_json", dies_on_epoch_3_pointer)
    with pytest.raises(Crash):
        train(cfg, tmp_path / "run")
    monkeypatch.setattr(ck, "atomic_write_json", real)
    saved = ck.load_train_state(tmp_path / "run" / "partial", cfg.parameters)
    assert saved is not None and saved.epoch == 2  # the orphan epoch-3 tensors are ignored
    train(cfg, tmp_path / "run", "resume")
    train(cfg.model_copy(), tmp_path / "ref")
    assert_same_weights(tmp_path / "ref", tmp_path / "run")


def test_lock_refuses_a_live_holder_and_names_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):
        with pytest.raises(CheckpointError, match=rf"another lstm process is training into it \(pid {os.getpid()} on "):
            RunLock(run).acquire()
    assert not (run / LOCK).exists()  # removed by its holder on release


def test_a_lock_whose_holder_died_is_free_whatever_the_file_says(tmp_path: Path) -> None:
    # The kernel releases a flock when its process dies, so neither a pid that is gone nor another
    # host's name (a container restart gives a new hostname) can leave a stale lock behind.
    import subprocess
    import sys

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from lstmcli.runs.lock import RunLock; "
            "l = RunLock(Path(sys.argv[1])); l.acquire(); print('held', flush=True); time.sleep(60)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(CheckpointError, match=f"pid {holder.pid}"):
        RunLock(run).acquire()
    holder.kill()
    holder.wait()
    holder.stdout.close()
    (run / LOCK).write_text(json.dumps({"pid": 1, "host": "another-host", "since": "2026-01-01 00:00:00"}))
    with RunLock(run) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    (run / LOCK).write_text("{garbled")
    with RunLock(run):
        pass


def test_train_into_a_locked_run_dir_exits_2(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    run = tmp_path / "run"
    run.mkdir()
    RunDir(run).mark()
    with RunLock(run):
        for args in (["train", str(config), "-q"], ["train", str(config), "-q", "--resume"]):
            result = runner.invoke(app, args)
            assert result.exit_code == 2, result.output
            assert "another lstm process is training into it" in result.output and str(run) in result.output
            assert len(result.output.strip().splitlines()) == 1
        assert sorted(p.name for p in run.iterdir()) == [LOCK, MARKER]


def test_resume_cli_continues_and_then_refuses_a_finished_run(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml", train={"epochs": 4})
    with pytest.raises(Crash):
        train(load_config(config), tmp_path / "run", "new", crash_after(2))
    fresh = runner.invoke(app, ["train", str(config), "-q"])
    assert fresh.exit_code == 2 and "--resume" in fresh.output
    result = runner.invoke(app, ["resume", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "resuming from the checkpoint of epoch 2" in result.output and "epoch 3/4" in result.output
    assert "seasonal naive" in result.output
    again = runner.invoke(app, ["resume", str(tmp_path / "run")])
    assert again.exit_code == 2 and "already finished" in again.output


def test_train_resume_without_a_checkpoint_starts_the_run(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml", train={"epochs": 2})
    result = runner.invoke(app, ["train", str(config), "-q", "--resume"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / METRICS).exists()


def test_resume_refuses_a_different_config(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml", train={"epochs": 4})
    with pytest.raises(Crash):
        train(load_config(config), tmp_path / "run", "new", crash_after(1))
    result = runner.invoke(app, ["train", str(config), "-q", "--resume", "--set", "train.lr=0.01"])
    assert result.exit_code == 2
    assert "train.lr is 0.003 in the run but 0.01 now" in result.output


@pytest.mark.parametrize("signum", [2, 15])
def test_a_signal_stops_at_a_batch_leaves_the_checkpoint_and_resumes_identically(
    tmp_path: Path, tiny_csv: Path, signum: int
) -> None:
    config = write_config(tmp_path / "c.yaml", train={"epochs": 5, "batch_size": 4})
    cfg = load_config(config)
    train(cfg.model_copy(), tmp_path / "ref")

    def on_epoch_end(report) -> None:  # noqa: ANN001
        if report.epoch == 2:
            os.kill(os.getpid(), signum)  # delivered now; the loop stops at the next batch

    with pytest.raises(Interrupted) as info:
        train(cfg, tmp_path / "run", "new", OnEpoch(on_epoch_end))
    assert info.value.exit_code == 128 + signum
    assert f"lstm resume {tmp_path / 'run'}" in str(info.value) and "epoch 2" in str(info.value)
    assert not (tmp_path / "run" / LOCK).exists()
    train(cfg, tmp_path / "run", "resume")
    assert_same_weights(tmp_path / "ref", tmp_path / "run")


def test_divergence_keeps_the_best_checkpoint_and_exits_1(
    tmp_path: Path, tiny_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lstmcli.training.trainer import Trainer

    config = write_config(tmp_path / "c.yaml", train={"epochs": 6})
    real = Trainer.train_epoch

    def blows_up_at_epoch_4(self: Trainer, hooks: object = None) -> float:
        loss = real(self, hooks)
        return float("nan") if self.state.epoch == 3 else loss

    monkeypatch.setattr(Trainer, "train_epoch", blows_up_at_epoch_4)
    result = runner.invoke(app, ["train", str(config), "-q"])
    assert result.exit_code == 1, result.output
    assert "training diverged at epoch 4" in result.output and "train.lr" in result.output
    assert "Traceback" not in result.output
    saved = ck.load_train_state(tmp_path / "run" / "partial", load_config(config).parameters)
    assert saved is not None and saved.epoch == 3
    best = saved.info["trainer"]["best_epoch"]
    assert f"the best weights (epoch {best}) are kept" in result.output
    assert str(tmp_path / "run" / "partial" / "checkpoint") in result.output
    assert any(k.startswith("best.") for k in saved.tensors)


def test_inspect_of_an_unfinished_run_says_how_to_resume(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml", train={"epochs": 4})
    with pytest.raises(Crash):
        train(load_config(config), tmp_path / "run", "new", crash_after(1))
    result = runner.invoke(app, ["inspect", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert f"continue it with: lstm resume {tmp_path / 'run'}" in result.output


def test_a_checkpoint_that_does_not_fit_the_model_is_refused(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml", train={"epochs": 4})
    with pytest.raises(Crash):
        train(load_config(config), tmp_path / "run", "new", crash_after(1))
    # Re-write a consistent pair (checksums match) whose tensors lack the RNG state.
    saved = ck.load_train_state(tmp_path / "run" / "partial", load_config(config).parameters)
    assert saved is not None
    tensors = {k: v for k, v in saved.tensors.items() if k != "rng.torch"}
    ck.save_train_state(tmp_path / "run" / "partial", tensors, saved.info)
    result = runner.invoke(app, ["resume", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "does not fit this run" in result.output and "Traceback" not in result.output
