"""Speed of the FID family: Inception features at 299 x 299, the Fréchet distance in 2048-D,
precision/recall, on whatever JAX device is the default (see sample_metrics.md).

    python -m benchmarks.sample_metrics                      # random weights: speed only
    python -m benchmarks.sample_metrics --images 256 --batch 64

Feature speed does not depend on the weights' values, so random weights measure it; the
numbers are images per second after compilation, median of --repeats timed passes over
--images images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np

from collage.evals import features
from collage.metrics import frechet, prec_recall
from collage.nn import inception
from collage.train import mesh as mesh_lib


def _time(fn, repeats: int, cpu: bool = False):
  """Median wall seconds of ``fn``; with ``cpu``, also the median CPU seconds of this process
  (all threads): on a shared machine the CPU time is the work, the wall time includes waiting."""
  walls, cpus = [], []
  for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    fn()
    walls.append(time.perf_counter() - t)
    cpus.append(time.process_time() - c)
  return (float(np.median(walls)), float(np.median(cpus))) if cpu else float(np.median(walls))


def extraction(size: int, images: int, batch: int, repeats: int, devices: int) -> dict:
  net = inception.InceptionV3(seed=0)
  ex = features.FeatureExtractor(net, mesh_lib.make_mesh(jax.devices()[:devices]), batch)
  data = np.random.default_rng(0).integers(0, 256, (images, size, size, 3)).astype(np.uint8)

  def run():
    f = features.FeatureSet(ex)
    f.add(data)
    f.gather()

  t = time.perf_counter()
  jax.block_until_ready(ex(data[:ex.batch]))
  compile_s = time.perf_counter() - t
  seconds, cpu_seconds = _time(run, repeats, cpu=True)
  return {"input": f"{size}x{size}", "devices": devices, "batch": ex.batch, "images": images,
          "compile_s": round(compile_s, 2), "images_per_s": round(images / seconds, 2),
          "cpu_s_per_image": round(cpu_seconds / images, 3)}


def frechet_speed(dim: int, repeats: int) -> dict:
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(dim + 500, dim)), rng.normal(size=(dim + 500, dim))
  (m1, s1), (m2, s2) = frechet.gaussian_fit(a), frechet.gaussian_fit(b)
  seconds = _time(lambda: frechet.frechet_distance(m1, s1, m2, s2), repeats)
  return {"fid_dim": dim, "fid_s": round(seconds, 2)}


def pr_speed(n: int, repeats: int) -> dict:
  rng = np.random.default_rng(0)
  a = rng.normal(size=(n, 2048)).astype(np.float32)
  b = rng.normal(size=(n, 2048)).astype(np.float32)
  prec_recall.precision_recall(a[:64], b[:64])  # compile the block functions
  seconds = _time(lambda: prec_recall.precision_recall(a, b), repeats)
  return {"pr_n": n, "pr_s": round(seconds, 2)}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--images", type=int, default=64)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--devices", type=int, default=1, help="first N devices")
  p.add_argument("--pr_n", type=int, default=4096, help="features per set for P/R")
  args = p.parse_args()
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  rows = [{"device": jax.devices()[0].device_kind, "platform": platform.machine(),
           "cpus": os.cpu_count(), "load_avg_1min": round(load, 1), "jax": jax.__version__}]
  for size in (299, 32):
    rows.append(extraction(size, args.images, args.batch, args.repeats, args.devices))
  rows.append(frechet_speed(2048, args.repeats))
  rows.append(pr_speed(args.pr_n, args.repeats))
  for r in rows:
    print(json.dumps(r))


if __name__ == "__main__":
  main()
