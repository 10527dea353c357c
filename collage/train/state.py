"""The training state: one pytree holding everything a checkpoint must restore."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as a pytree of arrays.

  Attributes:
    step: [] int32, optimizer steps taken so far (skipped updates count as steps).
    params: the task's trainable parameters.
    opt_state: the optax optimizer state for ``params``.
    ema_params: exponential moving average of ``params``, or ``None`` when EMA is off.
    rng: [2] uint32, the run's step key; step ``s`` uses ``fold_in(rng, s)``.
    skipped_nonfinite: [] int32, updates skipped because the gradient was NaN/inf.
    skipped_large: [] int32, updates skipped because the gradient norm exceeded
      ``config.optimizer.skip_threshold``.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  rng: jax.Array
  skipped_nonfinite: jax.Array
  skipped_large: jax.Array

  @property
  def eval_params(self) -> Any:
    """The parameters to evaluate and show: the EMA when it is on."""
    return self.params if self.ema_params is None else self.ema_params


def create_state(params: Any, tx: optax.GradientTransformation, rng: jax.Array,
                 use_ema: bool) -> TrainState:
  """A fresh state at step 0 (traceable: call it under ``jax.jit``)."""
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      ema_params=jax.tree.map(jnp.copy, params) if use_ema else None,
      rng=rng,
      skipped_nonfinite=jnp.zeros((), jnp.int32),
      skipped_large=jnp.zeros((), jnp.int32),
  )
