"""Exported Neural Collage models: save and load them, and build models without training.

An exported model is a directory of two files: ``model.json`` (the format tag
``MODEL_FORMAT``, the architecture as :class:`collage.nn.neural_collage.ModelConfig` fields, and free
metadata such as the training ``lam``) and ``params.npz`` (every parameter array, keyed by its
path in the model, see :func:`flat_params`). The codec (:mod:`collage.codec.neural`) reads these
directories; training (``experiments/tasks/compress.py``) writes them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from collage.nn import entropy_model as em
from collage.nn.neural_collage import (ModelConfig, NeuralCollage, initial_steps_and_scales,
                                  stored_entropy_logits)

MODEL_FORMAT = "collage-neural-v1"


def abstract_model(cfg: ModelConfig) -> NeuralCollage:
  """A model whose parameters are shape/dtype placeholders (no computation; fill them with
  ``nnx.update``, as :func:`load_model` does). Building a real model eagerly compiles every
  initializer, which takes long on a busy CPU; under ``jax.jit`` (as the runtime does) it
  does not matter."""
  return nnx.eval_shape(lambda: NeuralCollage(cfg, rngs=nnx.Rngs(0)))


def random_model(cfg: ModelConfig, seed: int = 0, stddev: float = 0.1) -> NeuralCollage:
  """A model with cheap host-side random weights (normal * stddev; prior and steps at their
  initial values). For tests and tools; training initialises with :class:`NeuralCollage`."""
  model = abstract_model(cfg)
  rng = np.random.default_rng(seed)
  state = nnx.state(model, nnx.Param)
  leaves, treedef = jax.tree_util.tree_flatten(state)
  new = [jnp.asarray(stddev * rng.standard_normal(l.shape), l.dtype) for l in leaves]
  nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))
  step0, scale0 = initial_steps_and_scales(model.layout, model.levels)
  model.log_step[...] = jnp.log(jnp.asarray(step0))
  logits = em.laplace_logits(scale0.size, cfg.support, scale0)
  if cfg.context_model:
    logits, zero = stored_entropy_logits(logits)
    model.zero_logits[...] = jnp.asarray(zero)
  model.prior.logits[...] = jnp.asarray(logits)
  return model


def save_model(model: NeuralCollage, directory: str, meta: dict[str, Any] | None = None,
               half: bool = False) -> None:
  """Write ``model.json`` (format, architecture, meta) and ``params.npz`` to ``directory``.

  ``half``: store the weights as float16 (half the size; loaded back as float32). Encoder and
  decoder both use the stored values, so coding stays exact; only the weights change by the
  float16 rounding."""
  os.makedirs(directory, exist_ok=True)
  flat = flat_params(model)
  if half:
    flat = {k: v.astype(np.float16) for k, v in flat.items()}
  np.savez_compressed(os.path.join(directory, "params.npz"), **flat)
  with open(os.path.join(directory, "model.json"), "w") as f:
    json.dump({"format": MODEL_FORMAT, "config": model.cfg.to_dict(), "meta": meta or {}},
              f, indent=1, sort_keys=True)


def load_model(directory: str, rate_lams=(), context_model: bool = False
               ) -> tuple[NeuralCollage, dict[str, Any]]:
  """Inverse of :func:`save_model` -> (model, meta). Raises ValueError naming the problem.

  ``rate_lams``: load a fixed-rate model as a variable-rate one with these lams
  (:func:`to_variable_rate`); a variable-rate model loads as saved. ``context_model``: load a
  factorized-prior model as a context model (:func:`to_context_model`)."""
  jpath = os.path.join(directory, "model.json")
  npath = os.path.join(directory, "params.npz")
  if not (os.path.isfile(jpath) and os.path.isfile(npath)):
    raise ValueError(f"{directory!r} is not an exported neural collage model: it needs "
                     "model.json and params.npz")
  with open(jpath) as f:
    info = json.load(f)
  if info.get("format") != MODEL_FORMAT:
    raise ValueError(f"{jpath}: format {info.get('format')!r}, expected {MODEL_FORMAT!r}")
  cfg = ModelConfig.from_dict(info["config"])
  with np.load(npath) as z:
    flat = {k: z[k] for k in z.files}
  if rate_lams and not cfg.rate_lams:
    cfg, flat = _variable_rate_params(cfg, flat, rate_lams)
  if context_model and not cfg.context_model:
    cfg, flat = _context_params(cfg, flat)
  model = abstract_model(cfg)
  set_flat_params(model, flat)
  return model, info.get("meta", {})


def flat_params(model: NeuralCollage) -> dict[str, np.ndarray]:
  """Every parameter of ``model`` as a host array, keyed by its path in the model (e.g.
  ``"['encoder']['head_w']['kernel']"``): the contents of ``params.npz``."""
  state = nnx.state(model, nnx.Param)
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    out[jax.tree_util.keystr(path)] = np.asarray(leaf)
  return out


def set_flat_params(model: NeuralCollage, flat: dict[str, np.ndarray]) -> None:
  """Inverse of :func:`flat_params`: fill ``model``'s parameters in place (cast to the model's
  dtypes). Raises ValueError naming a missing parameter or a shape that does not match."""
  state = nnx.state(model, nnx.Param)
  leaves = jax.tree_util.tree_leaves_with_path(state)
  names = _param_names(model)
  missing = sorted(set(names) - set(flat))
  if missing:
    raise ValueError(f"saved parameters lack {missing[:5]} (model/config mismatch)")
  new = []
  for name, (_, leaf) in zip(names, leaves):
    v = flat[name]
    if v.shape != leaf.shape:
      raise ValueError(f"parameter {name}: saved shape {v.shape}, model expects {leaf.shape}")
    new.append(jnp.asarray(v, leaf.dtype))
  treedef = jax.tree_util.tree_structure(state)
  nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))


def with_encoder_depth(model: NeuralCollage, depth: int) -> NeuralCollage:
  """The model with its encoder's trunk cut to its first ``depth`` residual blocks, every other
  parameter (the rest of the encoder, the auxiliary patches, the steps, the entropy model)
  unchanged. The trunk is residual, so the result is a working, cheaper encoder for the same
  decoder: the start of distilling one (``experiments/tasks/distill_codec_encoder.py``).

  Raises:
    ValueError: ``depth`` outside 0..(the model's depth - 1), naming the valid range.
  """
  if not 0 <= depth < model.cfg.depth:
    raise ValueError(f"depth must be in 0..{model.cfg.depth - 1} (the model has "
                     f"{model.cfg.depth} blocks), got {depth}")
  dropped = [f"['blocks'][{i}]" for i in range(depth, model.cfg.depth)]
  out = abstract_model(dataclasses.replace(model.cfg, depth=depth))
  set_flat_params(out, {k: v for k, v in flat_params(model).items()
                        if not any(d in k for d in dropped)})
  return out


def to_variable_rate(model: NeuralCollage, rate_lams) -> NeuralCollage:
  """A variable-rate model (:attr:`ModelConfig.rate_lams`) that starts from a fixed-rate one:
  the same weights, the fixed model's steps and pmfs at every level, the encoder's FiLM at
  the identity; it computes what the fixed model does at every level. The start of
  variable-rate training from a shipped model (also ``load_model(..., rate_lams=...)``)."""
  cfg, flat = _variable_rate_params(model.cfg, flat_params(model), rate_lams)
  out = abstract_model(cfg)
  set_flat_params(out, flat)
  return out


def _variable_rate_params(cfg: ModelConfig, flat: dict[str, np.ndarray], rate_lams
                          ) -> tuple[ModelConfig, dict[str, np.ndarray]]:
  """:func:`to_variable_rate` on host arrays (no model computation, so it also runs while a
  training initialiser is traced)."""
  if cfg.rate_lams:
    raise ValueError("the model is already a variable-rate model")
  cfg = dataclasses.replace(cfg, rate_lams=tuple(rate_lams))
  levels = len(cfg.rate_lams)
  flat = dict(flat)
  names = _param_names(abstract_model(cfg))
  for key in names:
    if key.startswith("['log_step']"):
      flat[key] = np.stack([flat[key]] * levels)
    elif key.startswith("['prior']['logits']"):
      flat[key] = np.concatenate([flat[key]] * levels)
    elif key.startswith("['encoder']['film']"):
      flat[key] = np.zeros((levels, 2, cfg.width), np.float32)
  return cfg, flat


def to_context_model(model: NeuralCollage) -> NeuralCollage:
  """A context model (:attr:`ModelConfig.context_model`) that starts from a factorized-prior
  one: the same weights and pmfs, every context's significance the pmf's probability of zero,
  so it computes the same rates at every integer level (between levels the context model
  mixes the significance and the nonzero pmf separately, not the whole pmf)."""
  cfg, flat = _context_params(model.cfg, flat_params(model))
  out = abstract_model(cfg)
  set_flat_params(out, flat)
  return out


def _context_params(cfg: ModelConfig, flat: dict[str, np.ndarray]
                    ) -> tuple[ModelConfig, dict[str, np.ndarray]]:
  """:func:`to_context_model` on host arrays."""
  if cfg.context_model:
    raise ValueError("the model already has the context model")
  cfg = dataclasses.replace(cfg, context_model=True)
  flat = dict(flat)
  (prior,) = [k for k in flat if k.startswith("['prior']['logits']")]
  (zero,) = [k for k in _param_names(abstract_model(cfg)) if k.startswith("['zero_logits']")]
  flat[prior], flat[zero] = stored_entropy_logits(flat[prior])
  return cfg, flat


def _param_names(model: NeuralCollage) -> list[str]:
  """The keys of :func:`flat_params`, without reading the values."""
  return [jax.tree_util.keystr(p) for p, _ in
          jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))]
