"""Nothing a user or the tool wrote is lost: a failed --overwrite leaves the previous run as it was,
only lstm's own runs are ever replaced, an interrupted move into place is completed, and runs
written by earlier versions keep loading."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.commands.train import train
from lstmcli.config import load_config
from lstmcli.runs import store
from lstmcli.runs.store import MARKER, RunDir
from tests.conftest import ROOT, Crash, assert_same_tensors, crash_after, snapshot, write_config

runner = CliRunner()
FIXTURE = ROOT / "tests" / "fixtures" / "v0_1_0"


def train_cli(config: Path, *args: str) -> str:
    result = runner.invoke(app, ["train", str(config), "-q", *args])
    assert result.exit_code == 0, result.output
    return result.output


def one_line_failure(config: Path, *args: str, code: int) -> str:
    result = runner.invoke(app, ["train", str(config), "-q", *args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result.output


def test_a_failed_overwrite_leaves_the_previous_run_byte_identical(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    train_cli(config)
    before = snapshot(tmp_path / "run")
    out = one_line_failure(config, "--overwrite", "--set", "train.lr=.inf", code=1)
    assert "training diverged at epoch 1" in out
    assert snapshot(tmp_path / "run") == before


def test_an_overwrite_that_fails_after_saving_epochs_keeps_the_previous_run(
    tmp_path: Path, tiny_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lstmcli.training.trainer import Trainer

    config = write_config(tmp_path / "c.yaml", train={"epochs": 5})
    train_cli(config)
    before = snapshot(tmp_path / "run")
    real = Trainer.train_epoch
    monkeypatch.setattr(
        Trainer, "train_epoch", lambda self, hooks=None: float("nan") if self.state.epoch == 2 else real(self, hooks)
    )
    out = one_line_failure(config, "--overwrite", code=1)
    assert "training diverged at epoch 3" in out and f"the previous run in {tmp_path / 'run'} is unchanged" in out
    after = snapshot(tmp_path / "run")
    assert {k: v for k, v in after.items() if not k.startswith("partial")} == before
    assert "partial/checkpoint/state.json" in after  # the new run can be resumed
    predicted = runner.invoke(app, ["predict", str(tmp_path / "run"), "--data", str(tiny_csv)])
    assert predicted.exit_code == 0, predicted.output  # the previous model still forecasts


def test_an_interrupted_overwrite_keeps_the_previous_run_until_the_new_one_finishes(
    tmp_path: Path, tiny_csv: Path
) -> None:
    config = write_config(tmp_path / "c.yaml", train={"epochs": 4})
    cfg = load_config(config)
    train(cfg, tmp_path / "ref")
    first = load_config(config, ["train.seed=7"])
    train(first, tmp_path / "run")
    before = snapshot(tmp_path / "run")
    with pytest.raises(Crash):
        train(cfg, tmp_path / "run", "overwrite", crash_after(2))
    assert {k: v for k, v in snapshot(tmp_path / "run").items() if not k.startswith("partial")} == before
    train(cfg, tmp_path / "run", "resume")
    assert not (tmp_path / "run" / "partial").exists()
    assert_same_tensors(
        load_file(tmp_path / "ref" / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    )


def test_an_unfinished_run_replaced_by_an_overwrite_that_fails_at_once_is_put_back(
    tmp_path: Path, tiny_csv: Path
) -> None:
    config = write_config(tmp_path / "c.yaml", train={"epochs": 4})
    with pytest.raises(Crash):
        train(load_config(config), tmp_path / "run", "new", crash_after(2))
    before = snapshot(tmp_path / "run")
    one_line_failure(config, "--overwrite", "--set", "train.lr=.inf", code=1)
    assert snapshot(tmp_path / "run") == before
    result = runner.invoke(app, ["resume", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output


def test_a_run_that_fails_before_its_first_epoch_leaves_nothing_that_blocks_the_retry(
    tmp_path: Path, tiny_csv: Path
) -> None:
    config = write_config(tmp_path / "c.yaml")
    one_line_failure(config, "--set", "train.lr=.inf", code=1)
    assert not (tmp_path / "run").exists()
    train_cli(config)  # no --overwrite needed


def test_an_out_of_memory_model_fails_in_one_line_and_the_retry_is_not_blocked(tmp_path: Path, tiny_csv: Path) -> None:
    # A real allocation failure: a 3 GiB address-space limit, and a 3.6 GB recurrent weight.
    config = write_config(tmp_path / "c.yaml", model={"m": 15000, "layers": 1})

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    proc = subprocess.run(
        [sys.executable, "-m", "lstmcli", "train", str(config), "-q"],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ran out of memory" in lines[0] and "3.6 GB" in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()
    train_cli(config, "--set", "model.m=8")


def test_a_folder_of_the_users_files_with_run_file_names_is_never_taken_for_a_run(
    tmp_path: Path, tiny_csv: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own config\n")
    (mine / "history.csv").write_text("my,own,history\n")
    (mine / ".lock").write_text("my own lock\n")
    before = snapshot(mine)
    config = write_config(tmp_path / "c.yaml", output={"dir": str(mine)})
    for args in (["--overwrite"], ["--resume"], []):
        out = one_line_failure(config, *args, code=2)
        assert "is not empty and not an lstm run directory" in out
    result = runner.invoke(app, ["resume", str(mine)])
    assert result.exit_code == 2 and "not an lstm run directory" in result.output
    assert snapshot(mine) == before


def test_files_of_other_names_inside_a_run_survive_an_overwrite(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    train_cli(config)
    (tmp_path / "run" / "notes.txt").write_text("why this run")
    train_cli(config, "--overwrite")
    assert (tmp_path / "run" / "notes.txt").read_text() == "why this run"


def _overwrite_killed_while_moving(
    config: Path, run: Path, monkeypatch: pytest.MonkeyPatch, dies: Callable[[Path, list[str]], bool]
) -> None:
    """Train ``run`` with seed 5, then overwrite it with the config's seed, killed (Crash) while
    moving the finished files into place, at the first file ``src`` for which ``dies(src, moved)``
    holds (``moved``: the names moved so far)."""
    train(load_config(config, ["train.seed=5"]), run)
    real = store.RunDir._rename
    moved: list[str] = []

    def rename(self: RunDir, src: Path, dst: Path) -> None:
        if dies(src, moved):
            raise Crash
        moved.append(src.name)
        real(self, src, dst)

    monkeypatch.setattr(store.RunDir, "_replace", rename)
    with pytest.raises(Crash):
        train(load_config(config), run, "overwrite")
    monkeypatch.undo()


def test_a_kill_while_moving_the_finished_run_into_place_is_completed_by_the_next_reader(
    tmp_path: Path, tiny_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "c.yaml")
    _overwrite_killed_while_moving(
        config, tmp_path / "run", monkeypatch, lambda src, moved: src.parent.name == "partial" and len(moved) == 2
    )
    run = RunDir(tmp_path / "run")
    assert run.awaiting_commit() and not run.finished()  # a mix of the two runs on disk
    result = runner.invoke(app, ["inspect", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert run.finished() and not run.partial.exists()
    train(load_config(config), tmp_path / "ref")
    assert_same_tensors(
        load_file(tmp_path / "ref" / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    )


@pytest.mark.parametrize(
    ("flag", "target"),
    [
        ("--out", "run/meta.json"),
        ("--plot", "run/model.safetensors"),
        ("--out", "run/forecast.csv"),
        ("--out", "series.csv"),
    ],
)
def test_predict_never_writes_into_the_run_or_over_its_input(
    tmp_path: Path, tiny_csv: Path, flag: str, target: str
) -> None:
    train_cli(write_config(tmp_path / "c.yaml"))
    before = snapshot(tmp_path)
    result = runner.invoke(
        app, ["predict", str(tmp_path / "run"), "--data", str(tiny_csv), flag, str(tmp_path / target)]
    )
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and flag in result.output
    assert snapshot(tmp_path) == before


def test_init_never_writes_over_its_csv(tmp_path: Path, tiny_csv: Path) -> None:
    before = tiny_csv.read_bytes()
    result = runner.invoke(app, ["init", str(tiny_csv), "--out", str(tiny_csv), "--force"])
    assert result.exit_code == 2 and "is the input file" in result.output
    assert tiny_csv.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# Runs written by lstmcli 0.1.0 (no marker, the run in progress in RUN itself)


def test_a_finished_run_written_by_0_1_0_predicts_and_inspects_as_it_did(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE / "run", run)
    csv = str(FIXTURE / "series.csv")
    forecast = runner.invoke(app, ["predict", str(run), "--data", csv, "--json"])
    assert forecast.exit_code == 0, forecast.output
    then = json.loads((FIXTURE / "forecast.json").read_text())
    now = json.loads(forecast.output)
    assert now["forecast"] == then["forecast"] and now["index"] == then["index"]
    backtest = runner.invoke(app, ["predict", str(run), "--data", csv, "--backtest", "--split", "test", "--json"])
    assert backtest.exit_code == 0, backtest.output
    then_bt, now_bt = (
        json.loads((FIXTURE / "backtest_test.json").read_text())["metrics"],
        json.loads(backtest.output)["metrics"],
    )
    for forecast_name, old in then_bt.items():  # 0.1.0's "MASE" is today's relMAE
        new = now_bt[forecast_name]
        assert {k: new[k] for k in ("MAE", "RMSE", "sMAPE")} == {k: old[k] for k in ("MAE", "RMSE", "sMAPE")}
        assert new["relMAE"] == old["MASE"] and new["MASE"] is not None
    inspected = runner.invoke(app, ["inspect", str(run), "--json"])
    assert inspected.exit_code == 0, inspected.output
    then, now = json.loads((FIXTURE / "inspect.json").read_text()), json.loads(inspected.output)
    assert now["layers"] == then["layers"]
    old_scores = then["metrics"]["test"]["model"]
    assert now["metrics"]["test"]["model"] == {**old_scores, "MASE": None, "relMAE": old_scores["MASE"]}


def test_a_finished_run_written_by_0_1_0_can_be_overwritten(tmp_path: Path, tiny_csv: Path) -> None:
    shutil.copytree(FIXTURE / "run", tmp_path / "run")
    config = write_config(tmp_path / "c.yaml")
    assert "already there" in one_line_failure(config, code=2)
    train_cli(config, "--overwrite")
    assert (tmp_path / "run" / MARKER).is_file()
    assert runner.invoke(app, ["inspect", str(tmp_path / "run")]).exit_code == 0


def test_an_unfinished_run_of_the_0_1_0_layout_resumes_to_the_same_weights(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml", train={"epochs": 4})
    cfg = load_config(config)
    train(cfg, tmp_path / "ref")
    run = tmp_path / "run"
    with pytest.raises(Crash):
        train(cfg, run, "new", crash_after(2))
    # What 0.1.0 left: config.yaml and checkpoint/ in the run directory itself, no marker.
    (run / "partial" / "config.yaml").rename(run / "config.yaml")
    (run / "partial" / "checkpoint").rename(run / "checkpoint")
    (run / "partial").rmdir()
    (run / MARKER).unlink()
    result = runner.invoke(app, ["resume", str(run), "-q"])
    assert result.exit_code == 0, result.output
    assert not (run / "checkpoint").exists() and not (run / "partial").exists()
    assert_same_tensors(load_file(tmp_path / "ref" / "model.safetensors"), load_file(run / "model.safetensors"))


def test_a_directory_where_a_run_file_goes_is_refused_before_training(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    train_cli(config)
    (tmp_path / "run" / "loss.png").unlink()
    (tmp_path / "run" / "loss.png").mkdir()
    (tmp_path / "run" / "loss.png" / "keep.txt").write_text("mine")
    before = snapshot(tmp_path / "run")
    out = one_line_failure(config, "--overwrite", code=2)
    assert "loss.png: is a directory, where the run's loss.png goes" in out
    assert snapshot(tmp_path / "run") == before
    assert runner.invoke(app, ["predict", str(tmp_path / "run"), "--data", str(tiny_csv)]).exit_code == 0


def test_user_folders_and_dot_files_inside_a_run_survive_an_overwrite(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    train_cli(config)
    (tmp_path / "run" / "checkpoint").mkdir()  # the name 0.1.0 used, but not an lstm checkpoint
    (tmp_path / "run" / "checkpoint" / "notes.txt").write_text("mine")
    (tmp_path / "run" / ".draft.tmp-1").write_text("mine")
    train_cli(config, "--overwrite")
    assert (tmp_path / "run" / "checkpoint" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "run" / ".draft.tmp-1").read_text() == "mine"


def test_init_never_writes_into_a_run_directory(tmp_path: Path, tiny_csv: Path) -> None:
    train_cli(write_config(tmp_path / "c.yaml"))
    before = snapshot(tmp_path / "run")
    result = runner.invoke(app, ["init", str(tiny_csv), "--out", str(tmp_path / "run" / "config.yaml"), "--force"])
    assert result.exit_code == 2 and "is inside the run directory" in result.output
    assert snapshot(tmp_path / "run") == before


def test_a_failed_predict_replaces_none_of_its_outputs(tmp_path: Path, tiny_csv: Path) -> None:
    train_cli(write_config(tmp_path / "c.yaml"))
    (tmp_path / "mine.csv").write_text("keep\n")
    args = ["predict", str(tmp_path / "run"), "--data", str(tiny_csv), "--out", str(tmp_path / "mine.csv")]
    result = runner.invoke(app, [*args, "--plot", str(tmp_path / "missing" / "p.png")])
    assert result.exit_code == 2 and "p.png" in result.output
    assert (tmp_path / "mine.csv").read_text() == "keep\n"
    assert not list(tmp_path.glob(".mine.csv*"))  # no temporary left behind


def test_a_reader_waits_for_a_move_into_place_under_way(
    tmp_path: Path, tiny_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from lstmcli.runs.lock import RunLock
    from lstmcli.runs.run import load_run

    config = write_config(tmp_path / "c.yaml")
    _overwrite_killed_while_moving(config, tmp_path / "run", monkeypatch, lambda src, moved: src.name == "metrics.json")
    lock = RunLock(tmp_path / "run")
    lock.acquire()  # a trainer still moving its files holds the lock
    threading.Timer(0.5, lock.release).start()
    loaded = load_run(tmp_path / "run")  # waits for the lock, then completes the move
    assert RunDir(tmp_path / "run").finished() and loaded.metrics() is not None


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path: Path, tiny_csv: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    cfg = write_config(tmp_path / "c.yaml", output={"dir": str(tmp_path)})
    result = runner.invoke(app, ["train", str(cfg), "-q", "--overwrite"])
    assert result.exit_code == 2, result.output
    assert "not an lstm run directory" in result.output and "notes.txt" in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine" and tiny_csv.exists() and cfg.exists()


def test_a_waiting_lock_is_taken_in_turn(tmp_path: Path) -> None:
    """lstm tune's --jobs workers take turns on one (RunLock with wait): the second waits for the first."""
    import threading

    from lstmcli.runs.lock import RunLock

    first, second = RunLock(tmp_path, ".turn.lock", wait=True), RunLock(tmp_path, ".turn.lock", wait=True)
    first.acquire()
    order: list[str] = []
    waiter = threading.Thread(target=lambda: (second.acquire(), order.append("second")))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and order == []  # still waiting for the first
    order.append("first released")
    first.release()
    waiter.join(5)
    assert order == ["first released", "second"] and second.held
    second.release()
    assert not (tmp_path / ".turn.lock").exists()
