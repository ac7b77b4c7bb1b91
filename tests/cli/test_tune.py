"""`lstm tune` through the CLI on tiny files: the study's files, validation-only trials, the best
scored on test once, continuing after a stop, and bad input refused in one line."""

from __future__ import annotations

import csv
import json
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.errors import Interrupted
from tests.conftest import one_line_error, snapshot, write_config

runner = CliRunner()
SPACE = {"model.m": [4, 8], "train.lr": [1.0e-3, 1.0e-2, "log"]}


def tune_config(tmp_path: Path, space: dict | None = None, **sections: dict) -> Path:
    path = write_config(tmp_path / "tiny.yaml", **{"train": {"epochs": 2}, **sections})
    raw = yaml.safe_load(path.read_text())
    raw["tune"] = SPACE if space is None else space
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "trials.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One study of two trials, shared by the tests that only read it (each tune costs seconds)."""
    from tests.conftest import write_csv

    tmp = tmp_path_factory.mktemp("tuned")
    write_csv(tmp / "series.csv")
    result = runner.invoke(app, ["tune", str(tune_config(tmp)), "--trials", "2"])
    assert result.exit_code == 0, result.output
    return tmp, result.stdout


def test_tune_writes_trials_best_and_summary_files(tuned: tuple[Path, str]) -> None:
    tmp, stdout = tuned
    out = tmp / "run-tune"
    assert {p.name for p in out.iterdir()} >= {"study.db", "trials", "best", "best.yaml", "trials.csv", "tune.png"}
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0", "1"]
    assert [r["state"] for r in rows(out)] == ["complete", "complete"]
    assert list(rows(out)[0])[:4] == ["trial", "state", "model.m", "train.lr"]
    assert (rows(out)[0]["model.m"], rows(out)[0]["train.lr"]) == ("8", "0.003")  # trial 0: the config as written
    assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "best: trial" in stdout and "test MAE" in stdout
    assert all(len(line) <= 80 for line in stdout.splitlines())


def test_trials_are_judged_on_validation_and_never_forecast_the_test_split(tuned: tuple[Path, str]) -> None:
    out = tuned[0] / "run-tune"
    for trial, row in zip(sorted((out / "trials").iterdir()), rows(out), strict=True):
        metrics = json.loads((trial / "metrics.json").read_text())
        assert metrics["test"] is None and "intervals" not in metrics
        assert float(row["val_mae"]) == pytest.approx(metrics["val"]["model"]["MAE"])


def test_best_is_scored_on_test_as_train_would_score_its_config(tuned: tuple[Path, str], tmp_path: Path) -> None:
    out = tuned[0] / "run-tune"
    best = json.loads((out / "best" / "metrics.json").read_text())
    assert best["test"] is not None and best["intervals"]
    retrained = tmp_path / "retrained"
    result = runner.invoke(app, ["train", str(out / "best.yaml"), "-q", "--set", f"output.dir={retrained}"])
    assert result.exit_code == 0, result.output
    again = json.loads((retrained / "metrics.json").read_text())
    assert best["test"] == again["test"] and best["val"] == again["val"]


