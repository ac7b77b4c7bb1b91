"""Time lstmcli against the bare PyTorch reference, side by side in one sitting.

    python benchmarks/run.py                      # everything, about 10 minutes on 2 quiet cores
    python benchmarks/run.py --sections epoch,process --cases co2 --repeats 5
    python benchmarks/run.py --list               # case and section names

Sections:
  epoch    per-epoch time (train pass + validation pass) in one process: the tool's Trainer and the
           reference loop on the same scaled array, same model size, batch and threads; runs alternate
           and the ratio is median(tool) / median(reference)
  process  whole `lstm train` process vs `python benchmarks/reference.py`, alternating, wall time and
           peak RSS from /usr/bin/time -v (both get the same thread count and glibc malloc thresholds)
  ingest   the 10M-row x 8-column CSV through pyarrow, polars, pandas and lstmcli (cold and cached)
  memory   peak RSS of training on the 10M-row series at L 24 and L 384 (a few capped batches)
  startup  `lstm --help`, `python -c "import torch"`, `lstm inspect CONFIG`

Cases: every single-series configs/*.yaml, a fixed co2 case (data/co2_weekly.csv, L48 H24, n1 m64 x2, batch 64),
and a synthetic 200,000-row x 8-column series (L96 H24, m64 x2). Generated data lives in
benchmarks/.data/ (gitignored; LSTMCLI_BENCH_DATA moves it). Results go to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, ROOT, median, synthetic_csv, timed_subprocess  # noqa: E402

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
SECTIONS = ("epoch", "process", "ingest", "memory", "startup")


@dataclass
class Case:
    name: str
    config: Path
    overrides: list[str] = field(default_factory=list)
    process_epochs: int = 20  # epochs of the whole-process runs
    epoch_batches: int | None = None  # cap on training batches per timed epoch (benchmark only)
    val_windows: int | None = None  # cap on validation windows per timed epoch (benchmark only)
    process_repeats: int | None = None  # fewer whole-process runs for the long cases


def _write_yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def co2_config() -> Path:
    return _write_yaml(
        DATA_DIR / "co2_L48.yaml",
        f"""\
model: {{n: 1, m: 64, layers: 2, window_scale: false}}
data: {{path: {ROOT / "data" / "co2_weekly.csv"}, date_column: date, target: co2, lookback: 48, horizon: 24, season: 52}}
train: {{epochs: 20, batch_size: 64, loss: mse, seed: 0}}
""",
    )


def wide_config(rows: int, lookback: int, batch: int, dates: bool) -> Path:
    csv = synthetic_csv(rows, 8, dates=dates)
    date = "date_column: date, " if dates else ""
    return _write_yaml(
        DATA_DIR / f"synthetic_{rows}_L{lookback}.yaml",
        f"""\
