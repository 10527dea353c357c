"""The FID family as evaluators of the runtime: ``fid``, ``sfid``, ``prec_recall``,
``inception_score``. Importing this module registers them (a task module imports it)::

    c.evals.fid = ml_collections.ConfigDict()
    c.evals.fid.type = "fid"                  # logs fid/fid
    c.evals.fid.num_samples = 50000           # samples drawn through the task's sampler
    c.evals.fid.weights = ""                  # --config.evals.fid.weights=inception_fid.npz
    c.evals.fid.reference = ""                # --config.evals.fid.reference=cifar10_train.npz

Each draws ``num_samples`` samples through the runtime's sampler (``runtime.sampler()``) in
chunks of ``batch_size`` (``start`` = 0, batch_size, ...): sample ``i`` is the one
``--mode sample`` writes as ``i`` for the same seed, whatever the chunking or the device count. Each chunk's images (the sampler's
``"image"``, [n, H, W, 1 or 3] in [0, 1]) are rounded to uint8 as PNGs are written, gray is
repeated to RGB, and the Inception network (:mod:`collage.nn.inception`: resize to 299 x 299 on
the graph's legacy grid, its value range) computes their features sharded over the mesh; the
features stay on the devices and are gathered once, after the last chunk. Evaluators with the
same ``num_samples``, ``seed``, ``batch_size`` and weights share one draw at an evaluation.

    fid              fid: Fréchet distance of pool_3 features to the reference's moments
    sfid             sfid: the same on mixed_6/conv's first 7 channels (2023 features)
    prec_recall      precision, recall: k-NN manifolds (k = 3) against the reference's features
    inception_score  inception_score, inception_score_std: splits of ``split_size`` samples

Everything is checked when the runtime is built, before anything is written: the task has a
sampler, the weight file (``weights``) exists and is ours, the reference file (``reference``)
exists and was made with the same weights. A missing piece stops the run with one message
(:class:`collage.train.errors.ConfigError`) that says where to get it and which flag takes it.
"""

from __future__ import annotations

import functools
import os
import weakref
from typing import Any, Mapping

import numpy as np

from collage.metrics import features as features_lib
from collage.metrics import frechet, inception_score, prec_recall, reference
from collage.nn import inception_io
from collage.train import evaluators
from collage.train.errors import ConfigError

NUM_SAMPLES = 50000  # the papers' sample count; fewer samples bias FID upwards


@functools.lru_cache(maxsize=2)
def _weights(path: str, mtime_ns: int, size: int) -> inception_io.Weights:
  del mtime_ns, size  # cache keys: a rewritten file is read again
  return inception_io.load(path)


@functools.lru_cache(maxsize=2)
def _extractor(weights: inception_io.Weights, mesh: Any, batch_size: int
               ) -> features_lib.FeatureExtractor:
  return features_lib.FeatureExtractor(weights, mesh, batch_size)


class _Draw:
  """The features of the last draw, shared by evaluators asking for the same one (of the same
  state object: held by a weak reference, so a finished evaluation keeps no state alive)."""
  key: tuple[Any, ...] | None = None
  state: Any = None  # weakref.ref to the state, or None
  features: dict[str, np.ndarray] | None = None


