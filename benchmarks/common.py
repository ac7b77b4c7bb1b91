"""Shared helpers for the benchmark scripts: generated data sets, a cache dir outside git, timing."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LSTMCLI_BENCH_DATA", ROOT / "benchmarks" / ".data"))


def synthetic_csv(rows: int, cols: int = 8, dates: bool = True, seed: int = 0) -> Path:
    """A random-walk-plus-seasonality CSV of ``rows`` x ``cols`` (c0 is the target), made once and kept."""
    import numpy as np

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"synthetic_{rows}x{cols}{'_dated' if dates else ''}.csv"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    tmp = path.with_suffix(".tmp")
    chunk = 1_000_000
    level = np.zeros(cols)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(",".join((["date"] if dates else []) + [f"c{j}" for j in range(cols)]) + "\n")
        for lo in range(0, rows, chunk):
            hi = min(rows, lo + chunk)
            steps = rng.normal(0, 0.1, size=(hi - lo, cols))
            walk = level + np.cumsum(steps, axis=0)
            level = walk[-1]
            season = np.sin(2 * np.pi * t[lo:hi, None] / (24 * (1 + np.arange(cols))))
            vals = np.round(100 + walk + 5 * season, 4)
            body = "\n".join(",".join(f"{v:.4f}" for v in row) for row in vals.tolist())
            if dates:
                start = np.datetime64("2000-01-01T00:00:00") + np.timedelta64(lo, "h")
                stamps = np.datetime_as_string(start + np.arange(hi - lo).astype("timedelta64[h]"), unit="s")
                body = "\n".join(f"{d},{line}" for d, line in zip(stamps.tolist(), body.split("\n"), strict=True))
            f.write(body + "\n")
    tmp.replace(path)
    return path


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def timed_subprocess(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> dict[str, float]:
    """Run ``cmd`` under /usr/bin/time -v when available: wall seconds, peak RSS (MiB), minor faults."""
    full_env = {**os.environ, **(env or {})}
    use_time = Path("/usr/bin/time").exists()
    argv = ["/usr/bin/time", "-v", *cmd] if use_time else cmd
    start = time.perf_counter()
    proc = subprocess.run(argv, env=full_env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    out = {"wall_s": wall, "rss_mib": float("nan"), "minor_faults": float("nan")}
    if use_time:
        for line in proc.stderr.splitlines():
            line = line.strip()
            if line.startswith("Maximum resident set size (kbytes):"):
                out["rss_mib"] = int(line.rsplit(":", 1)[1]) / 1024
            elif line.startswith("Minor (reclaiming a frame) page faults:"):
                out["minor_faults"] = int(line.rsplit(":", 1)[1])
    else:  # pragma: no cover
        import resource

        out["rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out["stdout"] = proc.stdout  # type: ignore[assignment]
    return out
