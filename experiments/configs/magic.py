r"""MAGIC: set-transformer GAN collages of memory templates (Jetchev et al. 2019).

    python -m experiments.main --config experiments/configs/magic.py:guided_quick \
        --workdir runs/magic_gq
    python -m experiments.main --config experiments/configs/magic.py:guided_quick \
        --workdir runs/magic_gq --mode sample --config.sample.content=astronaut \
        --config.sample.templates=../shared/data/aerials --config.sample.k=10 \
        --config.sample.height=1024 --config.sample.width=1024 --config.sample.seed=0
    python -m experiments.main --config experiments/configs/magic.py:unguided_quick \
        --workdir runs/magic_uq

Variants: ``guided_quick`` (a recognisable guided collage of the astronaut from the embedded
photographs on a 2-core CPU in about 15 minutes), ``guided`` (the paper's settings: K = 50,
256 px crops, ST-U-Net depth 5, discriminator depth 6, batch 6), ``unguided_quick`` and
``unguided`` (sets of digits whose collage should be a digit: 2..8 per set in the quick one;
2..12, discriminator depth 7 and batch 12 in the paper-sized one). Templates:
``--config.data.templates=folder:PATH`` (e.g. ``folder:../shared/data/aerials``, a stand-in
for the paper's satellite crops); content: ``--config.data.content=PATH`` or an embedded
photograph's name.
"""

import ml_collections

from collage.train.config import add_digit_evals, compose, sample_defaults, training_defaults

