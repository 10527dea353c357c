"""Field names every training config shares, so any run can be re-paced from the command line.

A config file starts from :func:`training_defaults` and sets what its experiment needs:

    config = training_defaults()
    config.task = "fractalize"
    config.total_steps = 500
"""

import difflib

import ml_collections

from collage.train.errors import ConfigError


def optimizer_block() -> ml_collections.ConfigDict:
  """One network's optimizer block. Every field is documented on its line."""
  o = ml_collections.ConfigDict()
  o.name = "adamw"             # optax optimizer: adam | adamw | sgd | lamb
  o.learning_rate = 1e-3       # peak learning rate
  o.warmup_steps = 0           # linear warmup steps
  o.schedule = "constant"      # after warmup: constant | cosine (to 0 at total_steps)
  o.weight_decay = 0.0         # decoupled weight decay (adamw, lamb)
  o.b1 = 0.9                   # first moment decay (adam family)
  o.b2 = 0.999                 # second moment decay (adam family)
  o.grad_clip_norm = 1.0       # clip the global gradient norm to this (0: off)
  o.skip_threshold = 0.0       # skip updates whose gradient norm exceeds this (0: off); non-finite gradients are always skipped
  o.ema_decay = 0.0            # EMA of this network's parameters (0: off), e.g. 0.999
  return o


def training_defaults(networks: tuple[str, ...] | None = None) -> ml_collections.ConfigDict:
  """The runtime's fields, with defaults. Every field is documented on its line.

  Args:
    networks: the names of the task's networks when it has several (e.g. ``("generator",
      "discriminator")``): the config then has one block ``optimizers.NAME`` per network instead
      of the single ``optimizer`` block.
  """
  c = ml_collections.ConfigDict()
  c.task = ""                    # module name in experiments/tasks/ that runs this config
  c.seed = 0                     # seeds parameters, data order/augmentation and step RNG
  c.total_steps = 1000           # train steps (each may update several networks)
  c.batch_size = 8               # global batch size, split over all devices and processes
  c.log_every = 50               # steps between logged metrics / progress lines
  c.eval_every = 500             # steps between evaluations and artifacts (0: only at the end)
  c.eval_batches = 4             # batches per evaluation of the "loss" evaluators
  c.checkpoint_every = 500       # steps between checkpoints (also saved at the end)
  c.keep_checkpoints = 3         # how many recent checkpoints to keep
  c.checkpoint_step = -1         # --mode eval / sample: the checkpoint step to restore (-1: the latest)
  c.max_steps_ahead = 4          # the host dispatches at most this many steps ahead of the devices

  if networks:
    c.optimizers = ml_collections.ConfigDict()
    for name in networks:
      c.optimizers[name] = optimizer_block()  # this network's optimizer (fields as below)
  else:
    c.optimizer = optimizer_block()  # the one network's optimizer

  c.plan = plan_defaults()       # --mode plan: the devices a config is compiled and judged for

  c.evals = ml_collections.ConfigDict()  # evaluators by name (collage/evals/); each logs NAME/metric
  c.evals.eval = ml_collections.ConfigDict()
  c.evals.eval.type = "loss"     # the task's eval metrics, exact means over the eval split
  return c


def tiny_schedule(c: ml_collections.ConfigDict, batch_size: int) -> None:
  """The schedule of a ``tiny`` variant (seconds, for tests): 4 steps of ``batch_size``,
  logged every 2, checkpointed every 2, evaluated (2 batches) only at the end, no warmup."""
  c.batch_size = batch_size
  c.total_steps = 4
  c.log_every = 2
  c.eval_every = 0
  c.eval_batches = 2
  c.checkpoint_every = 2
  c.optimizer.warmup_steps = 0


