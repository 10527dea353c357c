"""Field names every training config shares, so any run can be re-paced from the command line.

A config file starts from :func:`training_defaults` and sets what its experiment needs:

    config = training_defaults()
    config.task = "fractalize"
    config.total_steps = 500
"""

import ml_collections


def training_defaults() -> ml_collections.ConfigDict:
  """The runtime's fields, with defaults. Every field is documented on its line."""
  c = ml_collections.ConfigDict()
  c.task = ""                    # module name in experiments/tasks/ that runs this config
  c.seed = 0                     # seeds parameters, data order/augmentation and step RNG
  c.total_steps = 1000           # optimizer steps to train for
  c.batch_size = 8               # global batch size, split over all devices and processes
  c.log_every = 50               # steps between logged metrics / progress lines
  c.eval_every = 500             # steps between evaluations and artifacts (0: only at the end)
  c.eval_batches = 4             # batches per evaluation
  c.checkpoint_every = 500       # steps between checkpoints (also saved at the end)
  c.keep_checkpoints = 3         # how many recent checkpoints to keep
  c.max_steps_ahead = 4          # the host dispatches at most this many steps ahead of the devices

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adamw"           # optax optimizer: adam | adamw | sgd | lamb
  c.optimizer.learning_rate = 1e-3     # peak learning rate
  c.optimizer.warmup_steps = 0         # linear warmup steps
  c.optimizer.schedule = "constant"    # after warmup: constant | cosine
  c.optimizer.weight_decay = 0.0       # decoupled weight decay (adamw, lamb)
  c.optimizer.b1 = 0.9                 # first moment decay (adam family)
  c.optimizer.b2 = 0.999               # second moment decay (adam family)
  c.optimizer.grad_clip_norm = 1.0     # clip the global gradient norm to this (0: off)
  c.optimizer.skip_threshold = 0.0     # skip updates whose gradient norm exceeds this (0: off); non-finite gradients are always skipped
  c.ema_decay = 0.0                    # EMA of parameters (0: off), e.g. 0.999
  return c


def variant(arg: str | None, variants: tuple[str, ...], experiment: str) -> str:
  """The config variant named by ``arg`` (the first of ``variants`` when empty).

  Raises:
    ValueError: naming the experiment and listing the valid variants.
  """
  arg = arg or variants[0]
  if arg not in variants:
    raise ValueError(f"unknown {experiment} variant {arg!r}; valid: {', '.join(variants)}")
  return arg
