"""Training on a busy machine: the default thread choice against one thread and against the bare
PyTorch reference, with and without one CPU-bound neighbour process, runs alternating, medians
(issue 17).

    python benchmarks/busy.py                       # configs/co2.yaml and configs/sunspots.yaml, 5 epochs, 3 rounds
    python benchmarks/busy.py --configs co2 --rounds 5

Each run is `lstm train configs/<name>.yaml -q --set train.epochs=5 --set train.patience=50
--set train.refit=false` in a
fresh process, timed whole. "libgomp default" sets OMP_WAIT_POLICY to an empty value, which
libgomp ignores: its own spin-then-sleep policy, what lstm ran with before it chose passive
waiting. "bare reference" is `benchmarks/reference.py` on the same data, model size, batch and 5
epochs, as a hand-written PyTorch script runs: torch's default threads and OpenMP waiting.
Results go to benchmarks/results/busy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("LSTMCLI_BENCH_DATA", ROOT / "benchmarks" / ".data")) / "busy"
VARIANTS = {
    "default": ([], {}),
    "threads=1": (["--set", "train.threads=1"], {}),
    "2 threads, libgomp default": (["--set", "train.threads=2"], {"OMP_WAIT_POLICY": ""}),
    "bare reference": (["reference"], {}),
}


def reference_args(config: Path) -> list[str]:
    """benchmarks/reference.py with the config's data, model and batch, 5 epochs, torch's own threads."""
    sys.path.insert(0, str(ROOT))
    from lstmcli.config import load_config

    cfg = load_config(config)
    d, m, t = cfg.data, cfg.model, cfg.train
    batch = t.batch_size if isinstance(t.batch_size, int) else 64
    args = [str(ROOT / "benchmarks" / "reference.py"), "--csv", d.path, "--columns", ",".join(d.columns)]
    args += ["--lookback", str(d.lookback), "--horizon", str(d.horizon), "--m", str(m.m), "--layers", str(m.layers)]
    args += ["--batch", str(batch), "--epochs", "5", "--lr", str(t.lr), "--seed", str(t.seed)]
    return [*args, "--log"] if d.transform == "log" else args


def timed(config: Path, extra: list[str], env: dict[str, str]) -> float:
    if extra == ["reference"]:
        args = [sys.executable, *reference_args(config)]
    else:
        args = [sys.executable, "-m", "lstmcli", "train", str(config), "-q", "--overwrite"]
        args += ["--set", "train.epochs=5", "--set", "train.patience=50", "--set", "train.refit=false"]
        args += ["--set", f"output.dir={WORK / 'run'}", *extra]
    start = time.perf_counter()
    proc = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        sys.exit(proc.stderr)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="co2,sunspots")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "busy.json")
    a = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    times: dict[str, dict[str, list[float]]] = {}
    for name in a.configs.split(","):
        config = ROOT / "configs" / f"{name}.yaml"
        for _ in range(a.rounds):
            for load in ("quiet", "busy"):
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load == "busy" else None
                try:
                    for variant, (extra, env) in VARIANTS.items():
                        t = timed(config, extra, env)
                        times.setdefault(f"{name} {load}", {}).setdefault(variant, []).append(t)
                        print(f"{name} {load:5s} {variant:26s} {t:6.2f} s", flush=True)
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
    print("\n| config, machine | " + " | ".join(VARIANTS) + " |\n|---|" + "---:|" * len(VARIANTS))
    for key, per in times.items():
        print(f"| {key} | " + " | ".join(f"{statistics.median(per[v]):.2f} s" for v in VARIANTS) + " |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps({"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "seconds": times}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
