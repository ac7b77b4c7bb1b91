"""The validating CSV reader: every bad cell named by file, row, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from lstmcli.data.reader import read_table
from lstmcli.errors import DataError
from tests.conftest import BAD_CSVS


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
