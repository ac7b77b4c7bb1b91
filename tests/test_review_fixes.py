"""Defects found in review, each pinned by a test through the CLI or the library."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.data.dates import continue_dates, format_dates

from .conftest import ROOT, write_config

runner = CliRunner()


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path: Path, tiny_csv: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    cfg = write_config(tmp_path / "c.yaml", output={"dir": str(tmp_path)})
    result = runner.invoke(app, ["train", str(cfg), "-q", "--overwrite"])
    assert result.exit_code == 2, result.output
    assert "not an lstm run directory" in result.output and "notes.txt" in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine" and tiny_csv.exists() and cfg.exists()


@pytest.mark.parametrize(
    ("last", "freq", "expected"),
    [
        ("2004-12-31", "MS", ["2005-01-31", "2005-02-28", "2005-03-31"]),  # month ends stay month ends
        ("2004-01-30", "MS", ["2004-02-29", "2004-03-30", "2004-04-30"]),  # day clipped to short months
        ("2004-12-01", "MS", ["2005-01-01", "2005-02-01", "2005-03-01"]),
        ("2004-12-31", "QS", ["2005-03-31", "2005-06-30", "2005-09-30"]),
    ],
)
def test_dates_continue_at_month_ends_and_short_months(last: str, freq: str, expected: list[str]) -> None:
    assert format_dates(continue_dates(np.datetime64(last), freq, 3)) == expected


def test_an_unavailable_device_fails_before_the_run_directory_exists(tiny_config: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(app, ["train", str(tiny_config), "-q", "--set", "train.device=cuda"])
    assert result.exit_code == 2 and "train.device: cuda" in result.output
    assert not (tiny_config.parent / "run").exists()


def test_writing_into_a_missing_folder_is_one_line(tiny_config: Path, tiny_csv: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["train", str(tiny_config), "-q"]).exit_code == 0
    result = runner.invoke(
        app, ["predict", str(tmp_path / "run"), "--data", str(tiny_csv), "--out", str(tmp_path / "no" / "f.csv")]
    )
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "cannot write" in result.output


def test_seed_out_of_range_is_a_config_error(tiny_config: Path) -> None:
    result = runner.invoke(app, ["config", str(tiny_config), "--set", "train.seed=99999999999999999999999"])
    assert result.exit_code == 2 and "train.seed" in result.output


def test_init_quotes_column_names_yaml_would_reinterpret(tmp_path: Path) -> None:
    csv_path = tmp_path / "col.csv"  # a column named "on", which YAML 1.1 reads as true
    rows = [f"{y}-{m:02d}-01,{m + y % 7}" for y in range(2000, 2008) for m in range(1, 13)]
    csv_path.write_text("date,on\n" + "\n".join(rows) + "\n")
    out = tmp_path / "col.yaml"
    result = runner.invoke(app, ["init", str(csv_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    shown = runner.invoke(app, ["config", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "- 'on'" in shown.output or '- "on"' in shown.output


def test_long_format_forecast_quotes_series_ids(tmp_path: Path) -> None:
    lines = ["series,date,y"]
    for sid in ("Smith, J", "plain"):
        for t in range(60):
            lines.append(
                f'"{sid}",{np.datetime64("2000-01", "M") + np.timedelta64(t, "M")}-01,{10 + t % 12 + (5 if sid == "plain" else 0)}'
            )
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    cfg = write_config(tmp_path / "c.yaml", csv="long.csv", data={"series_column": "series"})
    assert runner.invoke(app, ["train", str(cfg), "-q"]).exit_code == 0
    out = tmp_path / "f.csv"
    result = runner.invoke(
        app, ["predict", str(tmp_path / "run"), "--data", str(tmp_path / "long.csv"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["series", "date", "y"] and rows[1][0] == "Smith, J" and all(len(r) == 3 for r in rows)


def test_nproc_with_a_bad_config_reports_once(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lstmcli", "train", str(tmp_path / "nope.yaml"), "--nproc", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.count("config file not found") == 1, result.stderr


def test_a_file_given_as_run_says_so(tiny_csv: Path) -> None:
    result = runner.invoke(app, ["predict", str(tiny_csv), "--data", str(tiny_csv)])
    assert result.exit_code == 2 and "is a file, not a run directory" in result.output
    result = runner.invoke(app, ["inspect", str(tiny_csv)])
    assert result.exit_code == 2 and "not a config" in result.output


def test_split_rows_are_exact_floors(tiny_config: Path) -> None:
    from lstmcli.config import load_config
    from lstmcli.data.dataset import split_rows

    cfg = load_config(tiny_config).data
    split = split_rows(90, cfg)
    assert (split.train_end, split.val_end) == (63, 76)  # 0.7 * 90 is 62.999... in floats
    assert (split_rows(80, cfg).train_end, split_rows(80, cfg).val_end) == (56, 68)
