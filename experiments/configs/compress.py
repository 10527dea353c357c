r"""Neural Collage compression (Poli et al. 2022) with a learned entropy model (Ballé et al. 2018).

    python -m experiments.main --config experiments/configs/compress.py:quick \
        --workdir /tmp/compress_quick
    python -m experiments.main --config experiments/configs/compress.py:full \
        --workdir runs/compress_lam0.01 --config.lam=0.01 \
        --config.data.source=folder:../shared/data/aerials
    python -m experiments.main --config experiments/configs/compress.py:baseline \
        --workdir runs/compress_l2 --config.model.bitpack_bits=6

Variants: ``quick`` (a clearly learning model in minutes on a laptop CPU), ``full`` (the
shipped low-rate models' recipe: 8x8 luma ranges), ``fine`` (the shipped high-rate models'
recipe: 4x4 luma and 8x8 chroma ranges), ``variable`` (the shipped default: one variable-rate
model of the ``fine`` architecture for every quality, ``model.rate_lams``, with the context
entropy model, ``model.context_model``, started from its retired predecessor; recipes with
data: ``launch/device_train_codec.sh`` on a GPU, ``launch/train_variable_rate.sh`` on a CPU),
``baseline`` / ``baseline_quick`` (the paper's L2 magnitude regularizer with plain bit packing,
a smaller candidate set so its rate is comparable).
``lam`` sets the rate point: loss = bpp + lam * 255^2 * MSE. The exported model lands in
``WORKDIR/artifacts/model`` and is used by ``collage-codec compress --codec neural --model``.
"""

import ml_collections

from collage.train.config import training_defaults, variant

VARIANTS = ("quick", "full", "fine", "variable", "baseline", "baseline_quick")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The compression config; ``arg`` is one of VARIANTS (default "quick")."""
  arg = variant(arg, VARIANTS, "compress")
  c = training_defaults()
  c.task = "compress"                   # experiments/tasks/compress.py
  c.lam = 0.01                          # rate-distortion trade-off: loss = bpp + lam * 255^2 * MSE
  c.l2 = 0.0                            # baseline only: weight of mean(raw parameter^2)
  c.init_from = ""                      # exported model dir to start from (e.g. another lam's artifacts/model)
  c.batch_size = 32                     # global batch of crops
  c.total_steps = 3000                  # optimizer steps
  c.log_every = 100                     # steps between logged metrics
  c.eval_every = 1000                   # steps between evaluations + model export
  c.eval_batches = 4                    # eval batches (eval crops are central crops)
  c.checkpoint_every = 1000             # steps between checkpoints
  c.optimizer.name = "adam"             # Adam, as in the paper
  c.optimizer.learning_rate = 2e-3      # peak learning rate
  c.optimizer.warmup_steps = 100        # linear warmup
  c.optimizer.schedule = "cosine"       # cosine decay to 0 after warmup
  c.optimizer.grad_clip_norm = 1.0      # global-norm clipping

  c.data = ml_collections.ConfigDict()
  c.data.source = "embedded"            # embedded | folder:PATH | tfds:NAME (train crops)
  c.data.eval_source = ""               # eval images ("" = the eval split of data.source)
  c.data.crop = 32                      # crop side; must equal model.tile

  c.model = ml_collections.ConfigDict()
  c.model.tile = 32                     # tile side T the hypernetwork encodes
  c.model.luma_range = 8                # luma range block side (power of two dividing T)
  c.model.luma_domain = 16              # luma domain side (0: the whole tile)
  c.model.luma_stride = 16              # luma domain stride (0: = domain side)
  c.model.luma_isometries = "0,4"       # luma isometries (collage.ops.blocks numbering)
  c.model.luma_aux = 24                 # learned luma auxiliary patches
  c.model.chroma_range = 16             # chroma (Cb, Cr) range block side
  c.model.chroma_domain = 0             # chroma domain side (0: the whole tile)
  c.model.chroma_stride = 0             # chroma domain stride (0: = domain side)
  c.model.chroma_isometries = "0,4"     # chroma isometries
  c.model.chroma_aux = 8                # learned chroma auxiliary patches
  c.model.s_max = 0.8                   # contraction bound of the weights
  c.model.decode_steps = 12             # collage iterations of the decode (train and codec)
  c.model.width = 64                    # conv trunk channels of the hypernetwork
  c.model.depth = 2                     # residual blocks at the luma range grid
  c.model.hidden = 128                  # dense head width
  c.model.support = 127                 # quantized values are integers in [-support, support]
  c.model.coding = "entropy"            # entropy (learned prior) | bitpack (paper baseline)
  c.model.bitpack_bits = 6              # bits per value for bitpack
  c.model.rate_lams = ""                # variable rate: the lam of each level, increasing ("": fixed rate, lam above)
  c.model.context_model = False         # code weights with the context model (flags under decoded-neighbour contexts)
  c.model.dtype = "float32"             # compute dtype: float32 only (the codec must decode bit-exactly; see tasks/compress.py)
  c.model.param_dtype = "float32"       # float32: parameters, optimizer state, EMA and checkpoints stay float32
  c.model.remat = "none"                # recomputation: none only (compress.py:full's step fits 16 GB without it)

  if arg in ("quick", "baseline_quick"):
    c.total_steps = 5000                # ~15-19 steps/s on an idle 2-core CPU: about 5 minutes
    c.batch_size = 16
    c.log_every = 100
    c.eval_every = 2500
    c.checkpoint_every = 2500
  if arg == "full":
    c.total_steps = 20000
    c.eval_every = 5000
    c.checkpoint_every = 2000
  if arg in ("fine", "variable"):      # the shipped high-rate models: 4x4 luma / 8x8 chroma ranges
    c.total_steps = 12000
    c.eval_every = 4000
    c.checkpoint_every = 2000
    c.model.luma_range = 4              # 64 luma ranges per tile (8x8 grid)
    c.model.luma_domain = 8             # 16 domains 8x8 at stride 8, pooled to 4x4
    c.model.luma_stride = 8
    c.model.luma_aux = 16
    c.model.chroma_range = 8            # 16 chroma ranges per tile
    c.model.chroma_domain = 16          # 4 domains 16x16 at stride 16
    c.model.chroma_stride = 16
    c.model.chroma_aux = 8
  if arg == "variable":                # the shipped default r4_ctx8: quality 1..100 = level 0..7
    c.model.rate_lams = "0.0002,0.000426,0.000908,0.00193,0.00412,0.00877,0.0187,0.04"  # geometric
    c.model.context_model = True
    c.init_from = "collage/assets/neural_retired/r4_var8"  # its factorized-prior predecessor
    c.batch_size = 256                  # the H200 recipe (launch/device_train_codec.sh); on a CPU
    c.total_steps = 10500               # use e.g. --config.batch_size=32 --config.total_steps=3000
    c.eval_every = 3500
    c.checkpoint_every = 3500
    c.optimizer.learning_rate = 8e-4
    c.optimizer.warmup_steps = 200
  if arg in ("baseline", "baseline_quick"):
    c.model.coding = "bitpack"
    c.model.luma_aux = 4                # 16 x (4 + 4 + 1) + 2 x 4 x (2 + 2 + 1) = 184 values
    c.model.luma_isometries = "0"
    c.model.chroma_aux = 2
    c.l2 = 1.0
    c.lam = 1.0
    if arg == "baseline":
      c.total_steps = 20000
      c.eval_every = 5000
      c.checkpoint_every = 2000
  return c
