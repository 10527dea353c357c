r"""VDVAE (Child 2021) and Collage-VDVAE (Poli et al. 2022): very deep VAEs on 8-bit images.

    python -m experiments.main --config experiments/configs/vdvae.py:mnist_quick \
        --workdir runs/vdvae_mnist_quick
    python -m experiments.main --config experiments/configs/vdvae.py:collage_mnist_quick \
        --workdir runs/collage_vdvae_mnist_quick
    python -m experiments.main --config experiments/configs/vdvae.py:collage_mnist_quick \
        --workdir runs/collage_vdvae_mnist_quick --mode sample \
        --config.sample.num=16 --config.sample.temperature=0.85 --config.sample.scale=4
    python -m experiments.main --config experiments/configs/vdvae.py:cifar10 \
        --workdir runs/vdvae_cifar10 --config.data.source=tfds:cifar10

Variants: ``mnist_quick`` / ``collage_mnist_quick`` (about 10 minutes on a 2-core CPU),
``mnist`` / ``collage_mnist`` (about an hour there), on the embedded digits (28x28, 8-bit grey,
not binarized; the fixed 4,500 / 500 split of ``collage.data.digits``); the paper-sized
``cifar10`` (39M parameters), ``imagenet32`` (119M), ``imagenet64`` (125M), ``ffhq256`` (115M)
with openai/vdvae's ``hps.py`` hyperparameters, read through tfds, computing in bfloat16 (the
Collage-VDVAE twin of each: ``collage_cifar10`` ...); ``tiny`` / ``collage_tiny`` (seconds: for
tests). A variant joins one word per axis of ``AXES`` (head x data x size), so any
combination is one argument: ``cifar10_quick`` is the quick model on CIFAR-10 (32x32 RGB),
``collage_imagenet64_tiny`` a seconds-long Collage-VDVAE on ImageNet 64x64. The digit twins
are matched in parameter count (within 0.5%): the collage twin has the collage head (2x2 range
blocks), the pixel twin the 1x1-conv head and one more 28x28 decoder block, which costs what
the collage head costs. The loss is the negative ELBO
in nats per dimension; ``eval/bpd`` is its exact mean over the eval split in bits per dimension
(EMA parameters). ``--mode sample`` draws from the prior at ``sample.temperature`` and, for
Collage-VDVAE, decodes at ``sample.scale`` times the training resolution.
"""

import ml_collections

from collage.train.config import (add_digit_evals, compose, sample_defaults, tiny_schedule,
                                  training_defaults)

VARIANTS = ("mnist_quick", "mnist", "collage_mnist_quick", "collage_mnist", "cifar10",
            "imagenet32", "imagenet64", "ffhq256", "tiny", "collage_tiny")  # the named ones
# A variant joins one word per axis (any order; a left-out axis takes its first word):
# the model's head x the data x the size ("full": the data's own recipe, the paper's
# hyperparameters for the paper datasets; "quick": minutes on a CPU; "tiny": seconds, for tests).
AXES = {"head": ("pixels", "collage"),
        "data": ("mnist", "cifar10", "imagenet32", "imagenet64", "ffhq256"),
        "size": ("full", "quick", "tiny")}

