"""Evaluators by name (big_vision style): ``config.evals.NAME.type`` picks one; it logs NAME/KEY.

    c.evals.eval.type = "loss"          # the task's eval metrics: exact means over the eval split
    c.evals.grid.type = "samples"       # a grid of samples as artifacts/grid_STEP.png
    c.evals.grid.num = 16

Every evaluator accumulates weighted sums and a count (:class:`Accumulator`), so a padded last
batch counts its real rows only and the mean over the eval set is exact; the sums may be arrays
(feature statistics), not just scalars.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np

from collage.data import images
from collage.train import mesh as mesh_lib
from collage.train.errors import ConfigError
from collage.train.step import make_eval_step
from collage.train.writer import FirstCall, Progress


class Accumulator:
  """Running weighted sums of arrays, and the total weight, in float64 on the host.

  ``add(sums, count)`` takes one batch's ``{name: sum over its real rows}`` (any shape) and its
  real row count; ``means()`` is ``{name: total sum / total count}``.
  """

  def __init__(self):
    self._pending: list[tuple[Any, Any]] = []  # device arrays: fetched once, in means()
    self.sums: dict[str, np.ndarray] = {}
    self.count = 0.0

  def add(self, sums: Mapping[str, Any], count: Any) -> None:
    self._pending.append((dict(sums), count))

  def _fold(self) -> None:
    for sums, count in jax.device_get(self._pending):
      for k, v in sums.items():
        v = np.asarray(v, np.float64)
        self.sums[k] = self.sums[k] + v if k in self.sums else v
      self.count += float(count)
    self._pending = []

  def means(self) -> dict[str, np.ndarray]:
    """The exact means; ``{}`` when nothing (no real row) was added."""
    self._fold()
    if self.count <= 0:
      return {}
    return {k: v / self.count for k, v in self.sums.items()}


class Evaluator:
  """One named evaluation. ``run(state, step)`` returns scalars (logged as ``NAME/KEY``).

  Subclasses list their option fields (besides ``type``) in ``OPTIONS`` with defaults. The
  runtime they get has ``task``, ``config``, ``mesh``, ``workdir``, ``eval_key``,
  ``dataset(split)`` (this process's eval batches) and ``sampler()`` (the task's jitted sampler:
  ``sampler()(params, model_state, num, seed) -> {name: [num, ...] numpy}``, on every process).
  """

  OPTIONS: dict[str, Any] = {}

  def __init__(self, name: str, options: Mapping[str, Any], runtime: Any):
    self.name, self.rt = name, runtime
    unknown = sorted(set(options) - set(self.OPTIONS) - {"type"})
    if unknown:
      raise ConfigError(
          f"config.evals.{name} ({options['type']}) has unknown fields {unknown}; valid: "
          f"{', '.join(['type', *self.OPTIONS]) }.")
    self.options = {**self.OPTIONS, **{k: v for k, v in options.items() if k != "type"}}

  def run(self, state: Any, step: int) -> dict[str, float]:
    raise NotImplementedError


class LossEvaluator(Evaluator):
  """The task's ``eval_fn`` over ``config.eval_batches`` eval batches: exact means."""

  def __init__(self, name, options, runtime):
    super().__init__(name, options, runtime)
    self._step = jax.jit(make_eval_step(runtime.task),
                         out_shardings=mesh_lib.replicated(runtime.mesh))
    self._compiling = FirstCall(f"the eval step ({name})")

  def run(self, state, step):
    del step
    acc = Accumulator()
    limit = int(self.rt.config.eval_batches)
    progress = None
    for i, local in enumerate(self.rt.dataset("eval")):
      if i >= limit:
        break
      batch = mesh_lib.global_batch(local, self.rt.mesh)
      acc.add(*self._compiling(self._step, state.eval_params, state.model_state, batch,
                               jax.random.fold_in(self.rt.eval_key, i)))
      if progress is None:  # batches done / total and an ETA, from the batches after the first
        progress = Progress(i + 1, limit, label=f"{self.name} batch")
      elif (i + 1) % 50 == 0:  # an eval split of up to eval_batches, shown every 50 batches
        progress.report(i + 1, {})
    means = {k: float(v) for k, v in acc.means().items()}
    if means:
      means.update({k: float(v) for k, v in self.rt.task.eval_summary(means).items()})
    return means


class SamplesEvaluator(Evaluator):
  """Draws ``num`` samples at ``seed`` and writes their grid, ``artifacts/NAME_STEP.png``."""

  OPTIONS = {"num": 16, "seed": 0}

  def run(self, state, step):
    samples = self.rt.sampler()(state.eval_params, state.model_state, int(self.options["num"]),
                                int(self.options["seed"]))
    if "image" in samples and jax.process_index() == 0:
      out = os.path.join(self.rt.workdir, "artifacts")
      os.makedirs(out, exist_ok=True)
      caption = (f"{self.name} at step {step}: {len(samples['image'])} samples, seed "
                 f"{self.options['seed']}")
      images.save_png(os.path.join(out, f"{self.name}_{step}.png"),
                      images.captioned(images.image_grid(samples["image"]), caption))
    return {}


EVALUATORS: dict[str, type[Evaluator]] = {"loss": LossEvaluator, "samples": SamplesEvaluator}


def register(kind: str, cls: type[Evaluator]) -> type[Evaluator]:
  """Makes ``config.evals.NAME.type = kind`` build ``cls``.

  Evaluators that need a model (e.g. the FID family's Inception network) live outside the runtime
  and register themselves when their module is imported (the task module imports it), so
  ``collage.train`` imports no model.

  Raises:
    ValueError: ``kind`` is taken by another class.
  """
  if kind in EVALUATORS and EVALUATORS[kind] is not cls:
    raise ValueError(f"evaluator type {kind!r} is already registered to "
                     f"{EVALUATORS[kind].__name__}")
  EVALUATORS[kind] = cls
  return cls


def make_evaluators(evals: ml_collections.ConfigDict | None, runtime: Any) -> list[Evaluator]:
  """The evaluators ``config.evals`` names, in name order.

  Raises:
    ConfigError: an entry without a known ``type`` (naming the valid types), or a "samples"
      evaluator for a task without a sampler.
  """
  out = []
  for name, options in sorted((evals or {}).items()):
    options = dict(options)
    kind = options.get("type", None)
    if kind not in EVALUATORS:
      raise ConfigError(f"config.evals.{name}.type={kind!r} is unknown; valid: "
                        f"{', '.join(sorted(EVALUATORS))}.")
    if kind == "samples" and not runtime.task.can_sample():
      raise ConfigError(f"config.evals.{name} draws samples, but task {type(runtime.task).__name__}"
                        " has no sampler.")
    out.append(EVALUATORS[kind](name, options, runtime))
  return out
