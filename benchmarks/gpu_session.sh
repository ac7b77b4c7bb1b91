#!/usr/bin/env bash
# One sitting on a CUDA machine: the device, the CUDA path end to end, the graph check and the
# GPU benchmarks. Writes logs under ${OUT:-gpu_out}. Run from the repository root:
#     bash benchmarks/gpu_session.sh
# Extra Python packages (pydantic, ...) may be given as wheels in .whl/ (installed to /tmp/site).
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.backends.cudnn.version())" | tee -a "$OUT/device.txt"

step() { echo "== $1"; shift; "$@" 2>&1 | tee -a "$OUT/session.log"; echo "rc=${PIPESTATUS[0]}"; }

# 1. The CUDA path end to end: train (graphs on, the default), predict, inspect --check.
step "train co2 on cuda" python3 -m lstmcli train configs/co2.yaml --set train.device=cuda --set output.dir=/tmp/runs/co2 --quiet
step "predict backtest" python3 -m lstmcli predict /tmp/runs/co2 --data data/co2_weekly.csv --backtest --split test
step "inspect check" python3 -m lstmcli inspect /tmp/runs/co2 --check
step "train sunspots bf16" python3 -m lstmcli train configs/sunspots.yaml --set train.device=cuda --set train.precision=bf16 --set output.dir=/tmp/runs/sun --quiet
# 2. Graph path vs eager (same losses) and throughput against hand-captured reference steps.
step "gpu_check" python3 benchmarks/gpu_check.py --epochs "${EPOCHS:-5}"
# 3. The test suite on a machine where CUDA is visible (device: auto picks it where tests leave it).
[ "${TESTS:-1}" = 1 ] && step "tests" timeout 300 python3 -m pytest -q -x -p no:cacheprovider tests
exit 0
