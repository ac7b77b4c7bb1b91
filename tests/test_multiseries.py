"""Long-format files: one global model over several series, split and scaled per series."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmcli.cli import app
from lstmcli.config import load_config
from lstmcli.data import load_dataset, read_table
from lstmcli.errors import DataError

from .conftest import write_config


def write_long(path: Path, lengths: dict[str, int], interleave: bool = False) -> Path:
    """Series with very different levels, so per-series scaling is visible."""
    rows = []
    for j, (sid, n) in enumerate(lengths.items()):
        for t in range(n):
            month = np.datetime64("2000-01", "M") + t
            rows.append((t, sid, f"{month}-01", 100.0 * (j + 1) ** 3 + 10 * np.sin(t / 2) + t))
    if interleave:
        rows.sort(key=lambda r: (r[0], r[1]))
    path.write_text("series,date,y\n" + "".join(f"{s},{d},{v:.4f}\n" for _, s, d, v in rows))
    return path


def long_config(tmp_path: Path, **data: object) -> Path:
    return write_config(tmp_path / "long.yaml", csv="long.csv", data={"series_column": "series", **data})


def test_interleaved_rows_are_grouped_by_series_in_order(tmp_path: Path) -> None:
    path = write_long(tmp_path / "long.csv", {"a": 50, "b": 40}, interleave=True)
    table = read_table(path, ["y"], "date", series_column="series")
    assert table.parts == (("a", 0, 50), ("b", 50, 90))
    assert np.all(np.diff(table.dates[:50]) > np.timedelta64(0, "s"))
    assert table.values[50, 0] == pytest.approx(800.0)  # series b starts at its own level


def test_windows_never_cross_series_and_scaling_is_per_series(tmp_path: Path) -> None:
    write_long(tmp_path / "long.csv", {"a": 60, "b": 80, "c": 70})
    cfg = load_config(long_config(tmp_path))
    ds = load_dataset(cfg.data)
    L, H = cfg.data.lookback, cfg.data.horizon
    assert [s.id for s in ds.series] == ["a", "b", "c"]
    for s in ds.series:
        for name in ("train", "val", "test"):
            o = s.origins(name)
            assert o.size and (o - L).min() >= s.start and (o + H).max() <= s.stop
        train = ds.table.values[s.start : s.start + s.split.train_end, 0]
        assert s.scaler.mean[0] == pytest.approx(train.mean())
        assert abs(ds.scaled[s.start : s.start + s.split.train_end, 0].mean()) < 1e-4
    assert ds.counts()["train"] == sum(s.split.counts()["train"] for s in ds.series)


def test_dates_must_increase_within_each_series(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("series,date,y\na,2000-01-01,1\nb,2000-01-01,2\na,2000-03-01,3\na,2000-02-01,4\n")
    with pytest.raises(DataError, match=r"row 4 \(line 5\), column 'date': date 2000-02-01 goes back .* in series 'a'"):
        read_table(path, ["y"], "date", series_column="series")


def test_multi_series_training_reports_per_series_metrics(tmp_path: Path) -> None:
    write_long(tmp_path / "long.csv", {"a": 60, "b": 80})
    cfg = long_config(tmp_path)
    result = CliRunner().invoke(app, ["train", str(cfg), "-q"])
    assert result.exit_code == 0, result.output
    assert "per series" in result.output
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]["per_series"]) == {"a", "b"}
    # test rows start at floor(0.85 N): a 51..59 gives origins 51..57 (7), b 68..79 gives 68..77 (10)
    assert metrics["windows"]["test"] == 7 + 10
    meta = json.loads((run / "meta.json").read_text())
    assert [s["id"] for s in meta["series"]] == ["a", "b"]
