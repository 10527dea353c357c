"""Distil a Neural Collage codec model's encoder into a cheaper one: fewer residual blocks in
the trunk, everything else (auxiliary patches, quantization steps, entropy model: the whole
decoder side) the teacher's, unchanged.

The student starts as the teacher without its last residual blocks
(:func:`collage.nn.neural_collage_io.with_encoder_depth`: the trunk is residual, so that is a
working encoder already) and learns, on the mean squared difference, to predict the teacher's
continuous code (quantization units, before rounding) of random crops (the teacher's tile) of
``data.source`` at random rate levels ``t ~ U[0, L - 1]``. Only the encoder is a parameter of
the runtime; the teacher and the student's decoder side are model state, never updated. A
file the student writes is decoded with exactly the teacher's decoder and tables, so its codes
cost what the teacher's would.

Eval (exact means over the eval crops, at every integer level): ``code_mse``, the mean squared
difference to the teacher's code, and ``changed``, the fraction of code values that round
differently from the teacher's.

Artifacts: ``WORKDIR/artifacts/model``, the student saved like a shipped model (half
precision) with the recipe and the teacher's metadata in its own; ``collage.codec.neural``
loads it with ``model=PATH``. Kodak is the test set: a folder source named so is refused.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from collage.data import sources
from collage.data.pipeline import make_image_dataset
from collage.nn import neural_collage as hn
from collage.nn import neural_collage_io
from collage.nn.bridge import ModuleBridge
from collage.train import loop
from collage.train.errors import ConfigError
from collage.train.task import Task

ENCODER = "encoder"  # the first path element of every parameter the student trains


def source_specs(config: ml_collections.ConfigDict, split: str) -> list[str]:
  """The comma-separated sources of ``data.source`` (or ``data.eval_source`` for eval)."""
  c = config.data
  text = c.source if split == "train" or not c.eval_source else c.eval_source
  return [s.strip() for s in str(text).split(",") if s.strip()]


def check_not_kodak(specs: Sequence[str]) -> None:
  """Raises ConfigError for a folder source named kodak: Kodak is the test set."""
  for spec in specs:
    parsed = sources.parse_source(spec)
    if parsed.kind == "folder" and "kodak" in os.path.basename(
        os.path.normpath(parsed.path)).lower():
      raise ConfigError(f"{parsed.path}: Kodak is the test set; distil on other images")


def _describe(spec: str) -> str:
  """A source as the student's metadata names it: a folder's basename, else the spec."""
  parsed = sources.parse_source(spec)
  return os.path.basename(os.path.normpath(parsed.path)) if parsed.kind == "folder" else spec


class DistillTask(Task):
  """Trains a shallower encoder of :class:`collage.nn.neural_collage.NeuralCollage` to predict
  a teacher's code; the decoder side is the teacher's."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    teacher, self.teacher_meta = neural_collage_io.load_model(config.teacher)
    self.teacher_cfg = teacher.cfg
    self.levels = len(teacher.cfg.rate_lams)  # rate levels 0..L-1
    if not teacher.cfg.rate_lams:
      raise ConfigError(f"config.teacher={config.teacher!r} is a fixed-rate model; this "
                        "distils variable-rate ones")
    depth = int(config.depth)
    if not 0 <= depth < teacher.cfg.depth:
      raise ConfigError(f"config.depth must be in 0..{teacher.cfg.depth - 1} (the teacher has "
                        f"{teacher.cfg.depth} blocks), got {depth}")
    for split in ("train", "eval"):
      check_not_kodak(source_specs(config, split))
    student = neural_collage_io.with_encoder_depth(teacher, depth)
    self.teacher_bridge = ModuleBridge(teacher)
    self.bridge = ModuleBridge(student)
    self._teacher = self.teacher_bridge.params(teacher)
    start = self.bridge.params(student)
    self._encoder = {k: v for k, v in start.items() if k.split("/")[0] == ENCODER}
    self._decoder_side = {k: v for k, v in start.items() if k.split("/")[0] != ENCODER}

  # -- data -----------------------------------------------------------------------------
  def dataset(self, split, *, seed, process_index, process_count, batch_size):
    specs = source_specs(self.config, split)
    source = specs[0] if len(specs) == 1 else sources.JoinedSource(
        [sources.open_source(s, split=split, channels=3) for s in specs])
    return make_image_dataset(source, split=split, crop_size=self.teacher_cfg.tile,
                              batch_size=batch_size, seed=seed, process_index=process_index,
                              process_count=process_count, channels=3,
                              augment=bool(self.config.data.augment))

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """One train batch: {"image": float32 [B, tile, tile, 3]} in [0, 1]."""
    tile = self.teacher_cfg.tile
    return {"image": jax.ShapeDtypeStruct((batch_size, tile, tile, 3), jnp.float32)}

  # -- model ----------------------------------------------------------------------------
  def init(self, rng):
    """The student's encoder (trained) and, as model state, the teacher and the student's
    decoder side (never updated)."""
    del rng
    return ({"model": dict(self._encoder)},
            {"teacher": dict(self._teacher), "decoder_side": dict(self._decoder_side)})

  def student(self, params, model_state) -> hn.NeuralCollage:
    """The student: the trained encoder ``params`` and the teacher's decoder side."""
    return self.bridge.merge({**params, **model_state["decoder_side"]})

  def _codes(self, params, model_state, x, level) -> tuple[jax.Array, jax.Array]:
    """(student's code, teacher's code) of crops x [B, T, T, 3] at levels [B]: [B, N] each."""
    teacher = self.teacher_bridge.merge(model_state["teacher"])
    target = jax.lax.stop_gradient(teacher.analyse(x, level))
    return self.student(params, model_state).analyse(x, level), target

  def loss_with_state(self, params, model_state, batch, rng):
    x = batch["image"]
    level = jax.random.uniform(rng, x.shape[:1], maxval=float(self.levels - 1))
    code, target = self._codes(params, model_state, x, level)
    mse = jnp.mean((code - target) ** 2)
    return mse, {"code_mse": mse}, model_state

  def eval_fn(self, params, model_state, batch, rng):
    """Per crop, averaged over every integer level: ``code_mse`` and ``changed`` ([B] each)."""
    del rng
    x = batch["image"]
    mse, changed = [], []
    for j in range(self.levels):
      code, target = self._codes(params, model_state, x, jnp.full(x.shape[:1], j, jnp.float32))
      mse.append(jnp.mean((code - target) ** 2, axis=-1))
      changed.append(jnp.mean((jnp.round(code) != jnp.round(target)).astype(jnp.float32), -1))
    return {"code_mse": jnp.mean(jnp.stack(mse), 0), "changed": jnp.mean(jnp.stack(changed), 0)}

  # -- artifacts --------------------------------------------------------------------------
  def recipe(self, step: int) -> dict[str, Any]:
    """The student's metadata: its teacher, how it was distilled, on what."""
    c, tile = self.config, self.teacher_cfg.tile
    teacher = os.path.basename(os.path.normpath(c.teacher))
    specs = source_specs(c, "train")
    count = sum(len(sources.open_source(s, split="train", channels=3)) for s in specs)
    return {"init_from": teacher,
            "distilled": (f"experiments/tasks/distill_codec_encoder.py: encoder with {c.depth} "
                          f"residual block(s) distilled from {teacher}, {step} steps, batch "
                          f"{c.batch_size}, lr {c.optimizer.learning_rate}; decoder side "
                          "copied unchanged"),
            "source": ", ".join(_describe(s) for s in specs)
                      + f" ({count} images, {tile}x{tile} crops)",
            "teacher_meta": json.dumps(self.teacher_meta, sort_keys=True),
            "step": int(step)}

  def write_artifacts(self, params, model_state, step, workdir):
    student = self.student(jax.tree.map(jnp.asarray, params),
                           jax.tree.map(jnp.asarray, model_state))
    neural_collage_io.save_model(student, os.path.join(workdir, "artifacts", "model"),
                                 self.recipe(step), half=True)


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> Any:
  return loop.run(DistillTask(config), config, workdir, mode)
