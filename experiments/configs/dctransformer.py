r"""DCTransformer (Nash et al., ICML 2021): generate images as sparse JPEG coefficients.

    python -m experiments.main --config experiments/configs/dctransformer.py:digits_quick \
        --workdir runs/dct_digits
    python -m experiments.main --config experiments/configs/dctransformer.py:digits_quick \
        --workdir runs/dct_digits --mode sample --config.sample.num=16 \
        --config.sample.temperature=0.9 --config.sample.top_p=0.95
    python -m experiments.main --config experiments/configs/dctransformer.py:photos64 \
        --workdir runs/dct_photos64 [--config.data.source=folder:../shared/data/kodak]
    python -m experiments.main --config experiments/configs/dctransformer.py:upsample \
        --workdir runs/dct_upsample --mode sample --config.sample.input_image=photo.png
    python -m experiments.main --config experiments/configs/dctransformer.py:colorize \
        --workdir runs/dct_colorize --mode sample --config.sample.input_image=photo.png

Variants: ``digits_quick`` (the embedded digits, 32x32 gray, quality 50: a clearly learning
model in about 10 minutes on a 2-core CPU), ``photos64`` (64x64 colour crops, 4:2:0, of the
embedded photographs or any ``folder:PATH``), ``upsample`` and ``colorize`` (photos64 trained
in the order whose prefix is the conditioning: the DC of every block / the luma), and the
paper-sized ``imagenet`` and ``lsun`` (256x256, tfds datasets a user has prepared; unrun here;
bfloat16 compute by default, ``--config.model.dtype=float32`` for full precision). A variant
joins one word per axis of ``AXES`` (data x conditioning x size), so any combination is one
argument: ``imagenet_upsample`` (the paper's upsampler), ``digits_upsample``, ``photos64_full``.
"""

import ml_collections

from collage.train.config import add_digit_evals, compose, sample_defaults, training_defaults

VARIANTS = ("digits_quick", "photos64", "upsample", "colorize", "imagenet", "lsun")  # the named ones
# A variant joins one word per axis: the data x the conditioning x the size ("quick": minutes on
# a CPU, the default for digits and photos64; "full": the paper's model, the default for
# imagenet and lsun). A left-out data is digits, a left-out conditioning none.
AXES = {"data": ("digits", "photos64", "imagenet", "lsun"),
        "condition": ("none", "upsample", "colorize"),
        "size": ("quick", "full")}