def plan_defaults() -> ml_collections.ConfigDict:
  """``config.plan``: what ``--mode plan`` compiles for (:mod:`collage.train.plan`). Every field
  is documented on its line; a paper-sized config sets the paper's devices here."""
  p = ml_collections.ConfigDict()
  p.devices = 0                # devices of the mesh to compile for (0: every device here); the global batch is split over them
  p.device_memory_gb = 32.0    # memory of one device in GB (1e9 bytes), the verdict's capacity
  p.target = ""                # "" (this machine's devices, else fake CPU ones) | tpu:v5e-8 | tpu:v4-8 | tpu:TOPOLOGY (needs libtpu)
  p.mfu = 0.4                  # fraction of a device's dense peak the implied step times assume
  p.sample = True              # also compile the sample step, for tasks with a sampler
  return p


def sample_defaults(num: int = 16, seed: int = 0) -> ml_collections.ConfigDict:
  """``config.sample``: what ``--mode sample`` draws; a task adds its own options beside these."""
  s = ml_collections.ConfigDict()
  s.num = num                    # samples to draw
  s.seed = seed                  # sampling seed (samples do not depend on the device count)
  s.batch_size = 64              # samples per jitted call (rounded up to a multiple of the devices)
  s.name = ""                    # this draw's name: DIR/samples/STEP-NAME ("": DIR/samples/STEP); draws with other options need other names
  return s


DIGIT_EVALS = ("digits_fid", "digits_kid", "digits_prec_recall")  # collage/evals/digits.py


def add_digit_evals(c: ml_collections.ConfigDict, num_samples: int = 2000,
                    every: int = 0) -> None:
  """Adds the digit family (one shared draw of ``num_samples``; ``every = 0``: only in
  ``--mode eval``) to ``c.evals``, for configs whose samples are 28 x 28 digits (or 32 x 32
  padded ones, or a multiple of 28: collage decodes at a scale)."""
  for kind in DIGIT_EVALS:
    e = ml_collections.ConfigDict()
    e.type = kind                # logs KIND/... (fid | kid, kid_std | precision, recall)
    e.num_samples = num_samples  # samples of the shared draw
    e.seed = 0                   # the draw's seed
    e.batch_size = 250           # samples per sampler call and per feature batch
    e.every = every              # steps between runs in training (0: only --mode eval)
    e.reference = "train"        # digit split compared with: train | eval | all
    c.evals[kind] = e


