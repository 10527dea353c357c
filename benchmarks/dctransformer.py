r"""DCTransformer measurements for benchmarks/dctransformer.md.

    python -m benchmarks.dctransformer lengths            # sequence lengths per dataset, quality
    python -m benchmarks.dctransformer speed --workdir runs/dct_digits \
        --config experiments/configs/dctransformer.py:digits_quick   # sampling with / without cache

``speed`` restores the latest checkpoint of a trained run and times the jitted sampler on the
same samples with the key/value cache and without it (the whole chunk recomputed through the
three decoders for every element), after a warm-up call of each; elements/s counts generated
elements (end-of-sequence included).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from collage.data import dct_coords
from collage.data.sources import open_source
from collage.nn import dct_sampler as dm
from collage.train import loop, registry

CONFIG = "experiments/configs/dctransformer.py"


def lengths() -> None:
  rows = []
  for name, source, channels, size, count in (("digits 32x32 gray", "digits", 1, 32, 500),
                                              ("photos 64x64 4:2:0", "embedded", 3, 64, 200)):
    cfg = registry.load_config(f"{CONFIG}:{'digits_quick' if channels == 1 else 'photos64'}")
    cfg.unlock()
    cfg.data.source, cfg.data.channels, cfg.data.size = source, channels, size
    cfg.model.max_len, cfg.model.max_value, cfg.model.truncate = 1 << 16, 4096, False
    src = open_source(source, split="train", channels=channels)
    rng = np.random.default_rng(0)
    picks = [dct_coords.fit_image(np.asarray(src[int(i) % len(src)]["image"]), size, rng)
             for i in rng.integers(0, len(src), count)]
    for quality in (25, 50, 75, 95):
      cfg.data.quality = quality
      coder = dct_coords.Coder(cfg)
      n = np.array([int(coder.sequence(p)["length"]) for p in picks])
      bits = np.array([coder.jpeg_bits(p) for p in picks])
      rows.append(f"| {name} | {quality} | {n.mean():.0f} | {np.median(n):.0f} | "
                  f"{np.percentile(n, 99):.0f} | {n.max()} | {bits.mean():.0f} |")
  print("| data | quality | mean length | median | 99th pct | max | libjpeg bits/image |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  print("\n".join(rows))


def speed(workdir: str, config: str, num: int) -> None:
  cfg = registry.load_config(config)
  cfg.unlock()
  cfg.eval_batches, cfg.artifact_samples, cfg.data.eval_images = 1, 0, 8
  task = registry.task_of(cfg)
  state = loop.run(task, cfg, workdir, "eval", devices=jax.devices()[:1])
  params = jax.tree.map(jnp.asarray, task.task_params(jax.device_get(state.eval_params)))
  model = task.model(params)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(num))
  results = {}
  for use_cache in (True, False):
    fn = jax.jit(lambda k, c=use_cache: dm.generate(model, k, task.coder.layout,
                                                     task.coder.capacity, use_cache=c))
    jax.block_until_ready(fn(keys))  # compile and warm up
    start = time.perf_counter()
    out = jax.block_until_ready(fn(keys))
    seconds = time.perf_counter() - start
    steps = int(np.max(np.asarray(out["length"])))  # the loop runs until the longest ends
    elements = int(np.sum(np.asarray(out["length"])))
    results[use_cache] = (seconds, steps, elements, out)
    print(f"use_cache={use_cache}: {num} samples, {elements} elements ({steps} loop steps) in "
          f"{seconds:.2f} s: {elements / seconds:.1f} elements/s")
  same = all(np.array_equal(np.asarray(results[True][3][k]), np.asarray(results[False][3][k]))
             for k in ("ranks", "positions", "values"))
  print(f"cache speed-up: {results[False][0] / results[True][0]:.2f}x (same samples: {same})")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("what", choices=("lengths", "speed"))
  parser.add_argument("--workdir", default="runs/dct_digits")
  parser.add_argument("--config", default=f"{CONFIG}:digits_quick")
  parser.add_argument("--num", type=int, default=8)
  args = parser.parse_args()
  if args.what == "lengths":
    lengths()
  else:
    speed(args.workdir, args.config, args.num)


if __name__ == "__main__":
  main()
