"""Known-future covariates on the shared Seatbelts data: `law` (the February 1983 seat-belt law,
known in advance) as no input, a past-only feature, and a known-future feature.

    python benchmarks/covariates.py             # seeds 0-4 of each, the shipped config otherwise

Each run is `lstm train configs/seatbelts.yaml` (the shared 70/15/15 protocol), with `--set
data.features=[law]` or `--set data.future_features=[law]` and `model.n=2`. Test and validation MAE
come from the runs' metrics.json. Results go to benchmarks/results/covariates.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from accuracy import ROOT, run

WORK = Path(os.environ.get("LSTMCLI_BENCH_DATA", ROOT / "benchmarks" / ".data")) / "covariates"
VARIANTS = {
    "no law": [],
    "law past-only": ["--set", "data.features=[law]", "--set", "model.n=2"],
    "law known-future": ["--set", "data.future_features=[law]", "--set", "model.n=2"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "covariates.json")
    a = ap.parse_args()
    config = ROOT / "configs" / "seatbelts.yaml"
    results: dict = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "runs": {}}
    for seed in range(a.seeds):  # alternating variants, so a change in the machine's load hits all alike
        for name, extra in VARIANTS.items():
            out = WORK / f"{name.replace(' ', '_')}-{seed}"
            args = [
                "train",
                str(config),
                "-q",
                "--overwrite",
                "--set",
                f"train.seed={seed}",
                "--set",
                f"output.dir={out}",
            ]
            run([*args, *extra])
            m = json.loads((out / "metrics.json").read_text())
            row = {"seed": seed, "test_MAE": m["test"]["model"]["MAE"], "val_MAE": m["val"]["model"]["MAE"]}
            results["runs"].setdefault(name, []).append(row)
            print(f"{name:17s} seed {seed}: test MAE {row['test_MAE']:.1f}, val MAE {row['val_MAE']:.1f}", flush=True)
    print("\n| law as | test MAE, mean ± sd over seeds | val MAE |\n|---|---:|---:|")
    for name, rows in results["runs"].items():
        test = [r["test_MAE"] for r in rows]
        val = [r["val_MAE"] for r in rows]
        print(f"| {name} | {statistics.mean(test):.1f} ± {statistics.stdev(test):.1f} | {statistics.mean(val):.1f} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
