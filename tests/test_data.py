from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lstmcli.config import load_config
from lstmcli.data.dataset import load_dataset, make_split
from lstmcli.data.dates import continue_dates, infer_frequency
from lstmcli.data.reader import read_table
from lstmcli.data.windows import Windows
from lstmcli.errors import DataError

from .conftest import BAD_CSVS, write_config, write_csv


def test_split_boundaries_follow_the_floor_rule(tiny_config: Path) -> None:
    cfg = load_config(tiny_config)  # 80 rows, L 12, H 3
    split = make_split(80, cfg.data)
    assert (split.train_end, split.val_end) == (56, 68)  # floor(0.70*80), floor(0.85*80)
    train, val, test = split.origins("train"), split.origins("val"), split.origins("test")
    assert (train[0], train[-1]) == (12, 53)  # inputs from row 0; last targets end at row 55
    assert (val[0], val[-1]) == (56, 65)
    assert (test[0], test[-1]) == (68, 77)


@pytest.mark.parametrize(("rows", "L", "H"), [(80, 12, 3), (100, 5, 7), (61, 20, 1), (200, 30, 12)])
def test_every_window_lies_wholly_in_its_split_and_no_test_target_leaks(
    tmp_path: Path, rows: int, L: int, H: int
) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"lookback": L, "horizon": H}))
    split = make_split(rows, cfg.data)
    bounds = {"train": (0, split.train_end), "val": (split.train_end, split.val_end), "test": (split.val_end, rows)}
    seen_targets: dict[str, set[int]] = {}
    for name, (lo, hi) in bounds.items():
        origins = split.origins(name)
        assert origins.size > 0
        targets = origins[:, None] + np.arange(H)
        assert targets.min() >= lo and targets.max() < hi
        assert (origins - L).min() >= 0
        seen_targets[name] = set(targets.ravel().tolist())
    test_rows = set(range(split.val_end, rows))
    # no training or validation window ever has a test row among its inputs or targets
    for name in ("train", "val"):
        origins = split.origins(name)
        touched = set((origins[:, None] + np.arange(-L, H)).ravel().tolist())
        assert not touched & test_rows


def test_series_too_short_names_the_sizes(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", data={"lookback": 60}))
    with pytest.raises(DataError, match=r"series too short: 80 rows give the train split 56 row\(s\)"):
        make_split(80, cfg.data, "x.csv")


def test_scaler_sees_only_training_rows(tmp_path: Path, tiny_config: Path) -> None:
    csv = tmp_path / "series.csv"
    text = csv.read_text().splitlines()
    # poison the last (test) row with a huge value: the scaler must not move
    text[-1] = text[-1].rsplit(",", 1)[0] + ",1000000"
    csv.write_text("\n".join(text) + "\n")
    cfg = load_config(tiny_config)
    ds = load_dataset(cfg.data)
    train = ds.table.values[: ds.split.train_end, 0]
    assert ds.scaler.mean[0] == pytest.approx(train.mean())
    assert ds.scaler.std[0] == pytest.approx(train.std())
    assert abs(ds.scaled[: ds.split.train_end, 0].mean()) < 1e-5


def test_log_transform_round_trips(tiny_config: Path) -> None:
    cfg = load_config(tiny_config, ["data.transform=log"])
    ds = load_dataset(cfg.data)
    back = ds.scaler.inverse(ds.scaled.astype(np.float64), slice(0, 1))
    assert np.allclose(back, ds.table.values, rtol=1e-5)
    assert ds.scaler.log[0]


def test_windows_are_index_gathers(tiny_config: Path) -> None:
    cfg = load_config(tiny_config)
    ds = load_dataset(cfg.data)
    series = torch.as_tensor(ds.scaled)
    w = Windows(series, 12, 3, 1)
    origins = torch.tensor([12, 40])
    x, y = w.inputs(origins), w.targets(origins)
    assert x.shape == (2, 12, 1) and y.shape == (2, 3, 1)
    assert torch.equal(x[1, :, 0], series[28:40, 0])
    assert torch.equal(y[1, :, 0], series[40:43, 0])


def _bad_csv(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    return path


@pytest.mark.parametrize(("body", "needle"), BAD_CSVS)
def test_bad_csv_messages_name_file_row_and_column(tmp_path: Path, body: str, needle: str) -> None:
    path = _bad_csv(tmp_path, body)
    with pytest.raises(DataError) as info:
        read_table(path, ["y"], "date")
    assert str(info.value).startswith(str(path))
    assert needle in str(info.value), str(info.value)


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffdate,y\n2000-01-01,1\n2000-02-01,2\n".encode())
    table = read_table(path, ["y"], "date")
    assert table.values[:, 0].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(("how", "expected"), [("interpolate", [1.0, 2.0, 3.0, 4.0]), ("ffill", [1.0, 1.0, 3.0, 4.0])])
def test_missing_values_filled_when_asked(tmp_path: Path, how: str, expected: list[float]) -> None:
    path = _bad_csv(tmp_path, "y\n1\n\n3\n4\n".replace("\n\n", "\nNA\n"))
    assert read_table(path, ["y"], None, how).values[:, 0].tolist() == expected


def test_frequency_inference_and_continuation(tmp_path: Path) -> None:
    table = read_table(write_csv(tmp_path / "m.csv", rows=24), ["y"], "date")
    assert infer_frequency(table.dates) == "MS"
    nxt = continue_dates(table.dates[-1], "MS", 3)
    assert [str(d)[:10] for d in nxt] == ["2002-01-01", "2002-02-01", "2002-03-01"]
    weekly = np.array(["2001-12-15", "2001-12-22", "2001-12-29"], dtype="datetime64[s]")
    assert infer_frequency(weekly) == "W"
    assert str(continue_dates(weekly[-1], "W", 1)[0])[:10] == "2002-01-05"


def test_a_text_column_with_cells_over_128_kib_is_read(tmp_path: Path) -> None:
    # The csv module's default field limit (128 KiB) would raise a bare _csv.Error here.
    rows = ["date,y,notes"] + [f"2000-{m:02d}-01,{m},{'x' * (200_000 if m == 3 else 1)}" for m in range(1, 13)]
    (tmp_path / "notes.csv").write_text("\n".join(rows) + "\n")
    table = read_table(tmp_path / "notes.csv", ["y"], "date")
    assert table.values[:, 0].tolist() == list(range(1, 13))


def test_rows_and_lines_are_named_apart_when_blank_lines_intervene(tmp_path: Path) -> None:
    (tmp_path / "gaps.csv").write_text("date,y\n2000-01-01,1\n\n\n2000-02-01,x\n")
    with pytest.raises(DataError, match=r"row 2 \(line 5\), column 'y': 'x' is not a number"):
        read_table(tmp_path / "gaps.csv", ["y"], "date")


def test_monthly_dates_at_noon_are_monthly(tmp_path: Path) -> None:
    dates = np.array([f"2000-{m:02d}-01T12:00:00" for m in range(1, 13)], dtype="datetime64[s]")
    assert infer_frequency(dates) == "MS"
    assert str(continue_dates(dates[-1], "MS", 1)[0]) == "2001-01-01T12:00:00"


def test_values_near_1e_300_are_standardised_not_taken_for_a_constant(tmp_path: Path) -> None:
    from lstmcli.data.dataset import _column_stats

    x = np.array([1.0, 2.0, 3.0, 4.0]) * 1e-300
    mean, std = _column_stats(x, log=False)
    assert std == pytest.approx(np.std([1.0, 2.0, 3.0, 4.0]) * 1e-300, rel=1e-9)
