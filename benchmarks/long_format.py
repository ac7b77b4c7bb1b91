"""Long-format ingest: ``data.load_dataset`` on a many-series CSV, validating reader vs fast path.

Writes a long-format CSV (series id, date, 4 value columns; the series' rows interleaved, as
exports often are), then loads it in fresh processes: with the row-by-row validating reader (fast
path off), with the polars fast path (parse, group, write the cache) and from the cache. Prints
seconds and peak RSS of each, and checks that all three give the same training array.

    python benchmarks/long_format.py [--series 200] [--rows 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_csv(path: Path, series: int, rows: int) -> None:
    import numpy as np
    import polars as pl

    sid = np.tile(np.arange(series), rows)  # time-major: every series' row t, then t + 1 (interleaved)
    t = np.repeat(np.arange(rows), series)
    level = 100.0 * (1 + sid % 7)
    cols = {f"x{j}": np.round(level * (1 + 0.1 * np.sin(2 * np.pi * t / 52 + j)) + 0.01 * t, 4) for j in range(4)}
    dates = np.datetime64("2000-01-03") + t * np.timedelta64(1, "W")
    pl.DataFrame(
        {"id": [f"s{i:04d}" for i in sid], "date": dates.astype("datetime64[D]").astype(str), **cols}
    ).write_csv(path)


def child(path: str, mode: str) -> None:
    from lstmcli.config import DataConfig
    from lstmcli.data import fast as ingest
    from lstmcli.data.dataset import load_dataset

    if mode == "validating":
        ingest.FAST_MIN_BYTES = 1 << 62
    cfg = DataConfig(
        path=path,
        date_column="date",
        series_column="id",
        target="x0",
        features=["x1", "x2", "x3"],
        lookback=52,
        horizon=13,
        season=52,
    )
    start = time.perf_counter()
    ds = load_dataset(cfg)
    seconds = time.perf_counter() - start
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report this process's
    # parent (which just wrote the CSV) at fork time; exec gives VmHWM a fresh address space.
    rss = (
        int(next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM")).split()[1])
        / 1024
    )
    digest = hashlib.sha256(ds.scaled.tobytes()).hexdigest()[:16]
    print(
        json.dumps(
            {
                "mode": mode,
                "seconds": seconds,
                "rss_mib": rss,
                "series": len(ds.series),
                "float32_mib": ds.scaled.nbytes / 2**20,
                "scaled_sha": digest,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--child", nargs=2, metavar=("CSV", "MODE"))
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "long.csv"
        write_csv(csv, args.series, args.rows)
        print(
            f"{args.series} series x {args.rows} rows = {args.series * args.rows:,} rows, "
            f"{csv.stat().st_size / 2**20:.0f} MiB CSV"
        )
        env = {"LSTMCLI_CACHE_DIR": str(Path(tmp) / "cache"), "PATH": "/usr/bin:/bin"}
        results = []
        for mode in ("validating", "fast_cold", "fast_cached"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(csv), mode],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(
                f"  {mode:12s} {r['seconds']:7.2f} s   peak RSS {r['rss_mib']:6.0f} MiB   "
                f"(float32 array {r['float32_mib']:.0f} MiB, {r['series']} series)"
            )
        same = len({r["scaled_sha"] for r in results}) == 1
        print(f"  same training array from all three: {same}")
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