def test_a_rerun_continues_the_study_and_runs_only_the_missing_trials(tmp_path: Path, tiny_csv: Path) -> None:
    cfg = tune_config(tmp_path)
    assert runner.invoke(app, ["tune", str(cfg), "--trials", "1", "-q"]).exit_code == 0
    result = runner.invoke(app, ["tune", str(cfg), "--trials", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert "this run finished 1 trial" in result.stdout
    assert [r["trial"] for r in rows(tmp_path / "run-tune")] == ["0", "1"]
    again = runner.invoke(app, ["tune", str(cfg), "--trials", "2", "-q"])
    assert again.exit_code == 0 and "this run finished 0 trials" in again.stdout


def test_a_trial_left_running_by_a_kill_is_marked_failed_and_not_counted(tmp_path: Path, tiny_csv: Path) -> None:
    from lstmcli.commands import tune as tn
    from lstmcli.config import load_config

    cfg = tune_config(tmp_path)
    out = tmp_path / "run-tune"
    out.mkdir()
    study = tn.open_study(load_config(cfg), f"sqlite:///{out / 'study.db'}", "tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Optuna: heartbeats are meant for optimize()
        study.ask()  # a trial that a killed process left RUNNING
    result = runner.invoke(app, ["tune", str(cfg), "--trials", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert [(r["trial"], r["state"], r["note"]) for r in rows(out)] == [
        ("0", "failed", "killed while running"),
        ("1", "complete", ""),
    ]


def test_ctrl_c_during_a_trial_exits_130_keeps_finished_trials_and_says_how_to_continue(
    tmp_path: Path, tiny_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lstmcli.commands import train as train_module

    real, calls = train_module.train, []

    def train_then_ctrl_c(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted("Ctrl-C (SIGINT): stopped training", 130)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train", train_then_ctrl_c)
    cfg = tune_config(tmp_path)
    result = runner.invoke(app, ["tune", str(cfg), "--trials", "3", "-q", "--set", "train.patience=4"])
    assert result.exit_code == 130, result.output
    assert "keeps 1 finished trial(s) of 3" in result.output
    assert f"Continue with: lstm tune {cfg} --trials 3 --set train.patience=4" in result.output
    assert [r["state"] for r in rows(tmp_path / "run-tune")] == ["complete", "failed"]


def test_a_pruned_trial_stops_training_before_the_next_batch() -> None:
    from lstmcli.commands.tune import _TrialHooks
    from lstmcli.training.hooks import EpochReport

    class Trial:
        reported: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reported.append((value, step))

        def should_prune(self) -> bool:
            return len(self.reported) >= 2

    hooks = _TrialHooks(Trial(), prune=True)
    report = EpochReport(1, 9, 1.0, 0.5, 0.5, 1, 1e-3, 0.1, 10.0, True, 5, 0)
    hooks.on_epoch_end(report)
    assert not hooks.should_stop()
    hooks.on_epoch_end(EpochReport(2, 9, 1.0, 0.7, 0.5, 1, 1e-3, 0.1, 10.0, False, 5, 1))
    # the best validation loss so far is reported (0.5 again), not the noisy epoch's 0.7
    assert hooks.should_stop() and Trial.reported == [(0.5, 1), (0.5, 2)] and hooks.epochs == 2


def test_tuning_the_loss_turns_pruning_off(tmp_path: Path, tiny_csv: Path) -> None:
    from lstmcli.commands.tune import _optuna, _pruner
    from lstmcli.config import load_config

    optuna = _optuna()
    plain = load_config(tune_config(tmp_path))
    assert isinstance(_pruner(optuna, plain), optuna.pruners.MedianPruner)
    losses = load_config(tune_config(tmp_path, {"train.loss": ["mse", "mae"]}))
    assert isinstance(_pruner(optuna, losses), optuna.pruners.NopPruner)


def test_train_ignores_the_tune_section(tmp_path: Path, tiny_csv: Path) -> None:
    cfg = tune_config(tmp_path)
    result = runner.invoke(app, ["train", str(cfg), "-q"])
    assert result.exit_code == 0, result.output
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert "tune" not in stored
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"] is not None


@pytest.mark.parametrize(
    ("space", "args", "expect"),
    [
        ({"model.mm": [4, 8]}, [], "tune.model.mm: unknown config key 'model.mm' (did you mean 'model.m'?)"),
        ({"model.m": [8, 4]}, [], "tune.model.m: a range needs low < high, got [8, 4]"),
        (
            {"model.m": [0, 4]},
            [],
            "tune.model.m: 0 (from [0, 4]) is not a valid value: model.m: input should be greater than 0",
        ),
        ({"train.lr": [0.0, 0.1, "log"]}, [], "tune.train.lr: a log range needs low > 0"),
        (
            {"model.m": [4.0, 64.0]},
            [],
            "(from [4.0, 64.0]) is not a valid value: model.m: input should be a valid integer",
        ),
        ({"train.loss": ["mse", "l1"]}, [], "tune.train.loss: l1 (from {choices: [mse, l1]}) is not a valid value"),
        ({"model.m": [4]}, [], "tune.model.m: a range is [low, high] or [low, high, log]"),
        ({"model": [1, 2]}, [], "tune.model: model is a section"),
        ({"output.dir": ["a", "b"]}, [], "tune.output.dir: lstm tune chooses where each trial's run goes"),
        (None, ["--trials", "0"], "Invalid value for '--trials'"),
        (None, ["--trials", "1", "--storage", "nosuchdb://x"], "--storage nosuchdb://x: cannot open it"),
        (None, ["--trials", "1", "--jobs", "999"], "--jobs 999: this process may use"),
    ],
)
def test_bad_tune_input_is_one_line_and_writes_nothing(
    tmp_path: Path, tiny_csv: Path, space: dict | None, args: list[str], expect: str
) -> None:
    cfg = tune_config(tmp_path, space)
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["tune", str(cfg), *(args or ["--trials", "1"]), "-q"])
    line = one_line_error(result, 2)
    assert expect in line and (str(cfg) in line or expect.startswith(("Invalid", "--")))
    assert snapshot(tmp_path) == before


def test_a_config_without_a_tune_section_is_refused(tmp_path: Path, tiny_config: Path) -> None:
    line = one_line_error(runner.invoke(app, ["tune", str(tiny_config), "--trials", "1"]), 2)
    assert f"{tiny_config}: has no tune: section" in line


def test_a_study_of_another_search_space_is_refused_not_mixed(tmp_path: Path, tiny_csv: Path) -> None:
    cfg = tune_config(tmp_path, {"model.m": [4, 6]})
    assert runner.invoke(app, ["tune", str(cfg), "--trials", "1", "-q"]).exit_code == 0
    before = snapshot(tmp_path)
    line = one_line_error(runner.invoke(app, ["tune", str(cfg), "--trials", "2", "--set", "tune.model.m=[4,7]"]))
    assert "was made for another search space (tune:)" in line
    assert snapshot(tmp_path) == before
    tiny_csv.write_text(tiny_csv.read_text().replace(",10.", ",11.", 1))  # the same rows, one value edited
    line = one_line_error(runner.invoke(app, ["tune", str(cfg), "--trials", "2"]))
    assert "was made for another version of the data (data.path's content changed)" in line


def test_without_optuna_the_error_names_the_install_command(
    tmp_path: Path, tiny_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    line = one_line_error(runner.invoke(app, ["tune", str(tune_config(tmp_path)), "--trials", "1"]), 1)
    assert "pip install 'lstmcli[tune]'" in line


def test_tune_grammar_reads_ranges_log_ranges_and_choices(tmp_path: Path, tiny_csv: Path) -> None:
    from lstmcli.config import load_config

    space = {"model.m": [4, 8, "log"], "model.dropout": [0, 0.5], "train.loss": ["mse", "mae"]}
    tune = load_config(tune_config(tmp_path, {**space, "model.layers": {"choices": [1, 2]}})).tune
    assert tune is not None
    assert (tune["model.m"].kind, tune["model.m"].log) == ("int", True)
    assert tune["model.dropout"].kind == "float"
    assert tune["train.loss"].choices == ["mse", "mae"] and tune["model.layers"].choices == [1, 2]


def test_summary_params_are_abbreviated_unless_two_would_read_alike() -> None:
    from lstmcli.cli.render import short_keys

    assert short_keys(["model.m", "train.lr"]) == {"model.m": "m", "train.lr": "lr"}
    assert short_keys(["data.split.val", "other.val"]) == {"data.split.val": "data.split.val", "other.val": "other.val"}


def test_jobs_split_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from lstmcli.commands import tune as tn

    monkeypatch.setattr(tn, "available_cores", lambda: 8)
    monkeypatch.setattr(tn, "cpu_quota", lambda: 3.5)  # a cgroup quota below the cores counts
    assert [tn.threads_per_job(k) for k in (1, 2, 3)] == [3, 1, 1]


def test_set_replaces_a_key_of_the_space_or_takes_it_out(tmp_path: Path, tiny_csv: Path) -> None:
    from lstmcli.config import load_config

    cfg = tune_config(tmp_path)
    tune = load_config(cfg, ["tune.model.m=[2, 6]", "tune.train.lr=null"]).tune
    assert tune is not None and list(tune) == ["model.m"] and tune["model.m"].probes() == [2, 6]


def test_a_config_left_at_the_default_patience_tunes(tmp_path: Path, tiny_csv: Path) -> None:
    config = tune_config(tmp_path, train={"epochs": 2, "patience": None})  # train.patience: auto
    result = runner.invoke(app, ["tune", str(config), "--trials", "1"])
    assert result.exit_code == 0, result.output


def test_a_new_study_refuses_a_directory_holding_another_studys_trials(tmp_path: Path, tiny_csv: Path) -> None:
    config = tune_config(tmp_path)
    assert runner.invoke(app, ["tune", str(config), "--trials", "1"]).exit_code == 0
    out = tmp_path / "run-tune"
    (out / "study.db").unlink()  # the study is gone, its trials' runs are not
    before = snapshot(out / "trials")
    text = one_line_error(runner.invoke(app, ["tune", str(config), "--trials", "1"]))
    assert "holds the runs of an earlier study, but the study here is new" in text
    assert snapshot(out / "trials") == before


def test_best_is_reused_only_when_it_holds_this_studys_best_trial(tmp_path: Path, tiny_csv: Path) -> None:
    config = tune_config(tmp_path)
    assert runner.invoke(app, ["tune", str(config), "--trials", "1", "-q"]).exit_code == 0
    marker = tmp_path / "run-tune" / "best" / "tune-trial.json"
    which = json.loads(marker.read_text())
    assert {"study", "config_sha256", "space", "trial", "params", "value"} <= set(which)
    marker.write_text(json.dumps({"trial": which["trial"]}))  # a best/ that says less (another study's, say)
    result = runner.invoke(app, ["tune", str(config), "--trials", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads(marker.read_text()) == which  # scored again and marked as this study's
