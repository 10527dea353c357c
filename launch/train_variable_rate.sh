#!/usr/bin/env bash
# Trains the variable-rate Neural Collage codec model on a CPU (experiments/configs/compress.py:
# variable: one model for every quality, 4x4 luma / 8x8 chroma ranges, eight rate levels lam
# 0.0002..0.04, the context entropy model, started from the retired factorized-prior model
# r4_var8) on random 32x32 crops of the shared photographs and aerials (never Kodak), then
# exports it at half precision. The shipped default was trained with the same config on a GPU
# (launch/device_train_codec.sh); collage/assets/README.md has both records.
#
#   bash launch/train_variable_rate.sh RUNS_DIR [DATA_DIR] [OUT_DIR] [-- extra absl flags]
#
# DATA_DIR defaults to ../shared/data (its photos/ and aerials/ are the training images), OUT_DIR
# to RUNS_DIR/models/variable. Re-running resumes the run from its last checkpoint. Eval uses
# central crops of the 3 embedded eval photographs. Extra flags after "--" go to the run; the
# config's batch of 256 is the GPU recipe, so on a CPU pass e.g. --config.batch_size=32
# --config.total_steps=3000 (about 13 steps/s on 2 cores).
set -euo pipefail
runs=${1:?usage: train_variable_rate.sh RUNS_DIR [DATA_DIR] [OUT_DIR] [-- flags]}
shift
data=../shared/data
out=$runs/models/variable
if [[ $# -gt 0 && $1 != "--" ]]; then data=$1; shift; fi
if [[ $# -gt 0 && $1 != "--" ]]; then out=$1; shift; fi
[[ ${1:-} == "--" ]] && shift
mkdir -p "$runs"

# The training folder (photos + aerials, linked) and the eval folder (embedded eval split).
python - "$runs" "$data" <<'PY'
import os, sys
import numpy as np
from PIL import Image
from collage.data.embedded import embedded_images
runs, data = sys.argv[1:]
train, evals = f"{runs}/data_train", f"{runs}/data_eval"
os.makedirs(train, exist_ok=True)
os.makedirs(evals, exist_ok=True)
for sub in ("photos", "aerials"):
  for f in sorted(os.listdir(os.path.join(data, sub))):
    if f.lower().endswith(".png") and not os.path.exists(f"{train}/{sub}_{f}"):
      os.symlink(os.path.abspath(os.path.join(data, sub, f)), f"{train}/{sub}_{f}")
for name, img in embedded_images(3, "eval"):
  Image.fromarray(np.asarray(img, np.uint8)).save(f"{evals}/{name}.png")
print(len(os.listdir(train)), "training images,", len(os.listdir(evals)), "eval images")
PY

python -m experiments.main --config experiments/configs/compress.py:variable \
    --workdir "$runs/variable" "--config.data.source=folder:$runs/data_train" \
    "--config.data.eval_source=folder:$runs/data_eval" "$@"

python -m launch.export_codec_model "$runs/variable" "$out" \
    "../shared/data photos (45) + aerials (30), 32x32 crops"
