r"""Held-out NLL of a trained DCTransformer image by image, against libjpeg's size of each.

    python -m benchmarks.dctransformer_per_image --workdir runs/dct_photos64_up \
        --config experiments/configs/dctransformer.py:photos64 \
        [--source folder:../shared/data/kodak]

Restores the latest checkpoint of ``--workdir`` through ``--mode eval`` (which appends the eval
metrics to that directory's metrics.jsonl: point it at a copy of the run's checkpoints) and
prints, for every eval image, the whole-sequence NLL in bits, libjpeg's optimized-Huffman bits
of the same coefficients (headers excluded) and the sequence length. ``--source`` scores the
central crops of another source's eval split instead (up to ``data.eval_images`` of them).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from collage.train import loop, registry


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--config", default="experiments/configs/dctransformer.py:photos64")
  parser.add_argument("--source", default="",
                      help="another eval source (e.g. folder:../shared/data/kodak); default: "
                           "the config's")
  args = parser.parse_args()
  cfg = registry.load_config(args.config)
  cfg.unlock()
  cfg.artifact_samples = 0
  if args.source:
    cfg.data.source = args.source
  task = registry.task_of(cfg)
  state = loop.run(task, cfg, args.workdir, "eval", devices=jax.devices()[:1])
  params = jax.tree.map(jnp.asarray, task.task_params(jax.device_get(state.eval_params)))
  src = task.source("eval")
  rows = []
  for i, element in enumerate(task.eval_elements()):
    batch = {k: jnp.asarray(v)[None] for k, v in element.items()}
    out = jax.device_get(task.eval_fn(params, None, batch, None))
    nll, jpeg, n = float(out["nll_bits"][0]), float(out["jpeg_bits"][0]), float(out["elements"][0])
    rows.append((str(src[i].get("name", i)), nll, jpeg, n))
  print("| image | NLL bits | libjpeg bits | saving | bits/element | elements |")
  print("| --- | --- | --- | --- | --- | --- |")
  for nm, nll, jpeg, n in rows:
    print(f"| {nm} | {nll:.0f} | {jpeg:.0f} | {1 - nll / jpeg:.1%} | {nll / n:.2f} | {n:.0f} |")
  nll, jpeg, n = (np.mean([r[k] for r in rows]) for k in (1, 2, 3))
  print(f"| mean | {nll:.0f} | {jpeg:.0f} | {1 - nll / jpeg:.1%} | {nll / n:.2f} | {n:.1f} |")


if __name__ == "__main__":
  main()
