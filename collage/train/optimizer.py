"""Each network's optimizer, built from its config block, with clipping and skipping inside it.

A single-network config has one block, ``config.optimizer``; a task with several networks has one
block per network, ``config.optimizers.NAME`` (see :func:`collage.train.config.training_defaults`).
:func:`make_optimizer` turns a block into an optax transformation whose state carries everything
the runtime needs about that network's updates:

    guarded = make_optimizer(block, total_steps)
    opt_state = guarded.init(params)
    updates, opt_state = guarded.update(grads, opt_state, params, step=step)
    opt_state.grad_norm, opt_state.skipped, opt_state.skipped_nonfinite, opt_state.skipped_large

The learning rate follows the run's global ``step`` (passed to ``update``), not a count of this
network's own updates, so the schedule stays aligned with the data and the RNG however often a
train step updates the network, and whether or not updates were skipped.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from collage.train.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd", "lamb")
SCHEDULES = ("constant", "cosine")


def learning_rate_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup to ``opt.learning_rate``, then constant or cosine decay to 0 at ``total_steps``."""
  if opt.schedule not in SCHEDULES:
    raise ConfigError(f"optimizer schedule={opt.schedule!r} is unknown; "
                      f"valid: {', '.join(SCHEDULES)}.")
  lr, warmup = opt.learning_rate, int(opt.warmup_steps)
  if opt.schedule == "constant":
    after = optax.constant_schedule(lr)
  else:
    after = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup))
  if warmup <= 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def direction(opt: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The optimizer named by ``opt.name`` without its learning rate (the update direction).

  ``optax.adam(lr)`` is ``chain(scale_by_adam(), scale_by_learning_rate(lr))``; this is the
  chain without the last link, which :func:`make_optimizer` applies from the global step.
  """
  if opt.name == "adam":
    return optax.scale_by_adam(b1=opt.b1, b2=opt.b2)
  if opt.name == "adamw":
    return optax.chain(optax.scale_by_adam(b1=opt.b1, b2=opt.b2),
                       optax.add_decayed_weights(opt.weight_decay))
  if opt.name == "sgd":
    momentum = opt.get("momentum", None)
    return optax.trace(decay=momentum) if momentum else optax.identity()
  if opt.name == "lamb":
    return optax.chain(optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=1e-6),
                       optax.add_decayed_weights(opt.weight_decay),
                       optax.scale_by_trust_ratio())
  raise ConfigError(f"optimizer name={opt.name!r} is unknown; valid: {', '.join(OPTIMIZERS)}.")


class GuardedState(NamedTuple):
  """One network's optimizer state.

  Attributes:
    inner: the state of :func:`direction` (e.g. Adam's moments).
    grad_norm: [] float32, global norm of the last gradient, before clipping.
    skipped: [] int32, 1 when the last update was skipped.
    skipped_nonfinite: [] int32, updates skipped so far because the gradient was NaN/inf.
    skipped_large: [] int32, updates skipped so far because the gradient norm exceeded
      ``skip_threshold``.
  """
  inner: Any
  grad_norm: jax.Array
  skipped: jax.Array
  skipped_nonfinite: jax.Array
  skipped_large: jax.Array


def make_optimizer(opt: ml_collections.ConfigDict,
                   total_steps: int) -> optax.GradientTransformationExtraArgs:
  """Clip, skip bad updates, take the optimizer's direction, scale by the scheduled rate.

  An update is skipped (zero update, inner state unchanged, a counter incremented) when the
  gradient's global norm is non-finite, or above ``opt.skip_threshold`` when that is > 0.
  Otherwise the gradient is clipped to global norm ``opt.grad_clip_norm`` (when > 0).

  Args:
    opt: one optimizer block (``config.optimizer`` or ``config.optimizers.NAME``).
    total_steps: the run's length, for the schedule.

  Returns:
    A transformation whose ``update(grads, state, params, *, step)`` needs the global step.
  """
  inner = direction(opt)
  schedule = learning_rate_schedule(opt, total_steps)
  clip, threshold = float(opt.grad_clip_norm), float(opt.skip_threshold)

  def init(params):
    zero = jnp.zeros((), jnp.int32)
    return GuardedState(inner.init(params), jnp.zeros((), jnp.float32), zero, zero, zero)

  def update(grads, state: GuardedState, params=None, *, step, **extra):
    del extra
    grad_norm = optax.tree.norm(grads).astype(jnp.float32)
    finite = jnp.isfinite(grad_norm)
    too_large = (jnp.logical_and(finite, grad_norm > threshold) if threshold > 0
                 else jnp.zeros((), bool))
    ok = jnp.logical_and(finite, jnp.logical_not(too_large))
    # Zero bad gradients so the (discarded) update computes nothing non-finite.
    grads = jax.tree.map(lambda g: jnp.where(ok, g, jnp.zeros_like(g)), grads)
    if clip > 0:
      scale = jnp.where(ok, jnp.minimum(1.0, clip / jnp.maximum(grad_norm, 1e-12)), 0.0)
      grads = jax.tree.map(lambda g: (g * scale).astype(g.dtype), grads)
    updates, new_inner = inner.update(grads, state.inner, params)
    lr = schedule(step)
    updates = jax.tree.map(lambda u: jnp.where(ok, u * -lr, jnp.zeros_like(u)).astype(u.dtype),
                           updates)
    new_inner = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new_inner, state.inner)
    return updates, GuardedState(
        inner=new_inner, grad_norm=grad_norm,
        skipped=jnp.logical_not(ok).astype(jnp.int32),
        skipped_nonfinite=state.skipped_nonfinite + jnp.logical_not(finite).astype(jnp.int32),
        skipped_large=state.skipped_large + too_large.astype(jnp.int32))

  return optax.GradientTransformationExtraArgs(init, update)


def network_blocks(config: ml_collections.ConfigDict,
                   networks: tuple[str, ...]) -> dict[str, ml_collections.ConfigDict]:
  """Each network's optimizer block: ``config.optimizers.NAME``, or ``config.optimizer`` for one.

  Raises:
    ConfigError: naming the networks and the blocks the config has, when they do not match.
  """
  blocks = config.get("optimizers", None)
  if blocks is not None:
    have = tuple(sorted(blocks.keys()))
    if have != tuple(sorted(networks)):
      raise ConfigError(
          f"config.optimizers has blocks for {', '.join(have) or 'no network'}, but the task "
          f"trains the networks {', '.join(networks)}; give one block per network "
          "(collage.train.config.training_defaults(networks=...)).")
    return {name: blocks[name] for name in networks}
  single = config.get("optimizer", None)
  if single is None or len(networks) != 1:
    raise ConfigError(
        f"the task trains the networks {', '.join(networks)}: its config needs "
        + ("config.optimizer" if len(networks) == 1 else
           "one block per network, config.optimizers.NAME")
        + " (collage.train.config.training_defaults(networks=...) builds them).")
  return {networks[0]: single}
