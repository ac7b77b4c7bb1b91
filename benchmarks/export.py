"""ONNX export of every shipped run: its parity check, and onnxruntime against `lstm predict`.

    python benchmarks/export.py                  # train the shipped configs (once), export, time
    python benchmarks/export.py --configs co2 --repeats 7

For each shipped config the run is trained as shipped (kept under benchmarks/.data/export), then
`lstm export` writes its graph and checks it against the predict path; its max difference is
recorded. On the CO2 run, side by side in one sitting:

- forecasts per second in-process: onnxruntime (1 thread) against the same forecaster in torch
  (the run's model behind predict's scaling, 1 thread), one window per call and 256 per call;
- whole-process latency of one forecast: a Python process that loads onnxruntime and the graph
  and forecasts the CSV's last window, against `lstm predict RUN --data CSV` (which also reads and
  checks the CSV, as a user's call does). Medians of --repeats, alternating.

Results go to benchmarks/results/export.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("LSTMCLI_BENCH_DATA", ROOT / "benchmarks" / ".data")) / "export"
RESULTS = ROOT / "benchmarks" / "results" / "export.json"
LSTM = [sys.executable, "-m", "lstmcli"]

ONE_FORECAST = """
import sys, numpy as np, onnxruntime as ort
path, csv, L = sys.argv[1], sys.argv[2], int(sys.argv[3])
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
y = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=1, dtype=np.float32)
print(s.run(["forecast"], {"x": y[-L:].reshape(1, L, 1), "series": np.zeros(1, np.int64)})[0].ravel()[:3])
"""


def lstm(*args: str) -> str:
    proc = subprocess.run([*LSTM, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    if proc.returncode:
        raise SystemExit(f"lstm {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def trained(name: str) -> Path:
    run = WORK / name
    if not (run / "metrics.json").is_file():
        lstm("train", str(ROOT / "configs" / f"{name}.yaml"), "-q", "--overwrite", "--set", f"output.dir={run}")
    return run


def parity(name: str) -> dict:
    run = trained(name)
    out = WORK / f"{name}.onnx"
    start = time.perf_counter()
    text = lstm("export", str(run), "--out", str(out))
    seconds = time.perf_counter() - start
    line = next(x for x in text.splitlines() if x.startswith("check:"))
    return {"seconds": round(seconds, 2), "bytes": out.stat().st_size, "check": line}


def throughput(name: str, repeats: int) -> dict:
    """Forecasts per second in this process: onnxruntime and torch, 1 thread each."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from lstmcli.commands.export import _tables
    from lstmcli.export.onnx import Deployed
    from lstmcli.runs.run import load_run

    torch.set_num_threads(1)
    run = load_run(trained(name))
    metrics = run.metrics()
    cal = metrics.calibration["model"] if metrics and metrics.calibration else None
    levels = [80, 95] if cal else []
    deployed = Deployed(run.model, _tables(run, cal, levels)).eval()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(WORK / f"{name}.onnx"), opts, providers=["CPUExecutionProvider"])
    L, n = run.cfg.data.lookback, run.cfg.model.n
    rng = np.random.default_rng(0)
    out: dict[str, dict[str, float]] = {}
    for batch in (1, 256):
        x = (350 + rng.normal(0, 5, size=(batch, L, n))).astype(np.float32)
        s = np.zeros(batch, dtype=np.int64)
        calls = max(20, 2000 // batch)

        def ort_call(x: np.ndarray = x, s: np.ndarray = s) -> None:
            session.run(None, {"x": x, "series": s})

        xt, st = torch.as_tensor(x), torch.as_tensor(s)

        def torch_call(xt: torch.Tensor = xt, st: torch.Tensor = st) -> None:
            with torch.no_grad():
                deployed(xt, st)

        rates: dict[str, list[float]] = {"onnxruntime": [], "torch": []}
        for _ in range(repeats):  # alternating, so drift on a shared machine hits both alike
            for label, fn in (("onnxruntime", ort_call), ("torch", torch_call)):
                fn()
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                rates[label].append(batch * calls / (time.perf_counter() - start))
        out[f"batch {batch}"] = {k: round(statistics.median(v), 1) for k, v in rates.items()}
    return out


def latency(name: str, repeats: int) -> dict:
    """Whole-process wall time of one forecast of the CSV's last window."""
    import yaml

    run = trained(name)
    csv = json.loads((run / "meta.json").read_text())["data"]["path"]
    L = str(yaml.safe_load((run / "config.yaml").read_text())["data"]["lookback"])
    graph = str(WORK / f"{name}.onnx")
    times: dict[str, list[float]] = {"onnxruntime process": [], "lstm predict": []}
    commands = {
        "onnxruntime process": [sys.executable, "-c", ONE_FORECAST, graph, csv, L],
        "lstm predict": [*LSTM, "predict", str(run), "--data", csv, "--json"],
    }
    for _ in range(repeats):
        for label, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[label].append(time.perf_counter() - start)
    return {k: round(statistics.median(v), 3) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="*", default=sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")))
    ap.add_argument("--timed", default="co2", help="the run whose speed is measured")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "parity": {},
    }
    for name in args.configs:
        result["parity"][name] = parity(name)
        print(name, result["parity"][name]["check"], flush=True)
    if args.timed not in result["parity"]:
        result["parity"][args.timed] = parity(args.timed)
    result["throughput"] = throughput(args.timed, args.repeats)
    print("forecasts/s", json.dumps(result["throughput"]), flush=True)
    result["latency_s"] = latency(args.timed, args.repeats)
    print("one forecast, whole process", json.dumps(result["latency_s"]), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
