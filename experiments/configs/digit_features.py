r"""The digit feature network: a small CNN classifier whose features score digit samples.

    python -m experiments.main --config experiments/configs/digit_features.py \
        --workdir runs/digit_features
    python -m experiments.tasks.digit_features export --workdir runs/digit_features \
        --out collage/assets/digit_features/weights.npz

Variants: ``full`` (the recipe of the shipped weights, ``collage/assets/digit_features/``: about
5 minutes on one busy CPU core) and ``tiny`` (seconds: for tests). The network is
``collage.nn.digit_features.DigitClassifier``; it trains on the 4,500 "train" digits of
``collage.data.digits`` only, each drawn with a small random rotation, scaling and shift, and is
evaluated on the 500 held-out digits: ``eval/accuracy`` and ``eval/cross_entropy`` are exact
means over them (EMA parameters). The export writes the weight file the evaluators load.
"""

import ml_collections

from collage.train.config import tiny_schedule, training_defaults, variant

VARIANTS = ("full", "tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The digit feature network's config; ``arg`` is one of VARIANTS (default "full")."""
  arg = variant(arg, VARIANTS, "digit_features")
  c = training_defaults()
  c.task = "digit_features"              # experiments/tasks/digit_features.py
  c.batch_size = 64                      # global batch of digits
  c.total_steps = 2500                   # train steps (about 36 passes over the 4,500 digits)
  c.log_every = 100                      # steps between logged metrics
  c.eval_every = 500                     # steps between evaluations (eval/accuracy) and artifacts
  c.eval_batches = 1000                  # eval batches (more than the split: all 500 digits)
  c.checkpoint_every = 500               # steps between checkpoints
  c.optimizer.name = "adamw"             # AdamW
  c.optimizer.learning_rate = 2e-3       # peak learning rate
  c.optimizer.warmup_steps = 100         # linear warmup
  c.optimizer.schedule = "cosine"        # cosine decay to 0 at total_steps
  c.optimizer.weight_decay = 1e-4        # decoupled weight decay
  c.optimizer.grad_clip_norm = 1.0       # global-norm clipping
  c.optimizer.ema_decay = 0.995          # EMA of the parameters: evaluated and exported

  c.model = ml_collections.ConfigDict()
  c.model.width = 32                     # channels of the first two convolutions (the last three: 2x)
  c.model.feature_dim = 128              # size of the penultimate layer, the features

  c.dropout = 0.25                       # fraction of the features dropped before the logits in training
  c.augment = ml_collections.ConfigDict()
  c.augment.max_rotation = 12.0          # train digits rotate uniformly in +-this many degrees
  c.augment.max_scale = 0.1              # and scale by a uniform factor in 1 +- this
  c.augment.max_shift = 2.0              # and shift uniformly by up to this many pixels on each axis
  c.artifact_errors = 64                 # misclassified held-out digits shown in artifacts/errors_STEP.png (0: none)

  if arg == "tiny":
    tiny_schedule(c, batch_size=16)
    c.model.width = 4
    c.model.feature_dim = 8
    c.artifact_errors = 0
  return c