# openai/vdvae hps.py: (image size, width, encoder, decoder, lr, batch, ema, grad clip, skip).
_PAPER = {
    "cifar10": (32, 384, "32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3",
                "1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21", 2e-4, 16, 0.9999, 200.0, 400.0),
    "imagenet32": (32, 512, "32x15,32d2,16x9,16d2,8x8,8d2,4x6,4d4,1x6",
                   "1x2,4m1,4x4,8m4,8x9,16m8,16x19,32m16,32x40", 1.5e-4, 8, 0.999, 200.0,
                   300.0),
    "imagenet64": (64, 512, "64x11,64d2,32x20,32d2,16x9,16d2,8x8,8d2,4x7,4d4,1x5",
                   "1x2,4m1,4x3,8m4,8x7,16m8,16x15,32m16,32x31,64m32,64x12", 1.5e-4, 4, 0.999,
                   220.0, 380.0),
    "ffhq256": (256, 512, "256x3,256d2,128x8,128d2,64x12,64d2,32x17,32d2,16x7,16d2,8x5,8d2,"
                "4x5,4d4,1x4", "1x2,4m1,4x3,8m4,8x4,16m8,16x9,32m16,32x21,64m32,64x13,128m64,"
                "128x7,256m128", 1.5e-4, 1, 0.999, 130.0, 180.0),
}
# Where each paper dataset is read from (FFHQ has no tfds builder: a folder of 256x256 PNGs).
_SOURCES = {"cifar10": "tfds:cifar10", "imagenet32": "tfds:imagenet_resized/32x32",
            "imagenet64": "tfds:imagenet_resized/64x64", "ffhq256": "folder:data/ffhq256"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The VDVAE config; ``arg`` is a variant of AXES words (default "mnist_quick")."""
  words = compose(arg or VARIANTS[0], AXES, "vdvae", named=VARIANTS)
  head, data, size = (words[a] or AXES[a][0] for a in ("head", "data", "size"))
  c = training_defaults()
  c.task = "vdvae"                       # experiments/tasks/vdvae.py
  c.batch_size = 16                      # global batch of images
  c.total_steps = 1000                   # train steps
  c.log_every = 50                       # steps between logged metrics
  c.eval_every = 250                     # steps between evaluations (eval/bpd) and sample grids
  c.eval_batches = 1000                  # eval batches (more than the split: the whole split)
  c.checkpoint_every = 250               # steps between checkpoints
  c.optimizer.name = "adamw"             # AdamW, as in the paper
  c.optimizer.learning_rate = 1e-3       # peak learning rate
  c.optimizer.warmup_steps = 100         # linear warmup (openai/vdvae: 100 iterations)
  c.optimizer.schedule = "constant"      # constant after warmup (openai/vdvae)
  c.optimizer.weight_decay = 0.01        # decoupled weight decay (openai/vdvae: 0.01)
  c.optimizer.b1 = 0.9                   # Adam beta1 (paper: 0.9)
  c.optimizer.b2 = 0.9                   # Adam beta2 (paper: 0.9)
  c.optimizer.grad_clip_norm = 200.0     # clip the gradient norm (openai/vdvae: 200)
  c.optimizer.skip_threshold = 400.0     # skip updates of larger gradient norm (openai/vdvae: 400)
  c.optimizer.ema_decay = 0.99           # EMA of the parameters, used for eval and sampling

  c.data = ml_collections.ConfigDict()
  c.data.source = "digits"               # digits | folder:PATH | tfds:NAME[:SPLIT]
  c.data.eval_source = ""                # eval images ("" = the eval split of data.source)
  c.data.data_dir = ""                   # tfds data directory ("" = tfds's default)

  c.model = ml_collections.ConfigDict()
  c.model.image_size = 28                # training resolution S (digits: 28, not padded)
  c.model.channels = 1                   # 1 (grey) or 3 (RGB)
  c.model.width = 32                     # feature channels
  c.model.zdim = 8                       # latent channels per pixel of each decoder block
  c.model.enc_blocks = "28x1,28d2,14x2,14d2,7x2,7d7,1x1"  # encoder block string
  c.model.dec_blocks = "1x1,7m1,7x2,14m7,14x1,28m14"      # decoder block string
  c.model.bottleneck = 0.25              # block inner width / width
  c.model.num_mix = 5                    # logistic mixture components
  c.model.no_bias_above = 64             # learned decoder bias tensors up to this resolution
  c.model.head = "pixels"                # pixels (VDVAE) | collage (Collage-VDVAE)
  c.model.range_size = 4                 # collage: range block side (divides image_size)
  c.model.num_aux = 4                    # collage: learned auxiliary sources
  c.model.isometries = 4                 # collage: isometries of the whole-image domain (1..8)
  c.model.decode_steps = 4               # collage: decode iterations from 0
  c.model.s_max = 0.9                    # collage: contraction bound
  c.model.dtype = "float32"              # compute dtype of the blocks: float32 | bfloat16
  c.model.param_dtype = "float32"        # parameters, optimizer state, EMA, checkpoints: float32
  c.model.remat = "none"                 # backward recomputation: none | blocks | a policy name

  c.sample = sample_defaults(num=16)     # --mode sample: num, seed, batch_size
  c.sample.temperature = 1.0             # prior standard deviation multiplier
  c.sample.scale = 1                     # collage: decode at this multiple of image_size
  c.artifact_samples = 16                # prior samples in artifacts/samples_STEP.png (0: none)

  c.model.head = head
  if data != "mnist":
    c.data.source = _SOURCES[data]
    c.model.image_size = _PAPER[data][0]
    c.model.channels = 3
    c.model.range_size = 8
  if size == "full" and data == "mnist":
    c.batch_size = 32
    c.total_steps = 2000                 # about an hour of one CPU core (measured: 1 to 2.5 s a step);
                                         # the schedule is constant: --config.total_steps=N trains on
    c.eval_every = 500
    c.checkpoint_every = 500
    c.optimizer.learning_rate = 6e-4
    c.optimizer.ema_decay = 0.99         # 0.998 lagged: 5% of the initial weights left at step 1500
    c.model.width = 48
    c.model.zdim = 8
    c.model.num_mix = 10
    c.model.enc_blocks, c.model.dec_blocks = _blocks(c.model.image_size, 2, 3, 3, 2, 3, 3, 1)
  elif size == "quick":
    c.model.enc_blocks, c.model.dec_blocks = _blocks(c.model.image_size, 1, 2, 2, 1, 2, 1, 0)
  elif size == "tiny":
    tiny_schedule(c, batch_size=8)
    c.model.width = 8
    c.model.zdim = 2
    c.model.num_mix = 2
    c.model.enc_blocks, c.model.dec_blocks = _blocks(c.model.image_size, 1, 0, 0, 1, 0, 0, 0)
    c.sample.num = 4
    c.artifact_samples = 0
  else:                                  # the paper's recipe for a paper dataset
    _, width, enc, dec, lr, batch, ema, clip, skip = _PAPER[data]
    c.batch_size = batch * 8             # openai/vdvae's per-GPU n_batch x 8 devices: set yours
    c.total_steps = 1_000_000            # long: watch eval/bpd and stop when it plateaus
    c.log_every = 500
    c.eval_every = 10_000
    c.eval_batches = 100
    c.checkpoint_every = 5_000
    c.optimizer.learning_rate = lr
    c.optimizer.grad_clip_norm = clip
    c.optimizer.skip_threshold = skip
    c.optimizer.ema_decay = ema
    c.model.width = width
    c.model.zdim = 16
    c.model.num_mix = 10
    c.model.enc_blocks = enc
    c.model.dec_blocks = dec
    c.model.dtype = "bfloat16"           # bfloat16 convolutions; likelihood, KLs and loss float32
    c.model.remat = "none"               # fits 32 GB per GPU without (benchmarks/vdvae.md)
  if data == "mnist" and size in ("quick", "full"):  # the digit twins, matched in parameters
    add_digit_evals(c)                   # digits_fid / digits_kid / digits_prec_recall: --mode eval
    if head == "collage":
      c.model.range_size = 2             # 2x2 ranges: the candidates span every 2x2 pattern
      c.model.num_aux = 6 if size == "quick" else 4
    else:
      c.model.dec_blocks += f",{c.model.image_size}x1"  # costs what the collage head costs (0.4% / 0.02%)
  return c


def _blocks(s: int, top: int, mid: int, low: int, last: int, dec_low: int, dec_mid: int,
            dec_top: int) -> tuple[str, str]:
  """Encoder and decoder block strings of a small VDVAE at resolution ``s`` over three
  resolutions (s, s/2, s/4) and 1x1: ``top``/``mid``/``low``/``last`` residual blocks per
  encoder resolution, ``dec_low``/``dec_mid``/``dec_top`` per decoder resolution (one 1x1
  block first; 0 leaves a resolution with only its up-sampling block)."""
  h, q = s // 2, s // 4
  enc = [f"{s}x{top}", f"{s}d2", f"{h}x{mid}", f"{h}d2", f"{q}x{low}", f"{q}d{q}", f"1x{last}"]
  dec = ["1x1", f"{q}m1", f"{q}x{dec_low}", f"{h}m{q}", f"{h}x{dec_mid}", f"{s}m{h}",
         f"{s}x{dec_top}"]
  return (",".join(b for b in enc if not b.endswith("x0")),
          ",".join(b for b in dec if not b.endswith("x0")))
