r"""Neural Collage codec: distil a model's encoder into a shallower one for the same decoder.

    python -m experiments.main --config experiments/configs/distill_codec_encoder.py:quick \
        --workdir /tmp/distill_quick
    python -m experiments.main --config experiments/configs/distill_codec_encoder.py:full \
        --workdir runs/r4_ctx8_d1 --config.depth=1

Variants: ``quick`` (a smoke run on the embedded photographs, about a minute on a laptop CPU;
those photographs are the codec's held-out test images, so its student is for trying the
recipe, not for measuring), ``full`` (the recipe of ``benchmarks/neural_codec.md``: 6000
steps at batch 128 on the shared photos and aerials). The student (the teacher with
``depth`` residual blocks, its encoder trained to predict the teacher's code,
``experiments/tasks/distill_codec_encoder.py``) lands in ``WORKDIR/artifacts/model`` in half
precision and is used by ``collage-codec compress --codec neural --model``. A Kodak folder
is refused: it is the test set.
"""

import ml_collections

from collage.train.config import training_defaults, variant

VARIANTS = ("quick", "full")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The distillation config; ``arg`` is one of VARIANTS (default "quick")."""
  arg = variant(arg, VARIANTS, "distill_codec_encoder")
  c = training_defaults()
  c.task = "distill_codec_encoder"      # experiments/tasks/distill_codec_encoder.py
  c.teacher = "collage/assets/neural_variable/r4_ctx8"  # exported variable-rate model whose code the student learns
  c.depth = 1                           # the student's residual blocks (fewer than the teacher's)
  c.batch_size = 128                    # global batch of crops (the teacher's tile side)
  c.total_steps = 6000                  # optimizer steps
  c.log_every = 500                     # steps between logged metrics
  c.eval_every = 1000                   # steps between evaluations + student export
  c.eval_batches = 4                    # eval batches (eval crops are central crops)
  c.checkpoint_every = 1000             # steps between checkpoints
  c.optimizer.name = "adamw"            # AdamW on the squared difference to the teacher's code
  c.optimizer.b1 = 0.0                  # no first moment: the recipe measured in benchmarks/neural_codec.md
  c.optimizer.weight_decay = 1e-4       # decoupled weight decay (times the learning rate), as measured there
  c.optimizer.learning_rate = 3e-4      # peak learning rate
  c.optimizer.warmup_steps = 0          # no warmup: the student starts as a working encoder
  c.optimizer.schedule = "cosine"       # cosine decay to 0 at total_steps (the measured recipe stopped at 5 % of the peak)
  c.optimizer.grad_clip_norm = 1.0      # global-norm clipping

  c.data = ml_collections.ConfigDict()
  c.data.source = "folder:../shared/data/photos,folder:../shared/data/aerials"  # train images: comma-separated embedded | folder:PATH | tfds:NAME (never Kodak)
  c.data.eval_source = ""               # eval images, comma-separated ("" = the eval split of data.source)
  c.data.augment = False                # random flips / rotations of the train crops

  if arg == "quick":
    c.data.source = "embedded"          # the photographs every clone has
    c.batch_size = 16
    c.total_steps = 300
    c.log_every = 50
    c.eval_every = 300
    c.checkpoint_every = 300
    c.eval_batches = 1
  return c
