"""Computes a dataset's reference statistics for the FID-family evaluators, once.

    python -m collage.evals.reference_stats --source tfds:cifar10 --split train \\
        --weights inception_fid.npz --out cifar10_train.npz
    python -m collage.evals.reference_stats --source folder:PATH --crop 256 ...
    python -m collage.evals.reference_stats --source npz:VIRTUAL_imagenet256_labeled.npz ...

Sources: every source string the project reads (``embedded``, ``folder:PATH``,
``tfds:NAME[:SPLIT]``; :mod:`collage.data.sources`) and ``npz:PATH[:KEY]`` (an image array
[N, H, W, 3] uint8 in a ``.npz``, key ``arr_0`` by default, as guided-diffusion stores its sample
and reference batches). Each image (optionally center-cropped, ``--crop``) is resized to
299 x 299 on the host with the graph's own rule (TF1 legacy bilinear), then its features are
computed on all local devices. The output (:mod:`collage.evals.reference`) holds the moments of
all ``--num`` images, the pool features of the first ``--pr_num`` for precision/recall, their
Inception score, the dataset's name and size and the weights' sha256. ``--take_moments`` copies
``mu, sigma, mu_s, sigma_s`` from an ``npz:`` source that has them (guided-diffusion's reference
batches carry moments of the whole dataset, computed by the TensorFlow graph).

Compare two such files with ``python -m collage.evals.compare_stats REF.npz OTHER.npz``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence

import jax
import numpy as np

from collage.data import augment, sources
from collage.images import check_size
from collage.evals import features as features_lib
from collage.evals import reference
from collage.metrics import frechet, inception_score
from collage.nn import inception, inception_io
from collage.train import mesh as mesh_lib

PR_NUM = 10000  # reference images kept for precision/recall (guided-diffusion's reference batches)


class NpzImages:
  """``npz:PATH[:KEY]``: images [N, H, W, 3] uint8 (or [N, H, W] gray) stored in a .npz/.npy."""

  def __init__(self, spec: str):
    path, _, key = spec.partition(":")
    self.path, self.key = path, key or "arr_0"
    if not os.path.isfile(path):
      raise FileNotFoundError(f"npz source {path} does not exist")
    if path.endswith(".npy"):
      self.images = np.load(path, mmap_mode="r")
      self.extra: dict[str, np.ndarray] = {}
    else:
      with np.load(path, allow_pickle=False) as f:
        if self.key not in f.files:
          raise ValueError(f"{path} has no array {self.key!r}; it has {sorted(f.files)}")
        self.images = f[self.key]
        self.extra = {k: f[k] for k in ("mu", "sigma", "mu_s", "sigma_s") if k in f.files}
    shape, dtype = self.images.shape, self.images.dtype
    if dtype != np.uint8 or len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] != 3):
      raise ValueError(f"{path}:{self.key} must be uint8 images [N, H, W, 3] or [N, H, W], got "
                       f"{dtype} {shape}")

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, i: int) -> dict[str, Any]:
    image = np.asarray(self.images[i])
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    return {"image": image, "name": f"{self.path}[{i}]"}


def open_images(source: str, split: str, data_dir: str | None = None,
                image_key: str | None = None):
  """A random-access sequence of ``{"image": uint8 [H, W, 3], "name"}`` for a source string."""
  if source.startswith("npz:"):
    return NpzImages(source[len("npz:"):])
  return sources.open_source(source, split=split, channels=3, data_dir=data_dir,
                             image_key=image_key)


def _label(source: str, split: str) -> str:
  """The dataset's name as the file records it: the source string, with the split where the
  source has splits and the string does not name one."""
  if source == "embedded" or (source.startswith("tfds:") and source.count(":") < 2):
    return f"{source} split={split}"
  return source


def _prepare(element: dict[str, Any], crop: int) -> np.ndarray:
  image = element["image"]
  if crop:
    check_size(image.shape, (crop, crop), element["name"])
    image = augment.center_crop(image, (crop, crop))
  return inception.resize_bilinear_legacy_host(image)


def compute(images, extractor: features_lib.FeatureExtractor, *, num: int, pr_num: int,
            crop: int = 0, start: int = 0, label: str = "", notes: str = "",
            weights_sha256: str = "", log=print) -> reference.Reference:
  """Statistics of ``num`` images of ``images`` from index ``start`` on (all when ``num`` is 0)."""
  available = max(len(images) - int(start), 0)
  total = available if num <= 0 else min(int(num), available)
  if total < 2:
    raise ValueError(f"{label or 'the source'} has {available} images from index {start}; "
                     "statistics need >= 2")
  feats = features_lib.FeatureSet(extractor)
  t0, last = time.time(), time.time()
  for lo in range(0, total, extractor.batch):
    batch = np.stack([_prepare(images[start + i], crop)
                      for i in range(lo, min(lo + extractor.batch, total))])
    feats.add(batch)
    done = min(lo + extractor.batch, total)
    if time.time() - last > 10 or done == total:
      rate = done / max(time.time() - t0, 1e-9)
      log(f"{done}/{total} images, {rate:.1f} images/s, ETA {(total - done) / rate:.0f} s")
      last = time.time()
  arrays = feats.gather()
  mu, sigma = frechet.gaussian_fit(arrays["pool"])
  mu_s, sigma_s = frechet.gaussian_fit(arrays["spatial"])
  score, score_std = inception_score.inception_score(arrays["logits"])
  keep = total if pr_num <= 0 else min(int(pr_num), total)
  return reference.Reference(
      dataset=label, num_images=total, weights_sha256=weights_sha256, mu=mu, sigma=sigma,
      mu_s=mu_s, sigma_s=sigma_s, features=arrays["pool"][:keep], inception_score=score,
      inception_score_std=score_std, notes=notes)


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m collage.evals.reference_stats",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--source", required=True,
                 help="embedded | folder:PATH | tfds:NAME[:SPLIT] | npz:PATH[:KEY]")
  p.add_argument("--split", default="train", help="train | eval | all (default: train)")
  p.add_argument("--weights", required=True, help="the Inception weight file (.npz)")
  p.add_argument("--out", required=True, help="the statistics file to write (.npz)")
  p.add_argument("--num", type=int, default=0, help="images to use, 0 = all (default)")
  p.add_argument("--start", type=int, default=0, help="index of the first image (default 0)")
  p.add_argument("--pr_num", type=int, default=PR_NUM,
                 help=f"images whose features are kept for precision/recall (default {PR_NUM})")
  p.add_argument("--crop", type=int, default=0, help="center crop SIZE x SIZE first (0: none)")
  p.add_argument("--batch_size", type=int, default=100, help="images per device batch")
  p.add_argument("--data_dir", default=None, help="tfds data directory")
  p.add_argument("--image_key", default=None, help="tfds image feature")
  p.add_argument("--take_moments", action="store_true",
                 help="npz sources: copy mu, sigma, mu_s, sigma_s from the file")
  p.add_argument("--force", action="store_true", help="overwrite an existing output")
  args = p.parse_args(argv)
  if os.path.exists(args.out) and not args.force:
    print(f"error: {args.out} exists; pass --force to overwrite it", file=sys.stderr)
    return 2
  try:
    weights = inception_io.load(args.weights)
    images = open_images(args.source, args.split, args.data_dir, args.image_key)
    if args.take_moments and not getattr(images, "extra", None):
      raise ValueError("--take_moments needs an npz: source that holds mu, sigma, mu_s, sigma_s")
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  extractor = features_lib.FeatureExtractor(weights, mesh_lib.make_mesh(), args.batch_size)
  label = _label(args.source, args.split)
  if args.start or args.num:
    label += f" [{args.start}:{args.start + args.num if args.num else ''}]"
  notes = "python -m collage.evals.reference_stats " + " ".join(argv or sys.argv[1:])
  print(f"{label}: the source holds {len(images)} images; {jax.device_count()} devices")
  try:
    ref = compute(images, extractor, num=args.num, pr_num=args.pr_num, crop=args.crop,
                  start=args.start, label=label, notes=notes, weights_sha256=weights.sha256)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.take_moments:
    ex = images.extra
    ref = reference.Reference(**{**ref.__dict__, **{k: ex[k] for k in ex},
                                 "notes": notes + f"; moments taken from {images.path}"})
  reference.save(args.out, ref)
  print(f"wrote {args.out}: {ref.num_images} images, {len(ref.features)} kept for "
        f"precision/recall, Inception score {ref.inception_score:.3f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
