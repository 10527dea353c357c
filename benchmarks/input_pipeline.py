r"""Train input pipeline throughput (crops/s), next to the pipeline it replaced, in one run.

    python -m benchmarks.input_pipeline [--folder ../shared/data/aerials] [--batch 128]
        [--crop 32] [--batches 30] [--out input_pipeline.json]

Rows (results in benchmarks/input_pipeline.md):
- ``current``: ``collage.data.pipeline.make_image_dataset`` as training uses it
  (``EpochShuffle``, folder images decoded once and cached).
- ``reference``: the same pipeline built with grain's ``shuffle(seed).repeat()`` and, for the
  folder, an uncached source that decodes the file for every crop: the code before the change.
Each row: crops over the wall time of ``--batches`` batches, after 4 warm-up batches.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import grain
import numpy as np

from collage.data import pipeline, sources


def _reference(src, *, crop, batch, seed=0):
  """The train pipeline with grain's shuffle, as before ``EpochShuffle``."""
  shuffle_seed, augment_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
  ds = grain.MapDataset.source(src).shuffle(seed=shuffle_seed).repeat()
  ds = ds.random_map(functools.partial(pipeline.train_element, crop=(crop, crop),
                                       dihedral=True), seed=augment_seed)
  ds = ds.batch(batch, drop_remainder=True, batch_fn=pipeline.stack_batch)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=pipeline.DEFAULT_THREADS,
                                                   prefetch_buffer_size=2)))


def _rate(it, batches: int, batch: int) -> float:
  """Crops/s over ``batches`` batches after a warm-up of 4 (which also empties the read-ahead
  buffer, so the timed batches are produced while being timed)."""
  for _ in range(4):
    next(it)
  t = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch / (time.perf_counter() - t)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--folder", default="../shared/data/aerials")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--crop", type=int, default=32)
  p.add_argument("--batches", type=int, default=30)
  p.add_argument("--out", default="")
  a = p.parse_args(argv)
  rows = []
  cases = [("embedded", lambda: sources.open_source("embedded"))]
  if os.path.isdir(a.folder):  # the reference decodes the file on every access (no cache)
    cases.append((f"folder:{a.folder}", lambda: sources.FolderSource(a.folder, cache_mb=0)))
  print(f"| source | current (crops/s) | reference (crops/s) | speed-up |\n| --- | ---: | ---: | ---: |")
  for spec, ref_source in cases:
    cur = _rate(pipeline.make_image_dataset(spec, split="train", crop_size=a.crop,
                                            batch_size=a.batch), a.batches, a.batch)
    ref = _rate(_reference(ref_source(), crop=a.crop, batch=a.batch), a.batches, a.batch)
    rows.append({"source": spec, "current": cur, "reference": ref, "batch": a.batch,
                 "crop": a.crop, "grain": grain.__version__ if hasattr(grain, "__version__")
                 else "?", "load": os.getloadavg()[0]})
    print(f"| {spec} | {cur:.0f} | {ref:.0f} | {cur / ref:.1f}x |", flush=True)
  if a.out:
    with open(a.out, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
