"""The jitted train and eval steps, and the update helper every step shares.

A task with an unusual step (e.g. a GAN with two optimizers) writes its own step function and
reuses :func:`apply_gradients` for each parameter set, so clipping, skipping and EMA behave the
same everywhere.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from collage.train.optimizer import learning_rate_schedule
from collage.train.state import TrainState
from collage.train.task import Batch, Metrics, Task


def apply_gradients(state: TrainState, grads: Any, tx: optax.GradientTransformation,
                    config: ml_collections.ConfigDict) -> tuple[TrainState, Metrics]:
  """One optimizer update with global-norm clipping, bad-update skipping and EMA.

  An update is skipped (parameters and optimizer state unchanged, a counter incremented) when
  the gradient's global norm is non-finite, or above ``config.optimizer.skip_threshold`` when
  that is > 0. The step counter always advances, so data and RNG stay aligned with the step.

  Args:
    state: the current state.
    grads: gradients, same pytree structure as ``state.params``.
    tx: the optax optimizer (see :func:`collage.train.optimizer.make_optimizer`).
    config: the run's config (uses ``optimizer.grad_clip_norm``, ``optimizer.skip_threshold``,
      ``ema_decay``).

  Returns:
    The new state and metrics: ``grad_norm`` (before clipping), ``skipped`` (0/1 this step),
    ``skipped_nonfinite`` and ``skipped_large`` (running totals).
  """
  opt = config.optimizer
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(grad_norm)
  too_large = jnp.logical_and(finite, grad_norm > opt.skip_threshold) if opt.skip_threshold > 0 \
      else jnp.zeros((), bool)
  ok = jnp.logical_and(finite, jnp.logical_not(too_large))

  # Zero bad gradients so the (discarded) update computes nothing non-finite.
  grads = jax.tree.map(lambda g: jnp.where(ok, g, jnp.zeros_like(g)), grads)
  if opt.grad_clip_norm > 0:
    scale = jnp.minimum(1.0, opt.grad_clip_norm / jnp.maximum(grad_norm, 1e-12))
    scale = jnp.where(ok, scale, 0.0)
    grads = jax.tree.map(lambda g: (g * scale).astype(g.dtype), grads)
  updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)

  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
  params = keep(new_params, state.params)
  opt_state = keep(new_opt_state, state.opt_state)

  ema = state.ema_params
  if ema is not None:
    d = config.ema_decay
    ema = jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema, params)

  new_state = state.replace(
      step=state.step + 1,
      params=params,
      opt_state=opt_state,
      ema_params=ema,
      skipped_nonfinite=state.skipped_nonfinite + jnp.logical_not(finite).astype(jnp.int32),
      skipped_large=state.skipped_large + too_large.astype(jnp.int32),
  )
  metrics = {
      "grad_norm": grad_norm,
      "skipped": jnp.logical_not(ok).astype(jnp.float32),
      "skipped_nonfinite": new_state.skipped_nonfinite,
      "skipped_large": new_state.skipped_large,
  }
  return new_state, metrics


def step_rng(state: TrainState) -> jax.Array:
  """The key for the current step: ``fold_in(state.rng, state.step)``."""
  return jax.random.fold_in(state.rng, state.step)


def make_train_step(task: Task, tx: optax.GradientTransformation,
                    config: ml_collections.ConfigDict
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """The (unjitted) default train step: grad of ``task.loss_fn``, then :func:`apply_gradients`.

  Returns:
    ``train_step(state, batch) -> (state, metrics)`` with ``batch`` the global batch; the
    task's own step instead when :meth:`Task.make_train_step` returns one.
  """
  custom = task.make_train_step(tx, config)
  if custom is not None:
    return custom
  schedule = learning_rate_schedule(config.optimizer, int(config.total_steps))

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    rng = step_rng(state)
    (loss, metrics), grads = jax.value_and_grad(task.loss_fn, has_aux=True)(
        state.params, batch, rng)
    new_state, update_metrics = apply_gradients(state, grads, tx, config)
    metrics = {"loss": loss, **metrics, **update_metrics}
    metrics["learning_rate"] = schedule(state.step)
    return new_state, metrics

  return train_step


def make_eval_step(task: Task) -> Callable[[Any, Batch, jax.Array], Metrics]:
  """``eval_step(params, batch, rng) -> metrics`` (unjitted) from ``task.eval_fn``."""
  def eval_step(params, batch, rng):
    return task.eval_fn(params, batch, rng)
  return eval_step
