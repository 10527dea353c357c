#!/usr/bin/env bash
# Time-boxed training of the variable-rate context-model codec on one GPU: the run that made the
# shipped model collage/assets/neural_variable/r4_ctx8 on a lent H200 (benchmarks/neural_codec.md,
# session 8; r4_var8 was then still in collage/assets/neural_variable, now in neural_retired).
# The flags spell out compress.py:variable's own values, as they were run. A short probe run measures the steps per second (compilation included in its own
# time, not in the rate), then the real run gets as many steps as fit BUDGET_S seconds, so its
# cosine schedule ends where the time does; it exports the model at its last step.
#
#   bash launch/device_train_codec.sh OUT_DIR [DATA_DIR] [-- extra absl flags]
#
# DATA_DIR (default .gpu) holds data_train/ and data_eval/ (PNG folders). On the lent machine,
# which reaches no package index and takes at most 64 MiB of working tree, the training images
# were central windows of 29 % of the area of each of the 75 shared photos + aerials (the whole
# images do not fit) and the dependencies the machine lacks travelled as wheels in .whl/
# (WHEELS=none when they are installed):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8 ml_collections==1.1.0 \
#       grain==0.2.18 array_record==0.8.6 portpicker==1.6.0
set -euo pipefail
out=${1:?usage: device_train_codec.sh OUT_DIR [DATA_DIR] [-- flags]}
shift
data=.gpu
if [[ $# -gt 0 && $1 != "--" ]]; then data=$1; shift; fi
[[ ${1:-} == "--" ]] && shift
budget=${BUDGET_S:-300}  # seconds of stepping of the real run (the shipped model: 300)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
wheels=${WHEELS:-.whl}
if [ -d "$wheels" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$wheels"/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
lams=0.0002,0.000426,0.000908,0.00193,0.00412,0.00877,0.0187,0.04
flags=(--config experiments/configs/compress.py:variable
       "--config.data.source=folder:$data/data_train" "--config.data.eval_source=folder:$data/data_eval"
       --config.init_from=collage/assets/neural_retired/r4_var8 --config.model.context_model=True
       "--config.model.rate_lams=$lams" --config.batch_size=256 --config.optimizer.learning_rate=8e-4
       --config.optimizer.warmup_steps=200 "$@")
work=${WORK:-/tmp/device_train}
rm -rf "$work"
python3 -m experiments.main "${flags[@]}" --workdir "$work/probe" --config.total_steps=300 \
    --config.log_every=100 --config.eval_every=300 --config.checkpoint_every=300 2>&1 | tail -4
steps=$(python3 - "$work/probe/metrics.jsonl" "$budget" <<'PY'
import json, sys
rates = [json.loads(l).get("steps_per_sec") for l in open(sys.argv[1])]
rate = [r for r in rates if r][-1]          # the last window: compiled, warm
print(max(1000, int(rate * float(sys.argv[2]) / 500) * 500))
PY
)
echo "probe: $(grep -o '"steps_per_sec": [0-9.]*' "$work/probe/metrics.jsonl" | tail -1); main run: $steps steps"
python3 -m experiments.main "${flags[@]}" --workdir "$work/main" --config.total_steps=$steps \
    --config.log_every=$((steps / 20)) --config.eval_every=$steps --config.checkpoint_every=$steps \
    2>&1 | tee "$out/train.log" | grep -E "step [0-9]+/|eval" | tail -25
cp "$work/main/metrics.jsonl" "$out/metrics.jsonl"
python3 -m launch.export_codec_model "$work/main" "$out/model" \
    "central 29% windows of ../shared/data photos (45) + aerials (30), 32x32 crops"
