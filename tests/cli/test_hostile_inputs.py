"""Inputs a hostile (or unlucky) user gives that are not a bad cell or key: run files that are
devices or the wrong JSON, full and read-only disks, brackets in every name, no home directory.
Each ends in one line and the right exit code, never a traceback or a hang."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmcli.cli import app
from tests.conftest import ROOT, snapshot, write_config, write_csv

runner = CliRunner()


def one_line(args: list[str], code: int) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("trained")
    write_csv(d / "series.csv")
    result = runner.invoke(app, ["train", str(write_config(d / "c.yaml", train={"epochs": 2})), "-q"])
    assert result.exit_code == 0, result.output
    return d


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained / "run", tmp_path / "run")
    return tmp_path / "run"


# ---------------------------------------------------------------------------------------------
# Run files that are not what they claim


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("meta.json", "[]", "meta.json: key '(the whole file)'"),
        ("meta.json", '{"format": "lstmcli-run"}', "meta.json: key 'format_version'"),
        ("meta.json", "wrong series", "meta.json: key 'series.0.scaler.mean'"),
        ("metrics.json", '{"test": 1}', "metrics.json: key 'test'"),
    ],
)
def test_run_metadata_of_the_wrong_shape_is_one_line(
    run: Path, trained: Path, name: str, content: str, expected: str
) -> None:
    if content == "wrong series":  # valid JSON, right keys, a scaler that is not numbers
        meta = json.loads((run / "meta.json").read_text())
        meta["series"][0]["scaler"]["mean"] = "high"
        content = json.dumps(meta)
    (run / name).write_text(content)
    for args in (["inspect", str(run)], ["predict", str(run), "--data", str(trained / "series.csv")]):
        if name == "metrics.json" and args[0] == "predict":
            continue  # predict does not read the metrics
        assert expected in one_line(args, 2)


@pytest.mark.parametrize("name", ["metrics.json", "meta.json", "config.yaml", "model.safetensors"])
def test_a_run_file_that_is_a_device_or_a_pipe_is_refused_without_reading(run: Path, name: str) -> None:
    (run / name).unlink()
    if name == "metrics.json":
        (run / name).symlink_to("/dev/zero")  # would be read forever
    else:
        os.mkfifo(run / name)  # would block until a writer came
    line = one_line(["inspect", str(run)], 2)
    assert name in line and ("character device" in line or "pipe" in line or "missing" in line)


def test_a_checkpoint_pointer_that_is_a_pipe_is_refused(tmp_path: Path, tiny_csv: Path) -> None:
    from lstmcli.commands.train import train
    from lstmcli.config import load_config
    from tests.conftest import Crash, crash_after

    config = write_config(tmp_path / "c.yaml", train={"epochs": 4})
    with pytest.raises(Crash):
        train(load_config(config), tmp_path / "run", "new", crash_after(1))
    pointer = tmp_path / "run" / "partial" / "checkpoint" / "state.json"
    pointer.unlink()
    os.mkfifo(pointer)
    assert "pipe (FIFO)" in one_line(["resume", str(tmp_path / "run")], 2)


def test_a_sparse_64_gib_weights_file_is_refused_by_its_size(run: Path) -> None:
    with open(run / "model.safetensors", "r+b") as f:
        f.truncate(64 << 30)  # sparse: no disk used, but a read would fill the memory
    line = one_line(["inspect", str(run)], 2)
    assert "model.safetensors: is 68,719,476,736 bytes" in line


def test_a_lock_that_is_a_directory_is_one_line(run: Path, trained: Path) -> None:
    (run / ".lock").mkdir()
    config = write_config(run.parent / "c.yaml", csv=str(trained / "series.csv"), output={"dir": str(run)})
    assert ".lock: is not lstm's lock file (it is a directory)" in one_line(
        ["train", str(config), "-q", "--overwrite"], 2
    )


def test_forecast_steps_are_bounded(run: Path, trained: Path) -> None:
    result = runner.invoke(app, ["predict", str(run), "--data", str(trained / "series.csv"), "--steps", "1000000000"])
    assert result.exit_code == 2 and "less than or equal to 10000" in result.output


def test_json_output_is_strict_json_even_when_a_forecast_is_not_finite(run: Path, trained: Path) -> None:
    # Weights of the right shapes and a matching checksum, but NaN: the forecast is NaN.
    from safetensors.torch import load_file, save_file

    from lstmcli.fsutil import sha256

    tensors = {k: v * float("nan") for k, v in load_file(run / "model.safetensors").items()}
    save_file(tensors, run / "model.safetensors", metadata={"format": "lstmcli-run"})
    meta = json.loads((run / "meta.json").read_text())
    meta["weights_sha256"] = sha256((run / "model.safetensors").read_bytes())
    (run / "meta.json").write_text(json.dumps(meta))
    result = runner.invoke(app, ["predict", str(run), "--data", str(trained / "series.csv"), "--json"])
    assert result.exit_code == 0, result.output

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in --json output")

    parsed = json.loads(result.stdout, parse_constant=refuse)
    assert parsed["forecast"]["y"] == [None, None, None]


# ---------------------------------------------------------------------------------------------
# Names with brackets (rich markup) are printed as they are


def test_brackets_in_paths_and_column_names_are_printed_as_they_are(tmp_path: Path) -> None:
    csv = tmp_path / "[data].csv"
    text = write_csv(tmp_path / "plain.csv").read_text().replace("date,y", "date,y[1]")
    csv.write_text(text)
    config = write_config(
        tmp_path / "c.yaml", csv=str(csv), data={"target": "y[1]"}, output={"dir": str(tmp_path / "run[x]")}
    )
    trained = runner.invoke(app, ["train", str(config)])
    assert trained.exit_code == 0, trained.output
    shown = trained.output.replace("\n", "")  # rich wraps at the runner's 80 columns
    assert f"run saved to {tmp_path / 'run[x]'}" in shown and f"{csv}: 80" in shown
    forecast = runner.invoke(app, ["predict", str(tmp_path / "run[x]"), "--data", str(csv)])
    assert forecast.exit_code == 0 and "y[1]" in forecast.output and "[data].csv" in forecast.output.replace("\n", "")
    inspected = runner.invoke(app, ["inspect", str(tmp_path / "run[x]")])
    assert inspected.exit_code == 0 and str(tmp_path / "run[x]") in inspected.output.replace("\n", "")
    missing = one_line(["predict", str(tmp_path / "run[x]"), "--data", str(tmp_path / "[none].csv")], 2)
    assert "[none].csv" in missing


# ---------------------------------------------------------------------------------------------
# Full and read-only file systems (a real tmpfs mount; skipped where the machine cannot mount)


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[callable]:
    mounted: list[Path] = []

    def make(options: str) -> Path:
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def test_a_full_disk_is_a_runtime_failure_in_one_line(mount: callable, tmp_path: Path, tiny_csv: Path) -> None:
    full = mount("size=64k")
    config = write_config(tmp_path / "c.yaml", model={"m": 64}, output={"dir": str(full / "run")})
    line = one_line(["train", str(config), "-q"], 1)
    assert "No space left on device" in line
    assert list(full.iterdir()) == []  # nothing half-written left behind


def test_a_read_only_output_is_one_line_exit_2(mount: callable, tmp_path: Path, trained: Path) -> None:
    ro = mount("ro,size=64k")
    config = write_config(tmp_path / "c.yaml", csv=str(trained / "series.csv"), output={"dir": str(ro / "run")})
    assert "Read-only file system" in one_line(["train", str(config), "-q"], 2)
    before = snapshot(trained)
    line = one_line(
        ["predict", str(trained / "run"), "--data", str(trained / "series.csv"), "--out", str(ro / "f.csv")], 2
    )
    assert "f.csv: cannot write (Read-only file system)" in line
    assert snapshot(trained) == before


def test_a_full_disk_while_writing_a_forecast_is_exit_1(mount: callable, trained: Path) -> None:
    full = mount("size=4k")
    (full / "filler").write_bytes(b"x" * 4096)
    line = one_line(
        ["predict", str(trained / "run"), "--data", str(trained / "series.csv"), "--out", str(full / "f.csv")], 1
    )
    assert "No space left on device" in line


# ---------------------------------------------------------------------------------------------
# No home directory (a container's arbitrary uid: HOME unset and no passwd entry)


def test_training_works_without_a_home_directory(tmp_path: Path, tiny_csv: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    script = (
        "import pwd, sys\n"
        "def nobody(uid): raise KeyError(uid)\n"
        "pwd.getpwuid = nobody\n"
        "import lstmcli.data.fast as ingest\n"
        "ingest.FAST_MIN_BYTES = 0\n"  # the cache would live under the home directory
        "from lstmcli.cli import app\n"
        f"sys.argv = ['lstm', 'train', {str(config)!r}, '-q']\n"
        "app()\n"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME", "LSTMCLI_CACHE_DIR", "MPLCONFIGDIR")
    }
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    # not even matplotlib's warning about its config directory (the tiny model's own warnings may be there)
    assert all(line.startswith("warning: ") for line in done.stderr.splitlines()), done.stderr
    assert (tmp_path / "run" / "metrics.json").exists()


def test_future_values_beyond_what_training_accepts_are_one_line(tmp_path: Path) -> None:
    write_csv(tmp_path / "series.csv", columns=("y", "x"))
    config = write_config(tmp_path / "c.yaml", model={"n": 2}, data={"features": ["x"]}, train={"epochs": 2})
    assert runner.invoke(app, ["train", str(config), "-q"]).exit_code == 0
    (tmp_path / "future.csv").write_text("date,x\n2006-09-01,1e308\n2006-10-01,3\n2006-11-01,3\n")
    args = [
        "predict",
        str(tmp_path / "run"),
        "--data",
        str(tmp_path / "series.csv"),
        "--steps",
        "6",
        "--future",
        str(tmp_path / "future.csv"),
    ]
    assert "future.csv: row 1, column 'x': 1e+308 is too large" in one_line(args, 2)


def test_a_proof_that_needs_more_memory_than_there_is_is_one_line(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lstmcli.commands import inspect_run

    monkeypatch.setattr(inspect_run, "available_memory", lambda: 1000)
    line = one_line(["inspect", str(tiny_config), "--check"], 1)
    assert "--check: the float64 proof" in line and "GB are available" in line
