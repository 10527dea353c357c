#!/usr/bin/env bash
# The paper-sized configs for ~20 steps each on a lent GPU (at most 7 minutes with compilation):
# step time, measured vs planned peak memory, TFLOP/s and MFU (benchmarks/gpu_readiness.py).
#
#   bash benchmarks/gpu_readiness.sh [OUT]      # OUT defaults to $OUT or runs/gpu_readiness
#
# On the device tool: run it with the project installed with the [cuda] extra, e.g.
#   pip install -e '.[cuda]' && bash benchmarks/gpu_readiness.sh "$OUT"
# Each config runs in its own process (a device's peak memory counter only rises) under its own
# time limit, so one slow compile cannot eat the others' time. Figures go to OUT/*.json and
# OUT/summary.txt; copy them into benchmarks/scale.md with the device named.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs/gpu_readiness}}"
mkdir -p "$out"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}"
export TF_CPP_MIN_LOG_LEVEL=3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/device.txt" 2>&1 || true
python -c "import jax; print(jax.__version__, jax.devices())" >> "$out/device.txt" 2>&1

run() {  # run SECONDS CONFIG BATCH [--set KEY=VALUE ...]
  local limit=$1; shift
  timeout "$limit" python -m benchmarks.gpu_readiness --config "$1" --batch "$2" --steps 20 \
      --out "$out" "${@:3}" 2>>"$out/stderr.txt" | tee -a "$out/summary.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || echo "$1 batch $2: exit $rc (124: over its ${limit} s limit)" | tee -a "$out/summary.txt"
}

# 7 minutes in all at most (each limit includes its compilation):
run 80 experiments/configs/vdvae.py:cifar10 16
run 80 experiments/configs/vdvae.py:cifar10 16 --set model.head=collage
run 90 experiments/configs/magic.py:guided 2
run 70 experiments/configs/magic.py:unguided 4 --set data.crop=256
run 60 experiments/configs/dctransformer.py:imagenet 8
run 40 experiments/configs/compress.py:full 32
cat "$out/device.txt"
