"""The FID family as evaluators of the runtime: ``fid``, ``sfid``, ``prec_recall``,
``inception_score`` (registered by :mod:`collage.evals`, which the runtime imports by name)::

    c.evals.fid = ml_collections.ConfigDict()
    c.evals.fid.type = "fid"                  # logs fid/fid
    c.evals.fid.num_samples = 50000           # samples drawn through the task's sampler
    c.evals.fid.weights = ""                  # --config.evals.fid.weights=inception_fid.npz
    c.evals.fid.reference = ""                # --config.evals.fid.reference=cifar10_train.npz

Each draws ``num_samples`` samples through the task's sampler as :mod:`collage.evals.draw`
says (options ``num_samples``, ``seed``, ``batch_size``, ``sample``); gray is repeated to RGB and
the Inception network (:mod:`collage.nn.inception`: resize to 299 x 299 on the graph's legacy
grid, its value range) computes their features sharded over the mesh. Evaluators with the same
draw options and weights share one draw at an evaluation.

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
from typing import Any, Mapping

from collage.evals import draw
from collage.evals import features as features_lib
from collage.evals import reference
from collage.metrics import frechet, inception_score, prec_recall
from collage.nn import inception_io
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


class InceptionEvaluator(draw.SampleFeatureEvaluator):
  """Base of the four: options, start-up checks, the Inception network."""

  NUM_SAMPLES = NUM_SAMPLES
  OPTIONS = {**draw.SampleFeatureEvaluator.OPTIONS, "num_samples": NUM_SAMPLES, "weights": ""}
  NEEDS_REFERENCE = True

  def __init__(self, name: str, options: Mapping[str, Any], ctx: Any):
    super().__init__(name, options, ctx)
    kind = options["type"]
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
            f"collage.evals.reference_stats --source SOURCE --weights {path} --out "
            f"REFERENCE.npz` and pass {ref_flag}=REFERENCE.npz.")
      try:
        self.reference = reference.load(ref_path, weights_sha256=self.weights.sha256)
      except reference.ReferenceError as e:
        raise ConfigError(f"config.evals.{name} ({ref_flag}): {e}.") from None

  def extractor(self) -> features_lib.FeatureExtractor:
    return _extractor(self.weights, self.ctx.mesh, int(self.options["batch_size"]))

  def fingerprint(self) -> str:
    return self.weights.sha256


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

  def __init__(self, name, options, ctx):
    super().__init__(name, options, ctx)
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
