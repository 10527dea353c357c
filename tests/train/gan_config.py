r"""The tiny GAN of the runtime tests (tests/train/gan_task.py).

    python -m experiments.main --config tests/train/gan_config.py --workdir /tmp/gan
    python -m experiments.main --config tests/train/gan_config.py --workdir /tmp/gan --mode sample
"""

import ml_collections

from collage.train.config import sample_defaults, training_defaults


def get_config(arg=None) -> ml_collections.ConfigDict:
  del arg
  c = training_defaults(networks=("generator", "discriminator"))
  c.task = "tests.train.gan_task"      # full dotted path: a test task outside experiments/tasks/
  c.total_steps = 20                   # train steps (each: discriminator, then generator)
  c.batch_size = 16                    # global batch
  c.log_every = 5                      # steps between logged metrics
  c.eval_every = 0                     # evaluate at the end only
  c.eval_batches = 10                  # more than the eval set has: all 20 rows (3 batches)
  c.checkpoint_every = 10              # steps between checkpoints
  c.slow_data_s = 0.0                  # seconds of sleep per train batch (kill tests)
  for name in ("generator", "discriminator"):
    c.optimizers[name].name = "adamw"          # weight decay would show a frozen network moving
    c.optimizers[name].learning_rate = 2e-3    # peak learning rate
    c.optimizers[name].b1 = 0.5                # GAN-style Adam momentum
    c.optimizers[name].weight_decay = 1e-2     # decoupled weight decay
  c.optimizers.generator.ema_decay = 0.9       # EMA of the generator only
  c.evals.grid = ml_collections.ConfigDict()
  c.evals.grid.type = "samples"        # artifacts/grid_STEP.png
  c.evals.grid.num = 9                 # samples in the grid
  c.evals.grid.seed = 0                # their seed
  c.sample = sample_defaults(num=10)   # --mode sample: 10 samples (not a multiple of 8 devices)
  c.sample.temperature = 1.0           # scale of the latent z
  return c