ALIASES = {"upsample": "photos64_upsample", "colorize": "photos64_colorize"}  # names users type


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The DCTransformer config; ``arg`` is a variant of AXES words (default "digits_quick")."""
  words = compose(arg or VARIANTS[0], AXES, "dctransformer", ALIASES, VARIANTS)
  data, condition = words["data"] or "digits", words["condition"] or "none"
  size = words["size"] or ("full" if data in ("imagenet", "lsun") else "quick")
  if condition == "colorize" and data == "digits":
    raise ValueError(f"dctransformer variant {arg!r}: colorize needs colour data (photos64, "
                     "imagenet or lsun), the digits are gray")
  c = training_defaults()
  c.task = "dctransformer"              # experiments/tasks/dctransformer.py
  c.condition = "none"                  # none | upsample (prefix: DC of every block) | colorize (prefix: luma)
  c.batch_size = 16                     # global batch of sequences
  c.total_steps = 2000                  # optimizer steps
  c.log_every = 50                      # steps between logged metrics
  c.eval_every = 1000                   # steps between evaluations and sample artifacts
  c.eval_batches = 13                   # eval batches (whole-sequence NLL, chunk by chunk): all 200
  c.checkpoint_every = 1000             # steps between checkpoints
  c.artifact_samples = 8                # samples drawn into artifacts/samples_STEP at each eval (0: none)
  c.optimizer.name = "adamw"            # AdamW
  c.optimizer.learning_rate = 1e-3      # peak learning rate
  c.optimizer.warmup_steps = 100        # linear warmup
  c.optimizer.schedule = "cosine"       # cosine decay to 0 after warmup
  c.optimizer.weight_decay = 0.01       # decoupled weight decay
  c.optimizer.grad_clip_norm = 1.0      # global-norm clipping

  c.data = ml_collections.ConfigDict()
  c.data.source = "digits"              # digits | embedded | folder:PATH | tfds:NAME[:SPLIT] | jpegs:PATH (JPEG files as coefficients)
  c.data.channels = 1                   # 1: gray (Y only), 3: colour (YCbCr 4:2:0)
  c.data.size = 32                      # image side: smaller images are zero-padded, larger cropped
  c.data.quality = 50                   # IJG JPEG quality 1..100 of the quantization tables
  c.data.block = 8                      # DCT block side: 8 (JPEG), 16 or 32 (the paper's large images)
  c.data.transform = "libjpeg"          # libjpeg (coefficients libjpeg stores; block 8) | jax (in-JAX transform)
  c.data.flip = False                   # random horizontal flips of train images
  c.data.eval_images = 200              # eval images (central crops of the eval split)

  c.model = ml_collections.ConfigDict()
  c.model.order = "interleaved"         # channel order: interleaved (DC first) | luma_first (colorization)
  c.model.max_len = 384                 # sequence capacity L (non-zeros + end-of-sequence); a multiple of chunk
  c.model.truncate = False              # keep the first max_len non-zeros of longer images (else an error)
  c.model.max_value = 128               # value vocabulary -V..V
  c.model.clip_values = False           # clip |values| > max_value (else an error)
  c.model.chunk = 64                    # entries per training chunk T
  c.model.dim = 64                      # width of every layer
  c.model.heads = 4                     # attention heads
  c.model.mlp_ratio = 4                 # MLP expansion
  c.model.encoder_layers = 2            # layers of the partial-image encoder
  c.model.decoder_layers = 2            # layers of each of the channel / position / value decoders
  c.model.dtype = "float32"             # compute dtype: float32 | bfloat16 (matmuls, attention, residual stream)
  c.model.param_dtype = "float32"       # float32: parameters, optimizer state, EMA and checkpoints stay float32
  c.model.remat = "none"                # recomputation: none | blocks (each transformer layer) | a jax.checkpoint_policies name

  c.sample = sample_defaults(num=16)    # --mode sample: 16 samples
  c.sample.batch_size = 16              # samples per jitted call
  c.sample.temperature = 1.0            # softmax temperature (0: greedy)
  c.sample.top_p = 1.0                  # nucleus sampling mass (1: off)
  c.sample.use_cache = True             # key/value cache (False: recompute the chunk per element)
  c.sample.input_image = ""             # upsample / colorize: the image whose prefix is kept ("" : first eval image)

  c.condition = condition
  if condition == "colorize":
    c.model.order = "luma_first"
  if data == "digits":
    if size == "quick":
      add_digit_evals(c)                 # digits_fid / digits_kid / digits_prec_recall: --mode eval
  else:                                  # colour, 4:2:0; 64x64 crops: a 4x4 grid of 384 channels
    c.data.source = "embedded"
    c.data.channels = 3
    c.data.size = 64
    c.data.flip = True
    c.data.eval_images = 64
    c.total_steps = 3000                 # optimizer steps
    c.eval_batches = 4
    c.artifact_samples = 4
    c.model.max_len = 1536
    c.model.chunk = 128
    c.model.dim = 128
    c.model.truncate = True
    c.model.clip_values = True
  if data in ("imagenet", "lsun"):       # the paper's 256x256 images: long sequences in chunks of 896
    c.data.source = "tfds:imagenet2012" if data == "imagenet" else "tfds:lsun/bedroom"
    c.data.size = 256
    c.data.quality = 75
    c.data.eval_images = 1000
    c.model.max_len = 8064
    c.model.chunk = 896
    c.model.max_value = 255
  if size == "full":                     # the paper's model and schedule (Nash et al. 2021, Sec. 4)
    c.batch_size = 64
    c.total_steps = 500_000
    c.eval_every = 10_000
    c.checkpoint_every = 5_000
    c.model.dim = 512
    c.model.heads = 8
    c.model.encoder_layers = 6
    c.model.decoder_layers = 6
    c.optimizer.learning_rate = 3e-4
    c.optimizer.warmup_steps = 5000
    c.model.dtype = "bfloat16"          # bfloat16 compute (softmaxes, likelihoods, losses: float32)
    c.model.remat = "none"              # batch 8 per device fits 80 GB without recomputation (benchmarks/dctransformer.md)
  return c
