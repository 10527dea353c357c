#!/usr/bin/env bash
# Reproduces the shipped neural codec models (collage/assets/neural/*, session 4): each of the
# five previous models (collage/assets/neural_retired/s3_*) fine-tuned at its own lam on
# random 32x32 crops of 26 photographs, the 14 embedded training photographs and the 12 USC-SIPI
# aerials, then exported at half precision with its rate rank.
#
#   bash launch/finetune_neural_models.sh RUNS_DIR [AERIALS_DIR] [OUT_DIR]
#
# AERIALS_DIR defaults to ../shared/data/aerials, OUT_DIR to RUNS_DIR/models (copy its five
# folders into collage/assets/neural/ to ship them). Re-running resumes each run from its last
# checkpoint. The runs go one after another. On the H100 of session 4 they ran three 4x4-range
# runs at once, then two 8x8-range runs, about 6 minutes of training in all; one at a time a run
# there takes about 1.5 minutes (about 65 steps/s). On a 2-core CPU expect several hours.
set -euo pipefail
runs=${1:?usage: finetune_neural_models.sh RUNS_DIR [AERIALS_DIR] [OUT_DIR]}
aerials=${2:-../shared/data/aerials}
out=${3:-$runs/models}
init=collage/assets/neural_retired
mkdir -p "$runs"

# The training folder (embedded train split + aerials) and the eval folder (embedded eval
# split), as PNG files: the pipeline reads them as folder sources.
python - "$runs" "$aerials" <<'EOF'
import os, shutil, sys
import numpy as np
from PIL import Image
from collage.data.embedded import embedded_images
runs, aerials = sys.argv[1:]
for split in ("train", "eval"):
  os.makedirs(f"{runs}/data_{split}", exist_ok=True)
  for name, img in embedded_images(3, split):
    Image.fromarray(np.asarray(img, np.uint8)).save(f"{runs}/data_{split}/{name}.png")
for f in sorted(os.listdir(aerials)):
  shutil.copy(os.path.join(aerials, f), f"{runs}/data_train/aerial_{f}")
print(len(os.listdir(f"{runs}/data_train")), "training images,",
      len(os.listdir(f"{runs}/data_eval")), "eval images")
EOF

common=(--config.batch_size=128 --config.optimizer.learning_rate=5e-4
        "--config.data.source=folder:$runs/data_train"
        "--config.data.eval_source=folder:$runs/data_eval"
        --config.checkpoint_every=1000 --config.eval_batches=16)
for lam in 0.005 0.009 0.015; do  # 4x4 luma ranges
  python -m experiments.main --config experiments/configs/compress.py:fine \
      --workdir "$runs/ft_r4_lam$lam" "--config.init_from=$init/s3_r4_lam$lam" --config.lam=$lam \
      --config.total_steps=5500 --config.eval_every=2750 --config.log_every=550 "${common[@]}"
done
for lam in 0.0008 0.003; do  # 8x8 luma ranges
  python -m experiments.main --config experiments/configs/compress.py:full \
      --workdir "$runs/ft_r8_lam$lam" "--config.init_from=$init/s3_r8_lam$lam" --config.lam=$lam \
      --config.total_steps=6000 --config.eval_every=3000 --config.log_every=1000 "${common[@]}"
done

python - "$runs" "$out" <<'EOF'
import sys
from collage.nn import hypernet_io
runs, out = sys.argv[1:]
for order, name in enumerate(["r8_lam0.0008", "r8_lam0.003", "r4_lam0.005", "r4_lam0.009",
                              "r4_lam0.015"], start=1):
  m, meta = hypernet_io.load_model(f"{runs}/ft_{name}/artifacts/model")
  meta = {**meta, "order": order, "init_from": f"s3_{name}",
          "source": "embedded train split + USC-SIPI aerials (folder of 26 PNG)"}
  hypernet_io.save_model(m, f"{out}/{name}", meta, half=True)
  print("exported", f"{out}/{name}", meta)
EOF
