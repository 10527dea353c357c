"""Evaluators by name (big_vision style): ``config.evals.NAME.type`` picks one; it logs NAME/KEY.

    c.evals.eval.type = "loss"          # the task's eval metrics: exact means over the eval split
    c.evals.grid.type = "samples"       # a grid of samples as artifacts/grid_STEP.png
    c.evals.grid.num = 16
    c.evals.digits.type = "digits_fid"  # collage/evals/: the FID and digit families
    c.evals.digits.every = 0            # any evaluator: steps between its runs in training
                                        # (-1: config.eval_every; 0: only in --mode eval)

The runtime's own two types (``loss``, ``samples``) live here; the sample-quality evaluators
live in the wing :mod:`collage.evals`, which this module imports *by name* before any lookup
(:func:`evaluator_types`), so every type is there in every process while ``collage.train``
imports no model. An evaluator sees the runtime through :class:`EvalContext` only.

Every evaluator accumulates weighted sums and a count (:class:`Accumulator`), so a padded last
batch counts its real rows only and the mean over the eval set is exact; the sums may be arrays
(feature statistics), not just scalars.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Iterator, Mapping

import jax
import ml_collections
import numpy as np

from collage import images
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


class EvalContext:
  """What an evaluator may use of the runtime: its public interface.

  ``task``, ``config``, ``mesh``, ``workdir``, ``eval_key`` (the evaluation's PRNG key),
  ``writer`` (the run's :class:`collage.train.writer.MetricWriter`), ``dataset(split)`` (this
  process's batches of a split) and ``sampler(overrides, batch_size)``: the task's jitted
  :class:`collage.train.sampling.Sampler`, ``sampler(...)(params, model_state, num, seed,
  start=0) -> {name: [num, ...] numpy}`` on every process, with ``config.sample``'s task options
  updated by ``overrides`` (e.g. ``{"temperature": 0.85}``; an option the task does not have is a
  :class:`ConfigError` naming the ones it has).
  """

  def __init__(self, runtime: Any):
    self._rt = runtime

  task = property(lambda self: self._rt.task)
  config = property(lambda self: self._rt.config)
  mesh = property(lambda self: self._rt.mesh)
  workdir = property(lambda self: self._rt.workdir)
  eval_key = property(lambda self: self._rt.eval_key)
  writer = property(lambda self: self._rt.writer)

  def dataset(self, split: str) -> Iterator[Any]:
    return self._rt.dataset(split)

  def sampler(self, overrides: Mapping[str, Any] | None = None, batch_size: int = 0) -> Any:
    return self._rt.sampler(overrides, batch_size)


COMMON_OPTIONS = {"every": -1}  # every evaluator's: steps between runs in training (see above)


def plain(value: Any) -> Any:
  """A config value as plain Python (a nested ConfigDict becomes a dict)."""
  return value.to_dict() if hasattr(value, "to_dict") else value


class Evaluator:
  """One named evaluation. ``run(state, step)`` returns scalars (logged as ``NAME/KEY``).

  Subclasses list their option fields (besides ``type`` and ``every``) in ``OPTIONS`` with
  defaults; ``self.ctx`` is the runtime's :class:`EvalContext`.
  """

  OPTIONS: dict[str, Any] = {}

  def __init__(self, name: str, options: Mapping[str, Any], ctx: EvalContext | None):
    self.name, self.ctx = name, ctx
    valid = {**COMMON_OPTIONS, **self.OPTIONS}
    unknown = sorted(set(options) - set(valid) - {"type"})
    if unknown:
      raise ConfigError(
          f"config.evals.{name} ({options['type']}) has unknown fields {unknown}; valid: "
          f"{', '.join(['type', *self.OPTIONS, *COMMON_OPTIONS]) }.")
    self.options = {**valid, **{k: plain(v) for k, v in options.items() if k != "type"}}

  def sampler(self, sample: Any, batch_size: int) -> Any:
    """The task's sampler with this evaluator's sampling options ``sample`` (checked now, before
    anything is written) and ``batch_size`` (0: ``config.sample.batch_size``).

    Raises:
      ConfigError: ``sample`` is not a block of options, or names an option the task lacks.
    """
    if not isinstance(sample, Mapping):
      raise ConfigError(f"config.evals.{self.name}.sample must be a block of sampling options, "
                        f"e.g. {{'temperature': 0.85}}; got {sample!r}.")
    try:
      return self.ctx.sampler(sample, int(batch_size))
    except ConfigError as e:
      raise ConfigError(f"config.evals.{self.name}.sample: {e}") from None

  def every(self, default: int) -> int:
    """Steps between this evaluator's runs in training (0: never; only ``--mode eval``)."""
    every = int(self.options["every"])
    return int(default) if every < 0 else every

  def due(self, step: int, default: int) -> bool:
    """Whether it runs at training step ``step`` (``default``: ``config.eval_every``)."""
    every = self.every(default)
    return every > 0 and step % every == 0

  def run(self, state: Any, step: int) -> dict[str, float]:
    raise NotImplementedError


class LossEvaluator(Evaluator):
  """The task's ``eval_fn`` over ``config.eval_batches`` eval batches: exact means."""

  def __init__(self, name, options, ctx):
    super().__init__(name, options, ctx)
    self._step = jax.jit(make_eval_step(ctx.task), out_shardings=mesh_lib.replicated(ctx.mesh))
    self._compiling = FirstCall(f"the eval step ({name})")

  def run(self, state, step):
    del step
    acc = Accumulator()
    limit = int(self.ctx.config.eval_batches)
    progress = None
    for i, local in enumerate(self.ctx.dataset("eval")):
      if i >= limit:
        break
      batch = mesh_lib.global_batch(local, self.ctx.mesh)
      acc.add(*self._compiling(self._step, state.eval_params, state.model_state, batch,
                               jax.random.fold_in(self.ctx.eval_key, i)))
      if progress is None:  # batches done / total and an ETA, from the batches after the first
        progress = Progress(i + 1, limit, label=f"{self.name} batch")
      elif (i + 1) % 50 == 0:  # an eval split of up to eval_batches, shown every 50 batches
        progress.report(i + 1, {})
    means = {k: float(v) for k, v in acc.means().items()}
    if means:
      means.update({k: float(v) for k, v in self.ctx.task.eval_summary(means).items()})
    return means


class SamplesEvaluator(Evaluator):
  """Draws ``num`` samples at ``seed`` and writes their grid, ``artifacts/NAME_STEP.png``.
  ``batch_size`` (0: ``config.sample.batch_size``) and ``sample`` (the task's sampling options
  to change, e.g. ``{"temperature": 0.85}``) are this evaluator's own."""

  OPTIONS = {"num": 16, "seed": 0, "batch_size": 0, "sample": {}}

  def __init__(self, name, options, ctx):
    super().__init__(name, options, ctx)
    if ctx is not None:
      self._sampler = self.sampler(self.options["sample"], self.options["batch_size"])

  def run(self, state, step):
    samples = self._sampler(state.eval_params, state.model_state, int(self.options["num"]),
                            int(self.options["seed"]))
    if "image" in samples and jax.process_index() == 0:
      out = os.path.join(self.ctx.workdir, "artifacts")
      os.makedirs(out, exist_ok=True)
      caption = (f"{self.name} at step {step}: {len(samples['image'])} samples, seed "
                 f"{self.options['seed']}")
      images.save_png(os.path.join(out, f"{self.name}_{step}.png"),
                      images.captioned(images.image_grid(samples["image"]), caption))
    return {}


EVALUATORS: dict[str, type[Evaluator]] = {"loss": LossEvaluator, "samples": SamplesEvaluator}


def register(kind: str, cls: type[Evaluator]) -> type[Evaluator]:
  """Makes ``config.evals.NAME.type = kind`` build ``cls`` (the wing :mod:`collage.evals`
  registers its types with this when it is imported).

  Raises:
    ValueError: ``kind`` is taken by another class.
  """
  if kind in EVALUATORS and EVALUATORS[kind] is not cls:
    raise ValueError(f"evaluator type {kind!r} is already registered to "
                     f"{EVALUATORS[kind].__name__}")
  EVALUATORS[kind] = cls
  return cls


BUILTINS = "collage.evals"  # the wing of sample-quality evaluators, imported by name


def evaluator_types() -> dict[str, type[Evaluator]]:
  """Every registered type: the runtime's two and the wing's built-ins (imported first)."""
  importlib.import_module(BUILTINS)
  return EVALUATORS


def make_evaluators(evals: ml_collections.ConfigDict | None, ctx: EvalContext) -> list[Evaluator]:
  """The evaluators ``config.evals`` names, in name order.

  Raises:
    ConfigError: an entry without a known ``type`` (naming the valid types), or a "samples"
      evaluator for a task without a sampler.
  """
  types = evaluator_types()
  out = []
  for name, options in sorted((evals or {}).items()):
    options = dict(options)
    kind = options.get("type", None)
    if kind not in types:
      raise ConfigError(f"config.evals.{name}.type={kind!r} is unknown; valid: "
                        f"{', '.join(sorted(types))}.")
    if kind == "samples" and not ctx.task.can_sample():
      raise ConfigError(f"config.evals.{name} draws samples, but task {type(ctx.task).__name__}"
                        " has no sampler.")
    out.append(types[kind](name, options, ctx))
  return out