class InceptionEvaluator(evaluators.Evaluator):
  """Base of the four: options, start-up checks, the shared draw of features."""

  OPTIONS = {"num_samples": NUM_SAMPLES, "seed": 0, "batch_size": 250, "weights": ""}
  NEEDS_REFERENCE = True
  MIN_SAMPLES = 2

  def __init__(self, name: str, options: Mapping[str, Any], runtime: Any):
    super().__init__(name, options, runtime)
    kind = options["type"]
    if not runtime.task.can_sample():
      raise ConfigError(f"config.evals.{name} ({kind}) measures samples, but task "
                        f"{type(runtime.task).__name__} has no sampler.")
    num = int(self.options["num_samples"])
    if num < self.MIN_SAMPLES:
      raise ConfigError(f"config.evals.{name}.num_samples={num}; {kind} needs at least "
                        f"{self.MIN_SAMPLES}.")
    if int(self.options["batch_size"]) < 1:
      raise ConfigError(f"config.evals.{name}.batch_size must be >= 1.")
    path = str(self.options["weights"] or "")
    flag = f"--config.evals.{name}.weights"
    if not path:
      raise ConfigError(f"config.evals.{name} ({kind}) needs the Inception-v3 weights of the "
                        f"FID graph and none are set: {inception_io.HOW_TO_GET}, and pass "
                        f"{flag}=inception_fid.npz.")
    try:
      if not os.path.isfile(path):
        inception_io.load(path)  # raises: the file does not exist, and how to make it
      st = os.stat(path)
      self.weights = _weights(os.path.abspath(path), st.st_mtime_ns, st.st_size)
    except inception_io.WeightFileError as e:
      raise ConfigError(f"config.evals.{name} ({flag}): {e}.") from None
    self.reference = None
    if self.NEEDS_REFERENCE:
      ref_path = str(self.options["reference"] or "")
      ref_flag = f"--config.evals.{name}.reference"
      if not ref_path:
        raise ConfigError(
            f"config.evals.{name} ({kind}) compares samples with a dataset's reference "
            f"statistics and none are set: make them once with `python -m "
            f"collage.metrics.reference_stats --source SOURCE --weights {path} --out "
            f"REFERENCE.npz` and pass {ref_flag}=REFERENCE.npz.")
      try:
        self.reference = reference.load(ref_path, weights_sha256=self.weights.sha256)
      except reference.ReferenceError as e:
        raise ConfigError(f"config.evals.{name} ({ref_flag}): {e}.") from None

  def features(self, state: Any, step: int) -> dict[str, np.ndarray]:
    """``{tap: [num_samples, D]}`` of this evaluator's draw (shared with its equals)."""
    o = self.options
    key = (id(self.rt), step, int(o["num_samples"]), int(o["seed"]), int(o["batch_size"]),
           self.weights.sha256)
    if _Draw.key == key and _Draw.state is not None and _Draw.state() is state:
      return _Draw.features
    _Draw.key = _Draw.state = _Draw.features = None  # free the last draw first
    extractor = _extractor(self.weights, self.rt.mesh, int(o["batch_size"]))
    feats = features_lib.FeatureSet(extractor)
    sampler, num, chunk = self.rt.sampler(), int(o["num_samples"]), extractor.batch
    for start in range(0, num, chunk):
      n = min(chunk, num - start)
      samples = sampler(state.eval_params, state.model_state, n, int(o["seed"]), start=start)
      if "image" not in samples:
        raise ValueError(f"config.evals.{self.name}: the task's sampler returns "
                         f"{sorted(samples)}, no 'image' to measure")
      feats.add(features_lib.to_uint8(samples["image"]))
    out = feats.gather()
    _Draw.key, _Draw.state, _Draw.features = key, weakref.ref(state), out
    return out

  def run(self, state: Any, step: int) -> dict[str, float]:
    return self.measure(self.features(state, step))

  def measure(self, feats: Mapping[str, np.ndarray]) -> dict[str, float]:
    raise NotImplementedError


class FidEvaluator(InceptionEvaluator):
  """FID against ``reference``: logs ``fid``."""

  OPTIONS = {**InceptionEvaluator.OPTIONS, "reference": ""}

  def measure(self, feats):
    return {"fid": frechet.frechet_distance_from_features(feats["pool"], self.reference.mu,
                                                          self.reference.sigma)}


class SfidEvaluator(FidEvaluator):
  """sFID against ``reference``: logs ``sfid``."""

  def measure(self, feats):
    return {"sfid": frechet.frechet_distance_from_features(feats["spatial"], self.reference.mu_s,
                                                           self.reference.sigma_s)}


class PrecisionRecallEvaluator(InceptionEvaluator):
  """Improved precision and recall against ``reference``'s features: logs ``precision``,
  ``recall``."""

  OPTIONS = {**InceptionEvaluator.OPTIONS, "reference": "", "k": prec_recall.K}

  def __init__(self, name, options, runtime):
    super().__init__(name, options, runtime)
    k = int(self.options["k"])
    if k < 1 or int(self.options["num_samples"]) <= k or len(self.reference.features) <= k:
      raise ConfigError(f"config.evals.{name}: k={k} needs k >= 1 and more than k samples "
                        f"and reference features ({self.options['num_samples']}, "
                        f"{len(self.reference.features)}).")

  def measure(self, feats):
    precision, recall = prec_recall.precision_recall(self.reference.features, feats["pool"],
                                                     k=int(self.options["k"]))
    return {"precision": precision, "recall": recall}


class InceptionScoreEvaluator(InceptionEvaluator):
  """The Inception score of the samples: logs ``inception_score``, ``inception_score_std``."""

  OPTIONS = {**InceptionEvaluator.OPTIONS, "split_size": inception_score.SPLIT_SIZE}
  NEEDS_REFERENCE = False
  MIN_SAMPLES = 1

  def measure(self, feats):
    mean, std = inception_score.inception_score(feats["logits"],
                                                int(self.options["split_size"]))
    return {"inception_score": mean, "inception_score_std": std}


KINDS: dict[str, type[InceptionEvaluator]] = {
    "fid": FidEvaluator, "sfid": SfidEvaluator, "prec_recall": PrecisionRecallEvaluator,
    "inception_score": InceptionScoreEvaluator}


def register_all() -> None:
  """Registers the four types with the runtime (done on import; idempotent)."""
  for kind, cls in KINDS.items():
    evaluators.register(kind, cls)


register_all()
