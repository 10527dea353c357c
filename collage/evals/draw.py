"""The base of the evaluators that score samples by a feature network: one draw of samples
through the task's sampler, their features on the mesh, shared by every evaluator of a family
that asks for the same draw.

Options every such evaluator has (``config.evals.NAME.FIELD``):

    num_samples   samples drawn (sample i is the one ``--mode sample`` writes as i, same seed)
    seed          the draw's seed
    batch_size    samples per sampler call and per feature batch (rounded up to the devices)
    sample        the task's sampling options to change for this draw, e.g. {"temperature":
                  0.85} or {"scale": 2}; any other option is config.sample's

The draw is taken in chunks of ``batch_size`` (``start`` = 0, batch_size, ...): the samples do not
depend on the chunking or the device count. Each chunk's images (the sampler's ``"image"``, [n, H,
W, C] in [0, 1]) are rounded to uint8 as PNGs are written, passed through the family's
:meth:`SampleFeatureEvaluator.prepare`, and their features stay on the devices until one gather
after the last chunk. The draw's speed (samples per second, the calls after the first, which
compiles) is logged as ``NAME/samples_per_sec``.
"""

from __future__ import annotations

import abc
import json
import time
import weakref
from typing import Any, Mapping

import numpy as np

from collage.evals import features as features_lib
from collage.train import evaluators
from collage.train.errors import ConfigError


class _Draw:
  """The features of the last draw, shared by evaluators asking for the same one (of the same
  state object: held by a weak reference, so a finished evaluation keeps no state alive)."""
  key: tuple[Any, ...] | None = None
  state: Any = None  # weakref.ref to the state, or None
  features: dict[str, np.ndarray] | None = None
  rate: float = float("nan")


class SampleFeatureEvaluator(evaluators.Evaluator, metaclass=abc.ABCMeta):
  """Draws samples, computes their features, and hands them to :meth:`measure`.

  A family sets ``NUM_SAMPLES`` (the default count), ``MIN_SAMPLES``, and implements
  :meth:`extractor` (its feature network on the mesh), :meth:`fingerprint` (what identifies the
  network's weights) and :meth:`measure`; it may override :meth:`prepare`.
  """

  NUM_SAMPLES = 2000
  MIN_SAMPLES = 2
  OPTIONS = {"num_samples": NUM_SAMPLES, "seed": 0, "batch_size": 250, "sample": {}}

  def __init__(self, name: str, options: Mapping[str, Any], ctx: evaluators.EvalContext):
    super().__init__(name, options, ctx)
    kind = options["type"]
    if not ctx.task.can_sample():
      raise ConfigError(f"config.evals.{name} ({kind}) measures samples, but task "
                        f"{type(ctx.task).__name__} has no sampler.")
    num = int(self.options["num_samples"])
    if num < self.MIN_SAMPLES:
      raise ConfigError(f"config.evals.{name}.num_samples={num}; {kind} needs at least "
                        f"{self.MIN_SAMPLES}.")
    if int(self.options["batch_size"]) < 1:
      raise ConfigError(f"config.evals.{name}.batch_size must be >= 1.")
    self._sampler = self.sampler(self.options["sample"], self.options["batch_size"])

  # -- what a family provides ----------------------------------------------------------------

  @abc.abstractmethod
  def extractor(self) -> features_lib.FeatureExtractor:
    """The family's feature network on the mesh."""

  @abc.abstractmethod
  def fingerprint(self) -> str:
    """What identifies the network's weights (their sha256): part of the shared draw's key."""

  def prepare(self, images: np.ndarray) -> np.ndarray:
    """uint8 samples [n, H, W, C] -> the feature network's input (default: as they are)."""
    return images

  @abc.abstractmethod
  def measure(self, feats: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The draw's features ``{tap: [num_samples, D]}`` -> this evaluator's scalars."""

  # -- the shared draw -------------------------------------------------------------------------

  def draw_key(self, step: int) -> tuple[Any, ...]:
    o = self.options
    return (id(self.ctx), step, int(o["num_samples"]), int(o["seed"]), int(o["batch_size"]),
            json.dumps(o["sample"], sort_keys=True, default=str), self.fingerprint(),
            type(self).prepare)

  def features(self, state: Any, step: int) -> dict[str, np.ndarray]:
    """``{tap: [num_samples, D]}`` of this evaluator's draw (shared with its equals)."""
    key = self.draw_key(step)
    if _Draw.key == key and _Draw.state is not None and _Draw.state() is state:
      return _Draw.features
    _Draw.key = _Draw.state = _Draw.features = None  # free the last draw first
    o = self.options
    extractor = self.extractor()
    feats = features_lib.FeatureSet(extractor)
    num, chunk = int(o["num_samples"]), extractor.batch
    timed_n, timed_s = 0, 0.0
    for start in range(0, num, chunk):
      n = min(chunk, num - start)
      t0 = time.perf_counter()
      samples = self._sampler(state.eval_params, state.model_state, n, int(o["seed"]),
                              start=start)
      if start > 0 or num <= chunk:  # the first of several calls compiles: not timed
        timed_n, timed_s = timed_n + n, timed_s + time.perf_counter() - t0
      if "image" not in samples:
        raise ValueError(f"config.evals.{self.name}: the task's sampler returns "
                         f"{sorted(samples)}, no 'image' to measure")
      feats.add(self.prepare(features_lib.to_uint8(samples["image"])))
    out = feats.gather()
    _Draw.key, _Draw.state, _Draw.features = key, weakref.ref(state), out
    _Draw.rate = timed_n / max(timed_s, 1e-9)
    return out

  def run(self, state: Any, step: int) -> dict[str, float]:
    out = self.measure(self.features(state, step))
    out["samples_per_sec"] = float(_Draw.rate)
    return out
