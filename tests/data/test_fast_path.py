"""The polars fast path and the parse cache give exactly what the validating reader gives."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from lstmcli.data import cache
from lstmcli.data import dataset as data
from lstmcli.data import fast as ingest
from lstmcli.data.reader import Table, read_table
from lstmcli.errors import DataError
from tests.conftest import BAD_CSVS, write_config, write_csv

COLUMNS = ("y", "a", "b")


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every file takes the fast path; the cache lives in tmp_path."""
    cache = tmp_path / "cache"
    monkeypatch.setattr(ingest, "FAST_MIN_BYTES", 0)
    monkeypatch.setenv("LSTMCLI_CACHE_DIR", str(cache))
    monkeypatch.delenv("LSTMCLI_CACHE", raising=False)
    return cache


def _entry(cache: Path, path: Path, columns: list[str], date_column: str | None = "date") -> Path:
    """The cache file of ``path``'s ``columns``: named by the file's absolute path and its columns."""
    ident = json.dumps([str(path.resolve()), columns, date_column])
    return cache / f"{hashlib.sha256(ident.encode()).hexdigest()[:32]}.npys"


def _slow(path: Path, columns: list[str], date_column: str | None = "date", series_column: str | None = None) -> Table:
    """The validating reader's table (the fast path off)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(ingest, "FAST_MIN_BYTES", 1 << 62)
        return read_table(path, columns, date_column, series_column=series_column)


def test_fast_path_values_and_dates_equal_the_validating_reader(fast: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", rows=300, columns=COLUMNS)
    with path.open("a") as f:  # awkward but valid numbers: exponent, sign, many digits
        f.write("2025-01-01,1e-3,-0.1234567890123456789,+7\n")
    parsed = ingest.read_fast(str(path), ["b", "y"], "date")
    assert parsed is not None
    slow = _slow(path, ["b", "y"])
    fast_table = read_table(path, ["b", "y"], "date")
    assert np.array_equal(parsed[0], slow.values) and parsed[0].dtype == np.float64
    assert np.array_equal(fast_table.values, slow.values)
    assert fast_table.dates is not None and slow.dates is not None
    assert fast_table.dates.dtype == slow.dates.dtype and np.array_equal(fast_table.dates, slow.dates)


@pytest.mark.parametrize("stamp", ["2000-01-01T06:00:00", "2000-01-01 06:00:00", "2000-01"])
def test_fast_path_reads_other_iso_dates_like_numpy(fast: Path, tmp_path: Path, stamp: str) -> None:
    path = tmp_path / "d.csv"
    base = np.datetime64(stamp.replace(" ", "T"))
    step = np.timedelta64(1, np.datetime_data(base.dtype)[0])
    rows = [f"{str(base + i * step).replace('T', ' ') if ' ' in stamp else base + i * step},{i}.5" for i in range(50)]
    path.write_text("date,y\n" + "\n".join(rows) + "\n")
    parsed = ingest.read_fast(str(path), ["y"], "date")
    assert parsed is not None and parsed[1] is not None
    assert np.array_equal(parsed[1], _slow(path, ["y"]).dates)


def test_cache_hit_then_invalidated_when_the_csv_changes(
    fast: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(tmp_path / "s.csv", rows=200, columns=COLUMNS)
    first = read_table(path, ["y", "a"], "date")
    entry = _entry(fast, path, ["y", "a"])
    assert entry is not None and entry.exists() and entry.parent == fast
    with entry.open("rb") as f:  # plain .npy records, no pickled objects
        records = [np.load(f, allow_pickle=False) for _ in range(4)]  # key, dates, then one per column
        assert not f.read(1)
    assert records[1].dtype.kind == "M" and all(r.dtype == np.float64 and r.ndim == 1 for r in records[2:])
    assert np.array_equal(np.stack(records[2:], axis=1), first.values)

    def no_parse(*args: object) -> None:
        raise AssertionError("parsed again despite a valid cache entry")

    with monkeypatch.context() as m:
        m.setattr(ingest, "_parse", no_parse)
        hit = read_table(path, ["y", "a"], "date")
    assert np.array_equal(hit.values, first.values) and np.array_equal(hit.dates, first.dates)

    # same size, same first and last 64 KiB would fool a weak key; here the value in the
    # middle changes and the mtime moves, so the entry must be refused and rewritten
    lines = path.read_text().splitlines()
    lines[100] = lines[100].split(",")[0] + ",12345.000000," + ",".join(lines[100].split(",")[2:])
    path.write_text("\n".join(lines) + "\n")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = read_table(path, ["y", "a"], "date")
    assert changed.values[99, 0] == 12345.0
    assert np.array_equal(changed.values, _slow(path, ["y", "a"]).values)
    assert len(list(fast.glob("*.npys"))) == 1  # the entry was replaced, not added to


def test_cache_can_be_turned_off(fast: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSTMCLI_CACHE", "off")
    path = write_csv(tmp_path / "s.csv", rows=100)
    read_table(path, ["y"], "date")
    assert not fast.exists()


def test_a_corrupt_cache_entry_is_ignored_and_replaced(fast: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", rows=100)
    expected = read_table(path, ["y"], "date").values
    entry = _entry(fast, path, ["y"])
    assert entry is not None
    entry.write_bytes(b"garbage")
    assert np.array_equal(read_table(path, ["y"], "date").values, expected)
    with entry.open("rb") as f:
        np.load(f, allow_pickle=False)
        np.load(f, allow_pickle=False)  # dates
        assert np.array_equal(np.load(f, allow_pickle=False), expected[:, 0])


def test_a_truncated_cache_entry_is_ignored(fast: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_csv(tmp_path / "s.csv", rows=100, columns=COLUMNS)
    expected = read_table(path, ["y", "a"], "date").values
    entry = _entry(fast, path, ["y", "a"])
    assert entry is not None
    entry.write_bytes(entry.read_bytes()[:-8])  # the last value of the last column is gone
    parsed = []
    with monkeypatch.context() as m:
        m.setattr(ingest, "_parse", lambda *a: parsed.append(1) or None)
        assert ingest.open_fast(str(path), ["y", "a"], "date") is None and parsed  # refused: parsed again
    assert np.array_equal(read_table(path, ["y", "a"], "date").values, expected)
    with monkeypatch.context() as m:  # the entry in the test's cache (not the user's) was rewritten
        m.setattr(ingest, "_parse", lambda *a: pytest.fail("parsed again"))
        assert ingest.open_fast(str(path), ["y", "a"], "date") is not None


def test_dataset_from_the_fast_path_equals_the_validating_path(fast: Path, tmp_path: Path) -> None:
    """Scaled column by column from the cache, the training array and scalers are the same."""
    from lstmcli.config import DataConfig

    path = write_csv(tmp_path / "s.csv", rows=300, columns=COLUMNS)
    cfg = DataConfig(
        path=str(path),
        date_column="date",
        target="y",
        features=["a", "b"],
        lookback=12,
        horizon=3,
        season=12,
        transform="log",
    )
    slow = data.prepare(_slow(path, cfg.columns), cfg)
    for _ in range(2):  # parsed (then cached), and from the cache
        ds = data.load_dataset(cfg)
        assert np.array_equal(ds.scaled, slow.scaled) and ds.scaled.dtype == np.float32
        assert np.array_equal(ds.scaler.mean, slow.scaler.mean) and np.array_equal(ds.scaler.std, slow.scaler.std)
        assert ds.table.columns == ["y"] and np.array_equal(ds.table.values, slow.table.values)
        assert ds.table.dates is not None and np.array_equal(ds.table.dates, slow.table.dates)
    assert len(list(fast.glob("*.npys"))) == 1


@pytest.mark.parametrize(("body", "needle"), BAD_CSVS)
def test_error_messages_are_unchanged_on_the_fast_path(fast: Path, tmp_path: Path, body: str, needle: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    assert ingest.read_fast(str(path), ["y"], "date") is None  # the fast path declines ...
    with pytest.raises(DataError) as info:  # ... and the validating reader names the cell
        read_table(path, ["y"], "date")
    assert str(info.value).startswith(str(path)) and needle in str(info.value), str(info.value)
    assert not list(fast.glob("*.npys"))


@pytest.mark.parametrize(
    "body",
    [
        "date,y\n2000-01-01, 1.5\n2000-02-01,2\n",  # spaces around a number
        "date,y\n2000-01-01,1.5\n\n2000-02-01,2\n",  # a blank line
        "\ufeffdate,y\r\n2000-01-01,1.5\r\n2000-02-01,2\r\n",  # Excel's byte-order mark and CRLF
        'date,y\n2000-01-01,"1.5"\n2000-02-01,2\n',  # a quoted number
        " date ,y\n2000-01-01,1.5\n2000-02-01,2\n",  # a header name with spaces
        "date,y,note\n2000-01-01,1.5,\n2000-02-01,2,ok\n",  # an empty cell in an unused column
    ],
)
def test_odd_but_valid_files_read_the_same_either_way(fast: Path, tmp_path: Path, body: str) -> None:
    path = tmp_path / "odd.csv"
    path.write_text(body, encoding="utf-8")
    got = read_table(path, ["y"], "date")
    want = _slow(path, ["y"])
    assert np.array_equal(got.values, want.values) and np.array_equal(got.dates, want.dates)


def test_small_files_skip_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSTMCLI_CACHE_DIR", str(tmp_path / "cache"))
    path = write_csv(tmp_path / "s.csv", rows=100)
    assert ingest.read_fast(str(path), ["y"], "date") is None
    assert not (tmp_path / "cache").exists()


def _long_csv(path: Path, body_rows: list[str]) -> Path:
    path.write_text("id,date,y,x\n" + "".join(r + "\n" for r in body_rows))
    return path


def test_long_format_fast_path_groups_series_like_the_validating_reader(fast: Path, tmp_path: Path) -> None:
    # interleaved, ids padded with spaces, series 'b' starting before 'a' ends, three ids
    rows = []
    for t in range(40):
        month = np.datetime64("2000-01", "M") + np.timedelta64(t, "M")
        rows.append(f" a ,{month}-01,{t}.25,{-t}")
        if t >= 5:
            rows.append(f"b,{month - np.timedelta64(5, 'M')}-01,{100 + t},{t % 3}")
        if t % 2 == 0:
            rows.append(f"c,{np.datetime64('1990-01', 'M') + np.timedelta64(t, 'M')}-01,{1e3 + t},1")
    path = _long_csv(tmp_path / "long.csv", rows)
    slow = _slow(path, ["y", "x"], series_column="id")
    for _ in range(2):  # parsed, then from the cache
        parsed = ingest.read_fast(str(path), ["y", "x"], "date", "id")
        assert parsed is not None
        values, dates, parts = parsed
        assert parts == slow.parts == (("a", 0, 40), ("c", 40, 60), ("b", 60, 95))  # order of first appearance
        assert np.array_equal(values, slow.values) and np.array_equal(dates, slow.dates)
    assert len(list(fast.glob("*.npys"))) == 1


def test_long_format_errors_still_name_the_row(fast: Path, tmp_path: Path) -> None:
    rows = ["a,2000-01-01,1,0", "b,2000-01-01,2,0", "a,2000-03-01,3,0", "b,1999-12-01,4,0", "a,2000-02-01,5,0"]
    path = _long_csv(tmp_path / "back.csv", rows)
    assert ingest.read_fast(str(path), ["y", "x"], "date", "id") is None  # declined: dates go back in 'a'
    with pytest.raises(DataError, match="row 5 \\(line 6\\), column 'date'.*in series 'a'"):
        read_table(path, ["y", "x"], "date", series_column="id")
    empty = _long_csv(tmp_path / "empty.csv", ["a,2000-01-01,1,0", " ,2000-02-01,2,0"])
    assert ingest.read_fast(str(empty), ["y", "x"], "date", "id") is None
    with pytest.raises(DataError, match="row 2 \\(line 3\\), column 'id': empty series id"):
        read_table(empty, ["y", "x"], "date", series_column="id")


def test_long_format_dataset_from_the_fast_path_equals_the_validating_path(fast: Path, tmp_path: Path) -> None:
    from lstmcli.config import DataConfig

    rows = []
    for t in range(120):
        month = np.datetime64("2000-01", "M") + np.timedelta64(t, "M")
        rows += [f"a,{month}-01,{10 + t % 12},{t}", f"b,{month}-01,{500 + 3 * (t % 12)},{-t}"]
    path = _long_csv(tmp_path / "long.csv", rows)
    cfg = DataConfig(
        path=str(path),
        date_column="date",
        series_column="id",
        target="y",
        features=["x"],
        lookback=12,
        horizon=3,
        season=12,
    )
    slow = data.prepare(_slow(path, ["y", "x"], series_column="id"), cfg)
    for _ in range(2):
        ds = data.load_dataset(cfg)
        assert [(s.id, s.start, s.stop) for s in ds.series] == [(s.id, s.start, s.stop) for s in slow.series]
        assert np.array_equal(ds.scaled, slow.scaled)
        assert all(np.array_equal(a.scaler.mean, b.scaler.mean) for a, b in zip(ds.series, slow.series, strict=True))
        assert np.array_equal(ds.table.values, slow.table.values) and ds.table.parts == slow.table.parts


def test_columns_come_from_one_snapshot_even_if_the_entry_is_rewritten(
    fast: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(tmp_path / "s.csv", rows=120, columns=COLUMNS)
    read_table(path, ["y", "a"], "date")  # writes the entry
    before = _slow(path, ["y", "a"]).values
    cols = ingest.open_fast(str(path), ["y", "a"], "date")
    assert cols is not None and np.array_equal(cols.column(0), before[:, 0])
    lines = path.read_text().splitlines()
    edited = [
        ",".join(c.replace(".", "7", 1) if i == 2 else c for i, c in enumerate(ln.split(","))) for ln in lines[1:]
    ]
    path.write_text("\n".join([lines[0], *edited]) + "\n")  # column a changes, the size does not
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = read_table(path, ["y", "a"], "date").values  # parses again and replaces the entry
    assert not np.array_equal(after[:, 1], before[:, 1])
    assert np.array_equal(cols.column(1), before[:, 1])  # still the entry it validated


def test_ids_stripped_as_python_strips_them(fast: Path, tmp_path: Path) -> None:
    month = np.datetime64("2000-01", "M")
    rows = [f"{sid},{month + np.timedelta64(t, 'M')}-01,{t},0" for t, sid in enumerate(["A"] * 6 + ["A\x1c"] * 6)]
    rows += [f"\u2003B,{month + np.timedelta64(t, 'M')}-01,{t},0" for t in range(6)]
    path = _long_csv(tmp_path / "ws.csv", rows)
    parsed = ingest.read_fast(str(path), ["y", "x"], "date", "id")
    assert parsed is not None
    assert parsed[2] == _slow(path, ["y", "x"], series_column="id").parts == (("A", 0, 12), ("B", 12, 18))


def test_a_single_series_entry_keeps_the_name_earlier_versions_used(fast: Path, tmp_path: Path) -> None:
    """So an upgrade replaces an old entry instead of leaving it beside the new one."""
    path = write_csv(tmp_path / "s.csv", rows=50)
    read_table(path, ["y"], "date")
    assert [p.name for p in fast.glob("*.npys")] == [_entry(fast, path, ["y"]).name]


def test_the_first_run_streams_batches_into_the_entry(
    fast: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the cache on, a single-series file is never parsed whole: batches go straight to the entry.
    import polars as pl

    if not hasattr(pl.LazyFrame, "collect_batches"):
        pytest.skip("this polars cannot stream batches")
    path = write_csv(tmp_path / "s.csv", rows=200, columns=COLUMNS)
    monkeypatch.setattr(ingest, "BATCH_ROWS", 7)  # 29 batches, most boundaries mid-file

    def whole(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed the whole file in memory")

    monkeypatch.setattr(pl, "read_csv", whole)
    cols = ingest.open_fast(str(path), ["y", "a", "b"], "date")
    assert cols is not None and cols.cached and cols.n_rows == 200
    want = _slow(path, ["y", "a", "b"])
    assert np.array_equal(cols.stacked(), want.values) and np.array_equal(cols.dates, want.dates)
    assert len(list(fast.glob("*"))) == 1  # the entry, no temporary left behind


@pytest.mark.parametrize("bad_row", [6, 7, 8])  # inside the first batch of 7, its last row, the first of the next
def test_a_problem_at_a_batch_boundary_is_found(
    fast: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad_row: int
) -> None:
    import polars as pl

    if not hasattr(pl.LazyFrame, "collect_batches"):
        pytest.skip("this polars cannot stream batches")
    monkeypatch.setattr(ingest, "BATCH_ROWS", 7)
    for make_bad in ("date", "value"):
        path = write_csv(tmp_path / f"{make_bad}.csv", rows=30)
        lines = path.read_text().splitlines()  # lines[r] is row r (1-based)
        cells = lines[bad_row].split(",")
        if make_bad == "date":
            cells[0] = lines[bad_row - 1].split(",")[0]  # repeats the previous row's date
        else:
            cells[1] = "inf"
        lines[bad_row] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
        with monkeypatch.context() as m:  # refused by the streamed parse itself
            m.setattr(pl, "read_csv", lambda *a, **k: pytest.fail("parsed the whole file in memory"))
            assert ingest.open_fast(str(path), ["y"], "date") is None, make_bad
        with pytest.raises(DataError, match=f"row {bad_row} "):
            read_table(path, ["y"], "date")
        assert not list(fast.glob("*")), "a refused file left a cache entry or a temporary behind"


def test_an_unwritable_cache_falls_back_to_the_whole_parse(
    fast: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(tmp_path / "s.csv", rows=50, columns=COLUMNS)
    fast.parent.mkdir(exist_ok=True)
    fast.write_text("a file where the cache directory should be")
    cols = ingest.open_fast(str(path), ["y", "a"], "date")
    assert cols is not None and not cols.cached
    assert np.array_equal(cols.stacked(), _slow(path, ["y", "a"]).values)


def test_a_date_form_that_changes_between_batches_reads_like_the_whole_column(
    fast: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first batch's dates are days, a later batch's carry (midnight) times: the whole column is then read
    # by numpy's ISO reader, and so must the streamed file be (it falls back to the whole parse).
    monkeypatch.setattr(ingest, "BATCH_ROWS", 4)
    rows = [f"2000-01-{d:02d},{d}.5" for d in range(1, 5)] + [f"2000-01-{d:02d}T00:00:00,{d}.5" for d in range(5, 13)]
    path = tmp_path / "mixed.csv"
    path.write_text("date,y\n" + "\n".join(rows) + "\n")
    cols = ingest.open_fast(str(path), ["y"], "date")
    want = _slow(path, ["y"])
    assert cols is not None and np.array_equal(cols.dates, want.dates)
    assert np.array_equal(cols.stacked(), want.values)


def test_short_writes_are_completed(fast: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_csv(tmp_path / "s.csv", rows=60, columns=COLUMNS)
    real = os.pwrite

    def half(fd: int, data: object, offset: int) -> int:
        view = memoryview(data).cast("B")  # type: ignore[arg-type]
        return real(fd, view[: max(1, len(view) // 2)], offset)

    monkeypatch.setattr(os, "pwrite", half)
    cols = ingest.open_fast(str(path), ["y", "a", "b"], "date")
    assert cols is not None and cols.cached
    assert np.array_equal(cols.stacked(), _slow(path, ["y", "a", "b"]).values)


def test_stale_temporaries_of_a_killed_writer_are_removed(fast: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", rows=60)
    entry = _entry(fast, path, ["y"])
    assert entry is not None
    fast.mkdir(parents=True)
    stale, fresh = fast / f"{entry.stem}dead.tmp", fast / f"{entry.stem}busy.tmp"
    for f in (stale, fresh):
        f.write_bytes(b"half an entry")
    old = time.time() - cache.STALE_SECONDS - 60
    os.utime(stale, (old, old))
    assert ingest.open_fast(str(path), ["y"], "date") is not None
    assert not stale.exists() and fresh.exists()  # one being written now is left alone


@pytest.mark.parametrize(
    ("cells", "clean"), [(("1e308", "1e308"), True), (("1e308", "inf"), False), (("nan", "1"), False)]
)
def test_finite_values_whose_sum_overflows_are_still_clean(
    fast: Path, tmp_path: Path, cells: tuple[str, str], clean: bool
) -> None:
    path = tmp_path / "big.csv"
    path.write_text(f"date,y\n2000-01-01,{cells[0]}\n2000-01-02,{cells[1]}\n")
    got = ingest.read_fast(str(path), ["y"], "date")
    assert (got is not None) is clean
    if clean:
        assert got is not None and got[0][:, 0].tolist() == [1e308, 1e308]


def test_an_edit_that_keeps_the_size_and_the_mtime_is_parsed_again(fast: Path, tmp_path: Path) -> None:
    # What cp -p, rsync -t and tar x leave: new content, the old size and mtime.
    path = write_csv(tmp_path / "s.csv", rows=20_000)  # 400 KB: the middle lies beyond the first and last 64 KiB
    assert read_table(path, ["y"], "date").values[10_000, 0] != 99.0
    st = os.stat(path)
    lines = path.read_text().splitlines()
    old = lines[10_001].split(",")[1]
    lines[10_001] = lines[10_001].split(",")[0] + "," + "99.0".ljust(len(old), "0")  # same length
    path.write_text("\n".join(lines) + "\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    assert read_table(path, ["y"], "date").values[10_000, 0] == 99.0


def test_training_reads_the_csv_once_for_its_hash(fast: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One sha256 per run serves both the resume check and the parse cache's key.
    from lstmcli import fsutil
    from lstmcli.commands import train as pipeline
    from lstmcli.config import load_config

    write_csv(tmp_path / "series.csv")
    cfg = load_config(write_config(tmp_path / "c.yaml", train={"epochs": 1}))
    hashed: list[str] = []

    def counting(path: object, error: type) -> str:
        hashed.append(str(path))
        return fsutil.sha256_file(path, error)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest, "sha256_file", counting)
    monkeypatch.setattr(pipeline, "sha256_file", counting)
    pipeline.train(cfg, tmp_path / "run")
    assert hashed == [str(tmp_path / "series.csv")]
