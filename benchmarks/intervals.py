"""Prediction intervals and quantiles of the shipped configs, as trained and with the quantile loss.

    python benchmarks/intervals.py                 # the four shipped configs, loss as shipped and quantile
    python benchmarks/intervals.py --series co2 --losses quantile

Each config is trained with `lstm train configs/<name>.yaml` (for "quantile" with `--set
train.loss=quantile`, the default quantiles 0.1, 0.5, 0.9), and the figures are read from its
metrics.json: the test split's point MAE, the 80% and 95% intervals' coverage, width, interval
score and MSIS beside seasonal naive's (calibrated alike on validation), and for a quantile run the
fraction of test values below each quantile. Results go to benchmarks/results/intervals.json and
are printed as the table of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from accuracy import ROOT, SHARED, run

WORK = Path(os.environ.get("LSTMCLI_BENCH_DATA", ROOT / "benchmarks" / ".data")) / "intervals"
NAMES = {"airpassengers": "AirPassengers", "sunspots": "Sunspots", "co2": "CO2", "seatbelts": "Seatbelts"}


def measure(name: str, loss: str) -> dict:
    out = WORK / f"{name}-{loss}"
    extra = [] if loss == "shipped" else ["--set", f"train.loss={loss}"]
    seconds = run(
        ["train", str(ROOT / "configs" / f"{name}.yaml"), "-q", "--overwrite", "--set", f"output.dir={out}", *extra]
    )
    m = json.loads((out / "metrics.json").read_text())
    return {
        "seconds": seconds,
        "windows": m["windows"],
        "MAE": m["test"]["model"]["MAE"],
        "intervals": m["intervals"],
        "quantiles": m.get("quantiles"),
        "bands": m["calibration"]["model"].get("bands") is not None,
    }


def markdown(results: dict) -> str:
    lines = [
        "| series (val / test windows) | loss | test MAE | level | coverage | width | interval score | MSIS | s. naive coverage | MSIS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, per in results.items():
        for loss, r in per.items():
            w = r["windows"]
            for n, level in enumerate(("80", "95")):
                iv = r["intervals"][level]
                mdl, sn = iv["model"], iv["seasonal_naive"]
                head = f"{NAMES[name]} ({w['val']} / {w['test']})" if n == 0 and loss == next(iter(per)) else ""
                lines.append(
                    f"| {head} | {loss if n == 0 else ''} | {format(r['MAE'], '.4g') if n == 0 else ''} | {level}% | "
                    f"{100 * mdl['coverage']:.1f}% | {mdl['width']:.4g} | {mdl['interval_score']:.4g} | "
                    f"{mdl['MSIS']:.3g} | {100 * sn['coverage']:.1f}% | {sn['MSIS']:.3g} |"
                )
    q = ["", "| series | q0.1: below | q0.5: below | q0.9: below |", "|---|---:|---:|---:|"]
    for name, per in results.items():
        r = per.get("quantile")
        if r and r["quantiles"]:
            q.append(
                f"| {NAMES[name]} | " + " | ".join(f"{100 * v['below']:.1f}%" for v in r["quantiles"].values()) + " |"
            )
    return "\n".join(lines + (q if len(q) > 3 else []))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", default=",".join(SHARED))
    ap.add_argument("--losses", default="shipped,quantile", help="shipped (as the config says) and/or a train.loss")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "intervals.json")
    a = ap.parse_args()
    results: dict = {}
    start = time.time()
    for name in a.series.split(","):
        for loss in a.losses.split(","):
            results.setdefault(name, {})[loss] = measure(name, loss)
            print(f"{name} {loss}: {results[name][loss]['seconds']:.0f} s", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"results in {a.out} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
