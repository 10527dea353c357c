"""The optax optimizer and learning-rate schedule built from ``config.optimizer``.

Clipping and skipping are not part of the optax chain: :func:`collage.train.step.apply_gradients`
does them from one gradient-norm computation, so the skipped-update counters and the logged norm
agree.
"""

from __future__ import annotations

import ml_collections
import optax

from collage.train.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd", "lamb")
SCHEDULES = ("constant", "cosine")


def learning_rate_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup to ``opt.learning_rate``, then constant or cosine decay to 0 at ``total_steps``."""
  if opt.schedule not in SCHEDULES:
    raise ConfigError(f"config.optimizer.schedule={opt.schedule!r} is unknown; "
                      f"valid: {', '.join(SCHEDULES)}.")
  lr, warmup = opt.learning_rate, int(opt.warmup_steps)
  if opt.schedule == "constant":
    after = optax.constant_schedule(lr)
  else:
    after = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup))
  if warmup <= 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The optax transformation named by ``config.optimizer.name``.

  Args:
    config: a config built on :func:`collage.train.config.training_defaults`.

  Returns:
    ``optax.inject_hyperparams``-free transformation; the learning rate at a step is
    :func:`learning_rate_schedule` of that step.
  """
  opt = config.optimizer
  lr = learning_rate_schedule(opt, int(config.total_steps))
  if opt.name == "adam":
    return optax.adam(lr, b1=opt.b1, b2=opt.b2)
  if opt.name == "adamw":
    return optax.adamw(lr, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)
  if opt.name == "sgd":
    return optax.sgd(lr, momentum=opt.get("momentum", None))
  if opt.name == "lamb":
    return optax.lamb(lr, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)
  raise ConfigError(f"config.optimizer.name={opt.name!r} is unknown; "
                    f"valid: {', '.join(OPTIMIZERS)}.")
