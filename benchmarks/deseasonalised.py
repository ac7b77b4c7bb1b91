"""Deseasonalised inputs, outside the tool: would dividing out classical seasonal indices help?

    python benchmarks/deseasonalised.py            # the 32 single M3 series of m3_single.py

Run `benchmarks/m3_single.py` first: it writes each series' CSV and `lstm init` config under
benchmarks/.data/m3_single/. For each seasonal series this trains init's config twice: on the
series as it is, and on the series less its seasonal indices. The indices come from a centred
moving average over the training rows only, in log space where init chose the log transform. The
second run's backtest forecasts are given their season back and scored on the same test windows.
Prints and writes the geometric mean of relMAE against seasonal naive to
benchmarks/results/deseasonalised.json. An experiment, not a feature: BENCHMARKS.md says why.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
SINGLE = Path(os.environ.get("LSTMCLI_BENCH_DATA", ROOT / "benchmarks" / ".data")) / "m3_single"
WORK = SINGLE.parent / "deseasonalised"
LSTM = [sys.executable, "-m", "lstmcli"]


def lstm(*args: str) -> None:
    done = subprocess.run([*LSTM, *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])


def seasonal_indices(v: np.ndarray, s: int) -> np.ndarray | None:
    """Classical decomposition: the mean deviation from a centred moving average at each phase."""
    if s < 2 or len(v) < 3 * s:
        return None
    w = np.r_[0.5, np.ones(s - 1), 0.5] / s if s % 2 == 0 else np.ones(s) / s
    trend = np.convolve(v, w, mode="valid")
    off = (len(w) - 1) // 2
    phase = np.arange(off, off + len(trend)) % s
    deviation = v[off : off + len(trend)] - trend
    idx = np.array([deviation[phase == j].mean() for j in range(s)])
    return idx - idx.mean()


def train_and_backtest(name: str, cfg: dict, csv_path: Path) -> tuple[Path, list[dict[str, str]]]:
    run = WORK / name
    config = WORK / f"{name}.yaml"
    data = dict(cfg["data"], path=str(csv_path.resolve()))
    config.write_text(yaml.safe_dump({**cfg, "data": data, "output": {"dir": str(run)}}))
    lstm("train", str(config), "-q", "--overwrite")
    out = WORK / f"{name}_backtest.csv"
    lstm("predict", str(run), "--data", str(csv_path), "--backtest", "--out", str(out))
    with out.open() as f:
        return run, list(csv.DictReader(f))


def one(sid: str) -> dict[str, float] | None:
    cfg = yaml.safe_load((SINGLE / f"{sid}.yaml").read_text())
    source, target, s = SINGLE / f"{sid}.csv", cfg["data"]["target"], cfg["data"].get("season", 1)
    log = cfg["data"].get("transform") == "log"
    if s < 2:
        return None  # nothing to deseasonalise
    with source.open() as f:
        rows = list(csv.DictReader(f))
    y = np.array([float(r[target]) for r in rows])
    run, plain = train_and_backtest(f"{sid}_plain", cfg, source)
    train_end = json.loads((run / "meta.json").read_text())["series"][0]["split"]["train_end"]
    v = np.log(y) if log else y
    idx = seasonal_indices(v[:train_end], s)
    if idx is None:
        return None
    season = idx[np.arange(len(y)) % s]
    adjusted = WORK / f"{sid}_deseasonalised.csv"
    with adjusted.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r, value in zip(rows, np.exp(v - season) if log else v - season, strict=True):
            writer.writerow({**r, target: repr(float(value))})
    _, deseasonalised = train_and_backtest(f"{sid}_deseasonalised", cfg, adjusted)
    date = cfg["data"]["date_column"]  # the backtest CSV names its date columns after it too
    position = {r[date]: i for i, r in enumerate(rows)}

    def mae(backtest: list[dict[str, str]], restore: bool) -> float:
        errors = []
        for r in backtest:
            i, forecast = position[r[date]], float(r[target])
            if restore:
                forecast = float(np.exp(np.log(forecast) + season[i])) if log else forecast + season[i]
            errors.append(abs(forecast - y[i]))
        return float(np.mean(errors))

    naive = json.loads((run / "metrics.json").read_text())["test"]["seasonal_naive"]["MAE"]
    return {"plain": mae(plain, False) / naive, "deseasonalised": mae(deseasonalised, True) / naive}


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    ids = sorted(p.stem for p in SINGLE.glob("*.yaml"))
    if not ids:
        raise SystemExit(f"no configs in {SINGLE}: run benchmarks/m3_single.py first")
    scores = {}
    for sid in ids:
        result = one(sid)
        if result is not None:
            scores[sid] = result
            print(sid, {k: round(v, 3) for k, v in result.items()}, flush=True)
    table = np.log(np.array([[r["plain"], r["deseasonalised"]] for r in scores.values()]))
    summary = {
        "series": len(scores),
        "geomean_relMAE": dict(
            zip(("plain", "deseasonalised"), np.exp(table.mean(axis=0)).round(4).tolist(), strict=True)
        ),
        "deseasonalised_better": int((table[:, 1] < table[:, 0]).sum()),
    }
    print(summary)
    out = ROOT / "benchmarks" / "results" / "deseasonalised.json"
    out.write_text(json.dumps({"summary": summary, "series": scores}, indent=1) + "\n")
    print(f"results in {out}")


if __name__ == "__main__":
    main()
