"""Ingest benchmark: parse the 10M-row x 8-column CSV into a float64 (N, 8) numpy array.

Compares pyarrow, polars and pandas (C engine) with lstmcli's ``data.read_table``: nocache (the
fast path parses, the cache is off), cold (parses and writes the cache), warm (loads the cache). Each reader runs in a fresh process so
page cache is the only thing shared, and the readers alternate across repeats. Before each run the
parent calls sync, so that the writeback of the cold run's 640 MB entry does not land in the next
timing.

    python benchmarks/ingest.py [--rows 10000000] [--repeats 3] [--readers pyarrow,polars,...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, synthetic_csv  # noqa: E402

READERS = ("pyarrow", "polars", "pandas", "lstmcli_nocache", "lstmcli_cold", "lstmcli_warm")


def read_once(reader: str, path: str, columns: list[str]) -> tuple[float, tuple[int, ...], float]:
    """Parse once in this process; (seconds, shape, checksum)."""
    import numpy as np

    start = time.perf_counter()
    if reader == "pyarrow":
        import pyarrow as pa
        import pyarrow.csv as pacsv

        t = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=columns, column_types={c: pa.float64() for c in columns}
            ),
        )
        arr = np.column_stack([t.column(c).to_numpy() for c in columns])
    elif reader == "polars":
        import polars as pl

        arr = pl.read_csv(path, columns=columns, schema_overrides={c: pl.Float64 for c in columns}).to_numpy()
    elif reader == "pandas":
        import pandas as pd

        arr = pd.read_csv(path, usecols=columns, dtype={c: "float64" for c in columns}, engine="c")[columns].to_numpy()
    else:
        from lstmcli.data.reader import read_table

        arr = read_table(path, columns).values
    seconds = time.perf_counter() - start
    return seconds, tuple(arr.shape), float(np.asarray(arr[::100_003], dtype=np.float64).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--readers", default=",".join(READERS))
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--one", nargs=2, metavar=("READER", "CSV"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    columns = [f"c{j}" for j in range(8)]
    if args.one:
        print(json.dumps(read_once(args.one[0], args.one[1], columns)))
        return
    path = str(synthetic_csv(args.rows, 8, dates=False))
    size_mb = os.path.getsize(path) / 1e6
    readers = args.readers.split(",")
    times: dict[str, list[float]] = {r: [] for r in readers}
    checks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "LSTMCLI_CACHE_DIR": cache}
        for rep in range(args.repeats):
            for r in readers:
                if r == "lstmcli_cold":  # a fresh cache directory: parse, then write the cache
                    for f in Path(cache).glob("*"):
                        f.unlink()
                elif r == "lstmcli_warm" and not any(Path(cache).glob("*.npys")):
                    subprocess.run(
                        [sys.executable, __file__, "--one", "lstmcli_cold", path],
                        env=env,
                        check=True,
                        capture_output=True,
                    )
                os.sync()  # the last reader's writes (the cold run's cache entry) hit the disk first, untimed
                run_env = {**env, "LSTMCLI_CACHE": "off"} if r == "lstmcli_nocache" else env
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", r, path],
                    env=run_env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                seconds, shape, check = json.loads(proc.stdout)
                times[r].append(seconds)
                checks[r] = check
                print(f"rep {rep}: {r:14s} {seconds:7.2f} s  shape {tuple(shape)}  checksum {check:.6f}", flush=True)
    if len({round(c, 6) for c in checks.values()}) > 1:
        print("WARNING: readers disagree on values:", checks)
    parsers = [r for r in ("pyarrow", "polars", "pandas") if r in times]
    best = min(parsers, key=lambda r: median(times[r])) if parsers else None
    print(f"\n{args.rows:,} rows x 8 columns, {size_mb:.0f} MB; medians of {args.repeats}:")
    result = {"rows": args.rows, "size_mb": size_mb, "repeats": args.repeats, "median_s": {}}
    for r in readers:
        med = median(times[r])
        result["median_s"][r] = med
        rel = f"  speed {median(times[best]) / med:.2f}x of fastest parser ({best})" if best else ""
        print(f"  {r:14s} {med:7.2f} s  {size_mb / med:7.1f} MB/s{rel}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