model: {{n: 8, m: 64, layers: 2, window_scale: false}}
data: {{path: {csv}, {date}target: c0, features: [c1, c2, c3, c4, c5, c6, c7], lookback: {lookback}, horizon: 24, season: 24}}
train: {{epochs: 1, batch_size: {batch}, loss: mse, seed: 0}}
""",
    )


def all_cases(quick: bool) -> list[Case]:
    # The bare reference trains one series; long-format (multi-series) configs have no counterpart.
    single = [p for p in sorted((ROOT / "configs").glob("*.yaml")) if "series_column" not in p.read_text()]
    cases = [Case(p.stem, p, process_epochs=5 if quick else 20) for p in single]
    cases.append(Case("co2_L48", co2_config(), process_epochs=5 if quick else 20))
    cases.append(
        Case(
            "synthetic_200k",
            wide_config(200_000, 96, 64, dates=True),
            process_epochs=1,
            epoch_batches=30 if quick else 100,
            val_windows=4096 if quick else 8192,
            process_repeats=1,  # one `lstm train` epoch is ~140k windows: about a minute per run
        )
    )
    return cases


# ---------------------------------------------------------------------------------------------
# epoch: in-process, alternating


def bench_epoch(case: Case, repeats: int, threads: int, unfused: bool = False) -> dict[str, Any]:
    import torch
    from reference import Reference

    from lstmcli.config import load_config
    from lstmcli.data.dataset import load_dataset
    from lstmcli.training.trainer import Trainer

    torch.set_num_threads(threads)
    cfg = load_config(case.config, [*case.overrides, f"train.threads={threads}"])
    ds = load_dataset(cfg.data)
    tr = Trainer(cfg, ds)
    d, m, t = cfg.data, cfg.model, cfg.train
    if unfused:  # the optimizer lstmcli had before BENCHMARKS.md's fix, to reproduce the "before" ratio
        cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        tr.optimizer = cls(tr.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    ref = Reference(
        ds.scaled,
        ds.split.train_end,
        ds.split.val_end,
        d.lookback,
        d.horizon,
        ds.n_targets,
        m.m,
        m.layers,
        tr.batch_size,
        t.lr,
        t.seed,
    )
    if case.epoch_batches:  # the same number of windows for both, from the same origins
        n = case.epoch_batches * tr.batch_size
        tr.train_origins = tr.train_origins[:n]
        ref.train = ref.train[:n]
    if case.val_windows:
        tr.val_origins = tr.val_origins[: case.val_windows]
        ref.val = ref.val[: case.val_windows]
    assert len(tr.train_origins) == len(ref.train) and len(tr.val_origins) == len(ref.val)

    def tool_epoch() -> float:
        s = time.perf_counter()
        tr.train_epoch()
        tr.val_loss()
        return time.perf_counter() - s

    def ref_epoch() -> float:
        s = time.perf_counter()
        ref.train_epoch()
        ref.mse(ref.val)
        return time.perf_counter() - s

    tool_epoch(), ref_epoch()  # warm-up: allocator, oneDNN primitive caches
    tool, refs = [], []
    for i in range(repeats):
        order = (tool_epoch, ref_epoch) if i % 2 == 0 else (ref_epoch, tool_epoch)
        for fn in order:
            (tool if fn is tool_epoch else refs).append(fn())
    out = {
        "windows": len(tr.train_origins),
        "val_windows": len(tr.val_origins),
        "tool_s": tool,
        "ref_s": refs,
        "tool_median_s": median(tool),
        "ref_median_s": median(refs),
        "ratio": median(tool) / median(refs),
    }
    print(
        f"  epoch   {case.name:18s} tool {out['tool_median_s']:.3f} s  ref {out['ref_median_s']:.3f} s  "
        f"ratio {out['ratio']:.3f}  ({out['windows']} train windows, {repeats} runs each)",
        flush=True,
    )
    return out


# ---------------------------------------------------------------------------------------------
# process: `lstm train` vs reference.py, alternating


def lstm_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("lstm")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "lstmcli"]


def reference_cmd(case: Case, threads: int, epochs: int) -> list[str]:
    from lstmcli.config import load_config

    cfg = load_config(case.config, case.overrides)
    d, m, t = cfg.data, cfg.model, cfg.train
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "reference.py"),
        "--csv",
        d.path,
        "--columns",
        ",".join(d.columns),
        "--lookback",
        str(d.lookback),
        "--horizon",
        str(d.horizon),
        "--m",
        str(m.m),
        "--layers",
        str(m.layers),
        "--batch",
        str(t.batch_size),
        "--epochs",
        str(epochs),
        "--lr",
        str(t.lr),
        "--threads",
        str(threads),
        "--train",
        str(d.split.train),
        "--val",
        str(d.split.val),
        "--seed",
        str(t.seed),
    ]
    return [*cmd, "--log"] if d.transform == "log" else cmd


def bench_process(case: Case, repeats: int, threads: int, long_repeats: int | None = None) -> dict[str, Any]:
    e = case.process_epochs
    with tempfile.TemporaryDirectory() as tmp:
        tool_cmd = [
            *lstm_cmd(),
            "train",
            str(case.config),
            "--quiet",
            "--overwrite",
            *[f"--set={o}" for o in case.overrides],
            f"--set=train.epochs={e}",
            f"--set=train.patience={e}",
            "--set=train.refit=false",  # the reference trains e epochs and no refit: like for like
            f"--set=train.threads={threads}",
            f"--set=output.dir={tmp}/run",
        ]
        ref_cmd = reference_cmd(case, threads, e)
        # the parse cache is off so that every run of the tool reads its CSV, as the reference does
        env = {**MALLOC_ENV, "LSTMCLI_CACHE": "off"}
        tool, refs = [], []
        n = (long_repeats or case.process_repeats) if case.process_repeats else repeats
        for i in range(n):
            pair = [("tool", tool_cmd), ("ref", ref_cmd)]
            for who, cmd in pair if i % 2 == 0 else pair[::-1]:
                (tool if who == "tool" else refs).append(timed_subprocess(cmd, env=env, cwd=ROOT))
    out: dict[str, Any] = {"epochs": e}
    for key in ("wall_s", "rss_mib", "minor_faults"):
        out[f"tool_{key}"] = median([r[key] for r in tool])
        out[f"ref_{key}"] = median([r[key] for r in refs])
    out["tool_wall_all"] = [r["wall_s"] for r in tool]
    out["ref_wall_all"] = [r["wall_s"] for r in refs]
    out["ratio"] = out["tool_wall_s"] / out["ref_wall_s"]
    out["rss_ratio"] = out["tool_rss_mib"] / out["ref_rss_mib"]
    print(
        f"  process {case.name:18s} tool {out['tool_wall_s']:.2f} s  ref {out['ref_wall_s']:.2f} s  ratio "
        f"{out['ratio']:.3f}  | peak RSS tool {out['tool_rss_mib']:.0f} MiB  ref {out['ref_rss_mib']:.0f} MiB "
        f"({e} epochs, {len(tool)} runs each)",
        flush=True,
    )
    return out


# ---------------------------------------------------------------------------------------------
# memory: 10M rows, L 24 vs 384, a few capped batches in a child process


def memory_child(config: str, batches: int, val_windows: int, threads: int) -> None:
    """What `lstm train` holds while training, with the epoch cut to ``batches`` batches."""
    from lstmcli.training.device import stable_malloc

    stable_malloc()
    import torch

    from lstmcli.config import load_config
    from lstmcli.data.dataset import load_dataset
    from lstmcli.training.trainer import Trainer

    torch.set_num_threads(threads)
    cfg = load_config(config, [f"train.threads={threads}"])
    s = time.perf_counter()
    ds = load_dataset(cfg.data)
    load_s = time.perf_counter() - s
    tr = Trainer(cfg, ds)
    tr.train_origins = tr.train_origins[: batches * tr.batch_size]
    tr.val_origins = tr.val_origins[:val_windows]
    tr.train_epoch()
    tr.val_loss()
    print(
        json.dumps(
            {
                "rows": ds.table.n_rows,
                "n": ds.scaled.shape[1],
                "float32_mib": ds.scaled.nbytes / 2**20,
                "float64_targets_mib": ds.table.values.nbytes / 2**20,
                "load_s": load_s,
            }
        )
    )


def bench_memory(threads: int, quick: bool) -> dict[str, Any]:
    rows = 1_000_000 if quick else 10_000_000
    out: dict[str, Any] = {"rows": rows}
    tiny = wide_config(200_000, 24, 64, dates=True)  # torch runtime + model + a small series
    with tempfile.TemporaryDirectory() as cache:
        env = {"LSTMCLI_CACHE_DIR": cache}
        base = timed_subprocess(
            [sys.executable, __file__, "--memory-child", str(tiny), "20", "4096", str(threads)], env=env
        )
        out["runtime_rss_mib"] = base["rss_mib"]
        out["runtime_note"] = "same child on the 200k x 8 series (its arrays are 6 + 12 MiB): torch + model + steps"
        for lookback in (24, 384):
            cfg = wide_config(rows, lookback, 64, dates=False)
            for label in ("cold", "cached"):  # first run parses and writes the cache, second loads it
                r = timed_subprocess(
                    [sys.executable, __file__, "--memory-child", str(cfg), "20", "4096", str(threads)], env=env
                )
                info = json.loads(r["stdout"].strip().splitlines()[-1])
                out[f"L{lookback}_{label}"] = {"rss_mib": r["rss_mib"], "wall_s": r["wall_s"], **info}
                budget = 2 * info["float32_mib"] + out["runtime_rss_mib"]
                print(
                    f"  memory  L{lookback:<4d} {label:6s} peak RSS {r['rss_mib']:.0f} MiB  (float32 array "
                    f"{info['float32_mib']:.0f} MiB; target 2x array + runtime = {budget:.0f} MiB; "
                    f"load {info['load_s']:.1f} s)",
                    flush=True,
                )
    return out


# ---------------------------------------------------------------------------------------------
# startup


def bench_startup(repeats: int) -> dict[str, Any]:
    config = sorted((ROOT / "configs").glob("*.yaml"))[0]
    cmds = {
        "lstm --help": [*lstm_cmd(), "--help"],
        "import torch": [sys.executable, "-c", "import torch"],
        f"lstm inspect {config.relative_to(ROOT)}": [*lstm_cmd(), "inspect", str(config)],
    }
    out: dict[str, Any] = {}
    for name, cmd in cmds.items():
        timed_subprocess(cmd, cwd=ROOT)  # warm the page cache
        out[name] = median([timed_subprocess(cmd, cwd=ROOT)["wall_s"] for _ in range(max(repeats, 5))])
        print(f"  startup {name:40s} {out[name]:.3f} s", flush=True)
    inspect_key = next(k for k in out if k.startswith("lstm inspect"))
    out["inspect_minus_torch_s"] = out[inspect_key] - out["import torch"]
    return out


# ---------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import torch

    model = platform.processor()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg_start": os.getloadavg(),
        "cuda": torch.cuda.is_available(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--cases", default="all", help="comma-separated case names (see --list)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per side for epoch/process timings")
    ap.add_argument("--long-repeats", type=int, help="process runs per side for the long cases (default 1)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--quick", action="store_true", help="smoke test: fewer epochs, batches and rows")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json")
    ap.add_argument("--unfused", action="store_true", help="epoch section: time the tool with the for-loop optimizer")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    # in-process reads of the big CSVs (epoch section) cache next to the generated data, not in ~/.cache
    os.environ.setdefault("LSTMCLI_CACHE_DIR", str(DATA_DIR / "cache"))
    if args.memory_child:
        c, b, v, t = args.memory_child
        memory_child(c, int(b), int(v), int(t))
        return
    cases = all_cases(args.quick)
    if args.list:
        print("sections:", ", ".join(SECTIONS))
        print("cases:   ", ", ".join(c.name for c in cases))
        return
    if args.cases != "all":
        wanted = args.cases.split(",")
        unknown = set(wanted) - {c.name for c in cases}
        if unknown:
            sys.exit(f"unknown case(s): {', '.join(sorted(unknown))}; try --list")
        cases = [c for c in cases if c.name in wanted]
    sections = args.sections.split(",")
    results: dict[str, Any] = {
        "machine": machine(),
        "threads": args.threads,
        "repeats": args.repeats,
        "quick": args.quick,
        "argv": sys.argv[1:],
    }
    print(json.dumps(results["machine"]))
    start = time.perf_counter()
    if "epoch" in sections:
        results["epoch"] = {c.name: bench_epoch(c, args.repeats, args.threads, args.unfused) for c in cases}
    if "process" in sections:
        results["process"] = {c.name: bench_process(c, args.repeats, args.threads, args.long_repeats) for c in cases}
    if "ingest" in sections:
        rows = 1_000_000 if args.quick else 10_000_000
        js = Path(tempfile.mkdtemp()) / "ingest.json"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "ingest.py"),
                "--rows",
                str(rows),
                "--repeats",
                str(args.repeats),
                "--json",
                str(js),
            ],
            check=True,
        )
        results["ingest"] = json.loads(js.read_text())
        shutil.rmtree(js.parent, ignore_errors=True)
    if "memory" in sections:
        results["memory"] = bench_memory(args.threads, args.quick)
    if "startup" in sections:
        results["startup"] = bench_startup(args.repeats)
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["total_s"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\ntotal {results['total_s']:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
