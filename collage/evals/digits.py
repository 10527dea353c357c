"""The digit family: sample quality on the embedded MNIST digits, scored with the features of a
small classifier trained here (:mod:`collage.nn.digit_features`; its recipe in
``collage/assets/digit_features/README.md``), the way the MNIST literature does when Inception
does not fit (28 x 28 gray digits are far from ImageNet)::

    c.evals.digits_fid = ml_collections.ConfigDict()
    c.evals.digits_fid.type = "digits_fid"        # logs digits_fid/fid
    c.evals.digits_fid.num_samples = 2000
    c.evals.digits_fid.every = 0                  # only in --mode eval

    digits_fid          fid: Fréchet distance of the penultimate features to the reference's
    digits_kid          kid, kid_std: the unbiased kernel distance (cubic polynomial kernel),
                        mean and std over ``num_subsets`` subsets of ``subset_size``
                        (:mod:`collage.metrics.kid`); honest at a few thousand samples
    digits_prec_recall  precision, recall: k-NN manifolds (k = 3) against the reference features

Every one also logs ``samples_per_sec`` and takes the draw options of :mod:`collage.evals.draw`
(``num_samples``, ``seed``, ``batch_size``, ``sample``); evaluators of the family with the same
draw share it. Their own options:

    weights     the feature network's weight file ("" : the shipped one)
    reference   the digit split the samples are compared with: train (4,500, default) | eval
                (the 500 held-out) | all. Its features are computed once and cached in
                ``WORKDIR/eval_cache/digits-SPLIT-SHA.npz``, keyed by the network's sha256.
    fit         how samples become 28 x 28 gray digits: auto (28: as they are; 32: the centre
                28, undoing the 2-pixel zero padding of the 32 x 32 digit sets; 28k: averaged
                over k x k blocks, e.g. a collage decoded at scale 2) | none | crop | pool.
                Colour samples are averaged over their channels.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import jax
import numpy as np

from collage.data import digits as digits_data
from collage.evals import draw
from collage.evals import features as features_lib
from collage.metrics import frechet, kid, prec_recall
from collage.nn import digit_features
from collage.train import mesh as mesh_lib
from collage.train.errors import ConfigError

SIDE = digits_data.SIDE
FITS = ("auto", "none", "crop", "pool")
SPLITS = ("train", "eval", "all")
TAPS = ("features", "logits")


def fit_digits(images: np.ndarray, fit: str = "auto") -> np.ndarray:
  """uint8 samples [n, H, W, 1 or 3] -> uint8 digits [n, 28, 28, 1] by the rule ``fit``.

  Raises:
    ValueError: an unknown rule, or a size the rule cannot bring to 28 x 28 (naming both).
  """
  if fit not in FITS:
    raise ValueError(f"fit={fit!r} is unknown; valid: {', '.join(FITS)}")
  x = np.asarray(images)
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"digit samples must be [n, H, W, 1 or 3], got shape {x.shape}")
  if x.shape[-1] == 3:
    x = np.round(x.astype(np.float64).mean(-1, keepdims=True)).astype(np.uint8)
  h, w = x.shape[1:3]
  if fit == "auto":
    fit = ("none" if (h, w) == (SIDE, SIDE) else "crop" if (h, w) == (SIDE + 4, SIDE + 4)
           else "pool" if h == w and h % SIDE == 0 else "unknown")
    if fit == "unknown":
      raise ValueError(f"samples of {h} x {w} have no automatic fit to {SIDE} x {SIDE} (auto "
                       f"takes {SIDE}, {SIDE + 4} and multiples of {SIDE}); set fit to crop or "
                       "pool")
  if fit == "crop":
    if h < SIDE or w < SIDE:
      raise ValueError(f"fit=crop needs samples of at least {SIDE} x {SIDE}, got {h} x {w}")
    top, left = (h - SIDE) // 2, (w - SIDE) // 2
    x = x[:, top:top + SIDE, left:left + SIDE]
  elif fit == "pool":
    if h != w or h % SIDE:
      raise ValueError(f"fit=pool needs square samples whose side is a multiple of {SIDE}, got "
                       f"{h} x {w}")
    k = h // SIDE
    pooled = x.astype(np.float64).reshape(len(x), SIDE, k, SIDE, k, 1).mean((2, 4))
    x = np.round(pooled).astype(np.uint8)
  elif (h, w) != (SIDE, SIDE):
    raise ValueError(f"fit=none needs {SIDE} x {SIDE} samples, got {h} x {w}")
  return x


@functools.lru_cache(maxsize=2)
def _network(path: str, mtime_ns: int, size: int) -> digit_features.DigitFeatures:
  del mtime_ns, size  # cache keys: a rewritten file is read again
  return digit_features.load(path or None)


def load_network(weights: str = "") -> digit_features.DigitFeatures:
  """The digit feature network (``""``: the shipped weights), read once per file version.

  Raises:
    digit_features.WeightFileError: a missing, corrupt or foreign file.
  """
  path = os.path.abspath(weights) if weights else digit_features.SHIPPED
  if not os.path.isfile(path):
    return digit_features.load(path)  # raises, saying what is missing and how to make it
  st = os.stat(path)
  return _network(path if weights else "", st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _extractor(net: digit_features.DigitFeatures, mesh: Any, batch_size: int
               ) -> features_lib.FeatureExtractor:
  return features_lib.FeatureExtractor.of(net.apply, net.params, TAPS, mesh, batch_size)


class DigitScorer:
  """The digit feature network on a mesh: features of digits, the reference split's features
  (cached in ``cache_dir`` when given), and the family's scores.

  Args:
    weights: the weight file ("" : the shipped one).
    mesh: the mesh the features are computed on (default: all devices).
    batch_size: digits per feature batch (rounded up to the device count).
  """

  def __init__(self, weights: str = "", mesh: Any = None, batch_size: int = 250):
    self.network = load_network(weights)
    self.sha256 = self.network.sha256
    self.extractor = _extractor(self.network, mesh if mesh is not None else
                                mesh_lib.make_mesh(), int(batch_size))

  def features(self, digits: np.ndarray) -> np.ndarray:
    """uint8 digits [n, 28, 28, 1] -> penultimate features [n, D] float32 (on every process)."""
    feats = features_lib.FeatureSet(self.extractor)
    feats.add(np.asarray(digits))
    return feats.gather()["features"]

  def reference(self, split: str = "train", cache_dir: str | None = None) -> np.ndarray:
    """Features of the embedded digits of ``split``, read from ``cache_dir`` when cached there.

    Raises:
      ValueError: an unknown split, naming the valid ones.
    """
    if split not in SPLITS:
      raise ValueError(f"reference split {split!r} is unknown; valid: {', '.join(SPLITS)}")
    path = (os.path.join(cache_dir, f"digits-{split}-{self.sha256[:16]}.npz")
            if cache_dir else None)
    if path and os.path.isfile(path):
      try:
        with np.load(path, allow_pickle=False) as f:
          if str(f["sha256"]) == self.sha256 and str(f["split"]) == split:
            return f["features"]
      except (OSError, ValueError, KeyError):
        pass  # an unreadable cache is recomputed and rewritten
    images, _ = digits_data.digit_images(split)
    feats = self.features(images)
    if path and jax.process_index() == 0:
      os.makedirs(cache_dir, exist_ok=True)
      tmp = path + ".tmp.npz"
      np.savez(tmp, features=feats, sha256=np.array(self.sha256), split=np.array(split))
      os.replace(tmp, path)
    return feats

  @staticmethod
  def fid(real: np.ndarray, fake: np.ndarray) -> float:
    mu, sigma = frechet.gaussian_fit(real)
    return frechet.frechet_distance_from_features(fake, mu, sigma)

  @staticmethod
  def scores(real: np.ndarray, fake: np.ndarray, k: int = prec_recall.K,
             num_subsets: int = kid.NUM_SUBSETS, subset_size: int = kid.SUBSET_SIZE,
             seed: int = 0) -> dict[str, float]:
    """Every score of the family: fid, kid, kid_std, precision, recall."""
    kid_mean, kid_std = kid.kernel_distance(real, fake, num_subsets, subset_size, seed)
    precision, recall = prec_recall.precision_recall(real, fake, k=k)
    return {"fid": DigitScorer.fid(real, fake), "kid": kid_mean, "kid_std": kid_std,
            "precision": precision, "recall": recall}


class DigitEvaluator(draw.SampleFeatureEvaluator):
  """Base of the three: options, start-up checks, the digit feature network."""

  OPTIONS = {**draw.SampleFeatureEvaluator.OPTIONS, "weights": "", "reference": "train",
             "fit": "auto"}

  def __init__(self, name: str, options: Mapping[str, Any], ctx: Any):
    super().__init__(name, options, ctx)
    kind, o = options["type"], self.options
    if o["reference"] not in SPLITS:
      raise ConfigError(f"config.evals.{name}.reference={o['reference']!r} is unknown; valid: "
                        f"{', '.join(SPLITS)} (splits of the embedded digits).")
    if o["fit"] not in FITS:
      raise ConfigError(f"config.evals.{name}.fit={o['fit']!r} is unknown; valid: "
                        f"{', '.join(FITS)}.")
    try:
      self.scorer = DigitScorer(str(o["weights"] or ""), ctx.mesh, int(o["batch_size"]))
    except digit_features.WeightFileError as e:
      raise ConfigError(f"config.evals.{name} ({kind}, --config.evals.{name}.weights): "
                        f"{e}") from None
    self._reference: np.ndarray | None = None

  def extractor(self) -> features_lib.FeatureExtractor:
    return self.scorer.extractor

  def fingerprint(self) -> str:
    return self.scorer.sha256

  def prepare(self, images: np.ndarray) -> np.ndarray:
    return fit_digits(images, str(self.options["fit"]))

  def reference(self) -> np.ndarray:
    if self._reference is None:
      self._reference = self.scorer.reference(
          str(self.options["reference"]), os.path.join(self.ctx.workdir, "eval_cache"))
    return self._reference


class DigitFidEvaluator(DigitEvaluator):
  """FID of the digit features against the reference split: logs ``fid``."""

  def measure(self, feats):
    return {"fid": DigitScorer.fid(self.reference(), feats["features"])}


class DigitKidEvaluator(DigitEvaluator):
  """KID of the digit features against the reference split: logs ``kid``, ``kid_std``."""

  OPTIONS = {**DigitEvaluator.OPTIONS, "num_subsets": kid.NUM_SUBSETS,
             "subset_size": kid.SUBSET_SIZE}

  def __init__(self, name, options, ctx):
    super().__init__(name, options, ctx)
    if int(self.options["num_subsets"]) < 1 or int(self.options["subset_size"]) < 2:
      raise ConfigError(f"config.evals.{name}: num_subsets >= 1 and subset_size >= 2, got "
                        f"{self.options['num_subsets']}, {self.options['subset_size']}.")

  def measure(self, feats):
    mean, std = kid.kernel_distance(self.reference(), feats["features"],
                                    int(self.options["num_subsets"]),
                                    int(self.options["subset_size"]), int(self.options["seed"]))
    return {"kid": mean, "kid_std": std}


class DigitPrecisionRecallEvaluator(DigitEvaluator):
  """Precision and recall of the digit features against the reference split (k-NN manifolds):
  logs ``precision``, ``recall``."""

  OPTIONS = {**DigitEvaluator.OPTIONS, "k": prec_recall.K}

  def __init__(self, name, options, ctx):
    super().__init__(name, options, ctx)
    k = int(self.options["k"])
    if k < 1 or int(self.options["num_samples"]) <= k:
      raise ConfigError(f"config.evals.{name}: k={k} needs k >= 1 and more than k samples "
                        f"({self.options['num_samples']}).")

  def measure(self, feats):
    precision, recall = prec_recall.precision_recall(self.reference(), feats["features"],
                                                     k=int(self.options["k"]))
    return {"precision": precision, "recall": recall}


KINDS: dict[str, type[DigitEvaluator]] = {
    "digits_fid": DigitFidEvaluator, "digits_kid": DigitKidEvaluator,
    "digits_prec_recall": DigitPrecisionRecallEvaluator}
