"""The training state: one pytree holding everything a checkpoint must restore."""

from __future__ import annotations

from typing import Any, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as a pytree of arrays.

  Attributes:
    step: [] int32, train steps taken so far (one per train step, however many networks it
      updates; skipped updates count).
    params: ``{network name: its trainable parameters}``.
    opt_state: ``{network name: its optimizer state}`` (a
      :class:`collage.train.optimizer.GuardedState`: clipping and skip counters live there).
    ema_params: ``{network name: EMA of its parameters}`` for the networks with EMA on only.
    model_state: the task's state that is not trained by gradient (batch or spectral-norm
      statistics, caches, counters); any pytree, ``{}`` when the task has none.
    rng: [2] uint32, the run's step key; step ``s`` uses ``fold_in(rng, s)``.
  """
  step: jax.Array
  params: dict[str, Any]
  opt_state: dict[str, Any]
  ema_params: dict[str, Any]
  model_state: Any
  rng: jax.Array

  @property
  def eval_params(self) -> dict[str, Any]:
    """The parameters to evaluate, sample and show: each network's EMA where it has one."""
    return {name: self.ema_params.get(name, p) for name, p in self.params.items()}


def create_state(params: Mapping[str, Any], model_state: Any,
                 optimizers: Mapping[str, optax.GradientTransformation], rng: jax.Array,
                 ema_networks: tuple[str, ...]) -> TrainState:
  """A fresh state at step 0 (traceable: call it under ``jax.jit``).

  Args:
    params: ``{network name: parameters}``.
    model_state: the task's non-gradient state.
    optimizers: ``{network name: optimizer}``, the same names as ``params``.
    rng: the run's step key.
    ema_networks: the networks that keep an EMA of their parameters.
  """
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=dict(params),
      opt_state={name: optimizers[name].init(p) for name, p in params.items()},
      ema_params={name: jax.tree.map(jnp.copy, params[name]) for name in ema_networks},
      model_state=model_state,
      rng=rng,
  )
