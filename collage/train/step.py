"""One network's update (a sub-step), the runtime's train step around the task's, the eval step."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from collage.train.state import TrainState
from collage.train.task import Batch, Metrics, Task


class NetworkUpdate:
  """``update(state, name, grads) -> (state, metrics)``: one network's optimizer update.

  Only network ``name`` changes: its parameters, optimizer state (clipping and skip counters
  included) and EMA; a skipped update (non-finite or too large gradient) changes neither its
  parameters, its optimizer's inner state nor its EMA, only the counters. Every other network's arrays are passed through untouched, so a network
  that is not updated in a sub-step does not move at all. The step does not advance here.

  Args:
    optimizers: ``{name: transformation}`` from :func:`collage.train.optimizer.make_optimizer`.
    ema_decays: ``{name: decay}`` for the networks that keep an EMA.

  Metrics: ``NAME/grad_norm`` (before clipping) and ``NAME/skipped`` (1 when skipped).
  """

  def __init__(self, optimizers: Mapping[str, optax.GradientTransformationExtraArgs],
               ema_decays: Mapping[str, float]):
    self.optimizers = dict(optimizers)
    self.ema_decays = dict(ema_decays)

  def __call__(self, state: TrainState, name: str, grads: Any) -> tuple[TrainState, Metrics]:
    if name not in self.optimizers:
      raise KeyError(f"update(state, {name!r}, grads): no network {name!r}; "
                     f"the task's networks are {', '.join(self.optimizers)}")
    updates, opt_state = self.optimizers[name].update(
        grads, state.opt_state[name], state.params[name], step=state.step)
    params = optax.apply_updates(state.params[name], updates)
    ema = state.ema_params
    if name in self.ema_decays:  # ticks on applied updates only: a skipped one changes nothing
      d, applied = self.ema_decays[name], opt_state.skipped == 0
      ema = {**ema, name: jax.tree.map(
          lambda e, p: jnp.where(applied, (d * e + (1.0 - d) * p).astype(e.dtype), e),
          ema[name], params)}
    new_state = state.replace(params={**state.params, name: params},
                              opt_state={**state.opt_state, name: opt_state}, ema_params=ema)
    return new_state, {f"{name}/grad_norm": opt_state.grad_norm,
                       f"{name}/skipped": opt_state.skipped.astype(jnp.float32)}


def step_rng(state: TrainState) -> jax.Array:
  """The key for the current step: ``fold_in(state.rng, state.step)``."""
  return jax.random.fold_in(state.rng, state.step)


def make_train_step(task: Task, update: NetworkUpdate
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """The (unjitted) ``train_step(state, batch) -> (state, metrics)`` the loop jits.

  It calls ``task.train_step`` with this step's key and ``update``, then advances the step by
  one, whatever the task did: the schedule, the RNG stream and the data position follow it.
  """
  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    new_state, metrics = task.train_step(state, batch, step_rng(state), update)
    return new_state.replace(step=state.step + 1), metrics
  return train_step


def weighted_sums(metrics: Mapping[str, jax.Array], batch: Batch
                  ) -> tuple[dict[str, jax.Array], jax.Array]:
  """Per-batch sums for exact means: ``({name: sum over real rows}, real row count)``.

  A [B] metric is per example: rows whose ``batch["mask"]`` is 0 are left out. A scalar is taken
  as the mean over the batch's real rows and weighted by their count.

  Raises:
    ValueError: for a metric that is neither a scalar nor [B].
  """
  rows = jax.tree.leaves(batch)[0].shape[0]
  mask = jnp.asarray(batch["mask"], jnp.float32) if "mask" in batch else jnp.ones((rows,))
  count = jnp.sum(mask)
  sums = {}
  for k, v in metrics.items():
    v = jnp.asarray(v, jnp.float32)
    if v.ndim == 0:
      sums[k] = v * count
    elif v.shape == (rows,):
      sums[k] = jnp.sum(v * mask)
    else:
      raise ValueError(f"eval metric {k!r} has shape {v.shape}; an eval metric is a scalar (the "
                       f"batch's mean) or one value per example, shape ({rows},)")
  return sums, count


def make_eval_step(task: Task) -> Callable[..., tuple[dict[str, jax.Array], jax.Array]]:
  """``eval_step(params, model_state, batch, rng) -> (sums, count)`` (unjitted)."""
  def eval_step(params, model_state, batch, rng):
    return weighted_sums(task.eval_fn(task.task_params(params), model_state, batch, rng), batch)
  return eval_step
