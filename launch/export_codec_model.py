"""Export a codec training run's model for shipping: half-precision weights, with the run's
starting model and the training data named in its metadata.

    python -m launch.export_codec_model RUN_DIR OUT_DIR "DATA DESCRIPTION"

RUN_DIR is a training workdir of experiments/configs/compress.py (its artifacts/model and
config.json); the metadata gets ``init_from`` (the basename of the run's ``init_from``, "" if
none) and ``source`` (DATA DESCRIPTION). Used by launch/train_variable_rate.sh and
launch/device_train_codec.sh.
"""

import json
import os
import sys

from collage.nn import neural_collage_io


def main(argv):
  if len(argv) != 3:
    sys.exit(__doc__)
  run, out, source = argv
  model, meta = neural_collage_io.load_model(os.path.join(run, "artifacts", "model"))
  with open(os.path.join(run, "config.json")) as f:
    init_from = json.load(f).get("init_from", "")
  meta = {**meta, "init_from": os.path.basename(os.path.normpath(init_from)) if init_from else "",
          "source": source}
  neural_collage_io.save_model(model, out, meta, half=True)
  print("exported", out, meta)


if __name__ == "__main__":
  main(sys.argv[1:])