def variant(arg: str | None, variants: tuple[str, ...], experiment: str) -> str:
  """The config variant named by ``arg`` (the first of ``variants`` when empty).

  Raises:
    ValueError: naming the experiment and listing the valid variants.
  """
  arg = arg or variants[0]
  if arg not in variants:
    close = difflib.get_close_matches(arg, variants, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown {experiment} variant {arg!r}{hint}; valid: {', '.join(variants)}")
  return arg


def compose(arg: str, axes: dict[str, tuple[str, ...]], experiment: str,
            aliases: dict[str, str] | None = None,
            named: tuple[str, ...] = ()) -> dict[str, str | None]:
  """A variant name read as one word per axis: ``"collage_mnist_quick"`` with the axes
  ``{"head": ("pixels", "collage"), "data": ("mnist", ...), "size": ("full", "quick", "tiny")}``
  is ``{"head": "collage", "data": "mnist", "size": "quick"}``.

  Words are joined by ``_`` in any order and every word names its axis (no word is on two
  axes); an axis the name leaves out is ``None`` (the config picks its default, which may
  depend on the other words). ``aliases`` maps a short name users type to its words
  (``{"upsample": "photos64_upsample"}``); ``named`` lists the variants an error names first.
  So a new combination is one argument, not a new block.

  Raises:
    ValueError: an unknown word (with the closest valid one) or two words for one axis, naming
      the experiment and listing every axis's words.
  """
  aliases = aliases or {}
  owner = {word: axis for axis, words in axes.items() for word in words}
  valid = "; ".join(f"{axis}: {' | '.join(words)}" for axis, words in axes.items())
  chosen: dict[str, str | None] = dict.fromkeys(axes)
  for word in aliases.get(arg, arg).split("_"):
    if word not in owner:
      close = difflib.get_close_matches(word, list(owner) + list(aliases), n=1, cutoff=0.6)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      listed = f"{', '.join(named)}, or " if named else ""
      raise ValueError(f"unknown {experiment} variant {arg!r}: {word!r} is no word of it{hint}; "
                       f"valid: {listed}one word per axis joined by '_' ({valid})")
    axis = owner[word]
    if chosen[axis] is not None:
      raise ValueError(f"{experiment} variant {arg!r} names two words of the axis {axis!r} "
                       f"({chosen[axis]!r} and {word!r}); choose one of {' | '.join(axes[axis])}")
    chosen[axis] = word
  return chosen


# Valid ranges of the runtime's numeric fields: (low, high, low inclusive, high inclusive);
# None is unbounded. Optimizer fields apply to every optimizer block.
_RANGES = {
    "total_steps": (1, None, True, True),
    "batch_size": (1, None, True, True),
    "log_every": (1, None, True, True),
    "eval_every": (0, None, True, True),
    "eval_batches": (0, None, True, True),
    "checkpoint_every": (0, None, True, True),
    "keep_checkpoints": (1, None, True, True),
    "max_steps_ahead": (1, None, True, True),
}
_PLAN_RANGES = {"devices": (0, None, True, True), "device_memory_gb": (0.0, None, False, True),
                "mfu": (0.0, 1.0, False, True)}
_OPTIMIZER_RANGES = {
    "learning_rate": (0.0, None, False, True),
    "warmup_steps": (0, None, True, True),
    "weight_decay": (0.0, None, True, True),
    "b1": (0.0, 1.0, True, False),
    "b2": (0.0, 1.0, True, False),
    "grad_clip_norm": (0.0, None, True, True),
    "skip_threshold": (0.0, None, True, True),
    "ema_decay": (0.0, 1.0, True, False),
}
# config.sample fields, the runtime's and the tasks' (checked where a config has them).
_SAMPLE_RANGES = {"num": (1, None, True, True), "batch_size": (1, None, True, True),
                  "seed": (0, 2 ** 32 - 1, True, True),
                  "temperature": (0.0, None, True, True),   # 0: greedy / the prior's mean
                  "top_p": (0.0, 1.0, False, True),
                  "scale": (1, None, True, True),
                  "k": (1, None, True, True), "pool": (1, None, True, True),
                  "height": (0, None, True, True), "width": (0, None, True, True),
                  "tile": (0, None, True, True), "window": (-1, None, True, True),
                  "halo": (-1, None, True, True)}


def _describe(low, high, low_in, high_in) -> str:
  if high is None:
    return f"{'>=' if low_in else '>'} {low}"
  return f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


def _check(name: str, value, bounds) -> None:
  low, high, low_in, high_in = bounds
  ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  if ok:
    ok = (value >= low if low_in else value > low) and (
        high is None or (value <= high if high_in else value < high))
  if not ok:
    raise ConfigError(f"config.{name}={value!r} is out of range: it must be "
                      f"{_describe(*bounds)}.")


def check_ranges(config: ml_collections.ConfigDict) -> None:
  """Checks the runtime's numeric fields that ``config`` has against their valid ranges.

  Raises:
    ConfigError: naming the first field out of range and its valid range.
  """
  for name, bounds in _RANGES.items():
    if name in config:
      _check(name, config[name], bounds)
  blocks = {"optimizer": config.optimizer} if "optimizer" in config else {}
  if "optimizers" in config:
    blocks.update({f"optimizers.{n}": b for n, b in config.optimizers.items()})
  for prefix, block in blocks.items():
    for name, bounds in _OPTIMIZER_RANGES.items():
      if name in block:
        _check(f"{prefix}.{name}", block[name], bounds)
  if "plan" in config:
    for name, bounds in _PLAN_RANGES.items():
      if name in config.plan:
        _check(f"plan.{name}", config.plan[name], bounds)
  if "sample" in config:
    for name, bounds in _SAMPLE_RANGES.items():
      if name in config.sample:
        _check(f"sample.{name}", config.sample[name], bounds)