VARIANTS = ("guided_quick", "guided", "unguided_quick", "unguided")  # the named ones
# A variant joins one word per axis (a left-out axis takes its first word): guided by a content
# image or not x the size ("full": the paper's settings; "quick": minutes on a CPU).
AXES = {"mode": ("guided", "unguided"), "size": ("full", "quick")}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The MAGIC config; ``arg`` is a variant of AXES words (default "guided_quick")."""
  words = compose(arg or VARIANTS[0], AXES, "magic", named=VARIANTS)
  guided = (words["mode"] or "guided") == "guided"
  quick = words["size"] == "quick"
  c = training_defaults(networks=("generator", "discriminator"))
  c.task = "magic"                       # experiments/tasks/magic.py
  c.total_steps = 20000                  # train steps (each: discriminator, then generator)
  c.batch_size = 6 if guided else 12     # global batch of sets
  c.microbatches = 2 if guided else 1    # generator passes per step over batch slices (less memory)
  c.log_every = 50                       # steps between logged metrics
  c.eval_every = 2000                    # steps between evaluations and artifacts
  c.eval_batches = 4                     # eval batches (data.eval_examples sets in all)
  c.checkpoint_every = 2000              # steps between checkpoints
  c.artifact_poster = 512 if guided else 0  # side of the poster rendered at the end (0: none)
  for name in ("generator", "discriminator"):
    c.optimizers[name].name = "adam"             # Adam, as GANs usually are
    c.optimizers[name].learning_rate = 2e-4      # peak learning rate
    c.optimizers[name].b1 = 0.5                  # GAN-style first moment decay
    c.optimizers[name].b2 = 0.999                # second moment decay
  c.optimizers.generator.ema_decay = 0.999       # EMA of the generator (used for sampling)

  c.model = ml_collections.ConfigDict()
  c.model.guided = guided                # content patch I_c given to every set element
  c.model.width = 48                     # ST-U-Net channels at full resolution (doubling per level)
  c.model.depth = 5                      # ST-U-Net resolution levels
  c.model.blocks = 1                     # conv blocks per level, down and up
  c.model.heads = 4                      # attention heads of the set layers
  c.model.inducing = 16 if guided else 0 # ISAB inducing points for large K (0: SAB)
  c.model.warp = "none"                  # per-template warp: none | affine | flow
  c.model.max_flow = 4.0                 # flow warp: largest displacement (pixels)
  c.model.refine_width = 32              # refinement U-Net channels at full resolution
  c.model.refine_depth = 3               # refinement U-Net levels (0: none, I = I_M)
  c.model.disc_width = 128               # discriminator channels of the first layer
  c.model.disc_depth = 6 if guided else 7  # discriminator stride-2 layers
  c.model.disc_max_width = 512           # discriminator channel cap
  c.model.dtype = "bfloat16"             # compute dtype: float32 | bfloat16
  c.model.param_dtype = "float32"        # parameters, optimizer state, EMA and checkpoints
  c.model.remat = "blocks"               # recomputation: none | blocks | a checkpoint policy
  c.model.set_chunk = 4096               # pixels of every example per set-layer chunk (0: all at once)

  c.data = ml_collections.ConfigDict()
  c.data.templates = "embedded" if guided else "digits"  # template images: embedded | digits | folder:PATH | tfds:NAME
  c.data.content = "astronaut"           # guided: content image, an embedded name or a file
  c.data.content_size = 1024             # guided: content resized to this longer side (0: as is)
  c.data.crop = 256 if guided else 32    # crop side of templates, content and real images
  c.data.k_min = 50 if guided else 2     # smallest set size (drawn per example)
  c.data.k_max = 50 if guided else 12    # largest set size
  c.data.eval_examples = 16              # held-out sets of the evaluation

  c.loss = ml_collections.ConfigDict()
  c.loss.adversarial = 1.0               # lambda of the GAN loss
  c.loss.content = 10.0 if guided else 0.0  # lambda of the content loss (guided)
  c.loss.content_factor = 16             # content low-pass: box-average factor (downsampling)
  c.loss.entropy = 0.05                  # lambda_E, entropy of A
  c.loss.tv = 0.05                       # lambda_TV, total variation of A
  c.loss.largest = 0.1 if guided else 0.5  # lambda_M, area share of the largest template

  c.evals.grid = ml_collections.ConfigDict()
  c.evals.grid.type = "samples"          # artifacts/grid_STEP.png: collages of held-out sets
  c.evals.grid.num = 8                   # samples in the grid
  c.evals.grid.seed = 0                  # their seed

  c.sample = sample_defaults(num=16)     # --mode sample: collages of the training crop size
  c.sample.batch_size = 2 if guided else 8  # samples per jitted call (guided: 50 x 256 px sets)
  c.sample.k = 50 if guided else 12     # set size K at inference (may differ from training)
  c.sample.pool = 64                     # template crops the samples' sets are drawn from
  c.sample.content = ""                  # guided: content image ("" = data.content)
  c.sample.templates = ""                # template folder or source ("" = data.templates)
  c.sample.height = 0                    # poster height (0: the content's; unguided: no poster)
  c.sample.width = 0                     # poster width (0: the content's)
  c.sample.tile = 256                    # poster tile interior side (0: the whole canvas at once)
  c.sample.window = -1                   # statistics window side (-1: data.crop, 0: whole canvas)
  c.sample.halo = -1                     # tile context pixels (-1: exact, the receptive field)
  c.sample.colour_seed = 0               # seed of the template colours in the A pictures

  if quick:
    c.total_steps = 2000
    c.log_every = 25
    c.eval_every = 500
    c.checkpoint_every = 500
    c.batch_size = 4 if guided else 8
    c.microbatches = 1
    c.optimizers.generator.learning_rate = 1e-3
    c.optimizers.discriminator.learning_rate = 5e-4
    c.optimizers.generator.ema_decay = 0.99
    c.model.width = 16
    c.model.depth = 3
    c.model.inducing = 0
    c.model.refine_width = 16
    c.model.refine_depth = 2
    c.model.disc_width = 32
    c.model.disc_depth = 3
    c.model.disc_max_width = 128
    c.model.dtype = "float32"
    c.model.remat = "none"
    c.model.set_chunk = 0
    c.data.crop = 32
    c.data.content_size = 512
    c.loss.content_factor = 4
    if guided:
      c.data.k_min = c.data.k_max = 8
    else:
      c.total_steps = 1500
      c.batch_size = 4
      c.data.k_max = 8
    c.sample.k = c.data.k_max
    c.sample.batch_size = 8
    c.sample.pool = 32
    c.artifact_poster = 256 if guided else 0
  if not guided:                         # collages of 32 x 32 digit crops: scored as digits
    add_digit_evals(c)                   # digits_fid / digits_kid / digits_prec_recall: --mode eval
  return c
