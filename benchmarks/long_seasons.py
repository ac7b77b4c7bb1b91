"""Series with a second, longer season, as a new user trains them: `lstm init CSV` + `lstm train`.

    python benchmarks/long_seasons.py

Three public series that no default was tuned on, taken from the data files inside two wheels on
the package registry (`pip download --no-deps`; nothing else is fetched):
- Taylor (2003): half-hourly electricity demand of England and Wales, 12 weeks of 2000 (pmdarima's
  `load_taylor`), seasons 48 and 336;
- Seattle hourly temperatures of 2010 (vega_datasets' `seattle-temps`), seasons 24 and 168;
- Seattle daily maximum temperatures 2012-2015 (vega_datasets' `seattle-weather`), seasons 7 and 365.

Each runs as init configured it, then with `data.lags` forced on and off, so both sides of init's
lag rule are measured. Scores: the test MAE of the model and of seasonal naive with each season, and
the training seconds. Results go to benchmarks/results/long_seasons.json.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("LSTMCLI_BENCH_DATA", ROOT / "benchmarks" / ".data")) / "long_seasons"
LSTM = [sys.executable, "-m", "lstmcli"]


def _wheel(name: str) -> zipfile.ZipFile:
    found = sorted(WORK.glob(f"{name}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(WORK), name], check=True)
        found = sorted(WORK.glob(f"{name}-*.whl"))
    return zipfile.ZipFile(found[-1])


def _write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def prepare() -> dict[str, Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    src = _wheel("pmdarima").read("pmdarima/datasets/taylor.py").decode()
    body = re.search(r"np\.array\(\[(.*?)\]", src, re.S)
    assert body is not None
    demand = [float(v) for v in body.group(1).replace("\n", "").split(",") if v.strip()]
    start = dt.datetime(2000, 6, 5)  # Monday, 5 June 2000 (the data's documentation)
    taylor = [f"{start + dt.timedelta(minutes=30 * i):%Y-%m-%d %H:%M},{v:g}" for i, v in enumerate(demand)]
    vega = _wheel("vega_datasets")
    temps = list(csv.reader(vega.read("vega_datasets/_data/seattle-temps.csv").decode().splitlines()))[1:]
    weather = list(csv.reader(vega.read("vega_datasets/_data/seattle-weather.csv").decode().splitlines()))[1:]
    return {
        "taylor": _write(WORK / "taylor.csv", "time,demand", taylor),
        "seattle_temps": _write(
            WORK / "seattle_temps.csv", "time,temp", [f"{d.replace('/', '-')},{t}" for d, t in temps]
        ),
        "seattle_weather": _write(
            WORK / "seattle_weather.csv", "date,temp_max", [f"{r[0].replace('/', '-')},{r[2]}" for r in weather]
        ),
    }


def _train(config: Path, name: str) -> dict[str, float | None]:
    run = WORK / "runs" / name
    started = time.perf_counter()
    subprocess.run([*LSTM, "train", str(config), "-q", "--overwrite", "--set", f"output.dir={run}"], check=True)
    seconds = time.perf_counter() - started
    test = json.loads((run / "metrics.json").read_text())["test"]
    longer = {f"snaive_{p}": f["MAE"] for p, f in (test.get("longer_seasons") or {}).items()}
    return {"model": test["model"]["MAE"], "snaive_s": test["seasonal_naive"]["MAE"], **longer, "seconds": seconds}


def main() -> None:
    results = {}
    for name, path in prepare().items():
        config = WORK / f"{name}.yaml"
        subprocess.run([*LSTM, "init", str(path), "--out", str(config), "--force"], check=True, capture_output=True)
        cfg = yaml.safe_load(config.read_text())
        longer = cfg["data"]["season"][-1]
        row: dict[str, object] = {"init_lags": cfg["data"].get("lags", [])}
        for variant, lags in (("lags", [longer]), ("no_lags", [])):
            forced = {**cfg, "data": {**cfg["data"], "lags": lags}, "model": {**cfg["model"], "n": 1 + len(lags)}}
            path_v = WORK / f"{name}_{variant}.yaml"
            path_v.write_text(yaml.safe_dump(forced, sort_keys=False))
            row[variant] = _train(path_v, f"{name}_{variant}")
            print(name, variant, row[variant], flush=True)
        results[name] = row
    out = ROOT / "benchmarks" / "results" / "long_seasons.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
