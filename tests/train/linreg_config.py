r"""Tiny linear-regression config for the runtime tests.

    python -m experiments.main --config tests/train/linreg_config.py --workdir /tmp/linreg
"""

import ml_collections

from collage.train.config import training_defaults


def get_config(arg=None) -> ml_collections.ConfigDict:
  del arg
  c = training_defaults()
  c.task = "tests.train.linreg_task"  # full module path: the test task lives outside experiments/
  c.total_steps = 20                  # optimizer steps
  c.batch_size = 8                    # global batch
  c.log_every = 5                     # steps between logged metrics
  c.eval_every = 10                   # steps between evaluations
  c.eval_batches = 2                  # batches per evaluation
  c.checkpoint_every = 10             # steps between checkpoints
  c.keep_checkpoints = 2              # checkpoints kept
  c.optimizer.name = "adam"           # optax optimizer
  c.optimizer.learning_rate = 0.05    # constant learning rate
  c.optimizer.ema_decay = 0.9         # exercise the EMA path
  c.slow_data_s = 0.0                 # seconds of sleep per batch (lets a test kill a run mid-way)
  return c
