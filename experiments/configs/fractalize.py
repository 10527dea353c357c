r"""Fractalization: fit a restricted collage operator to one image, decode it at 1x, 4x, 8x.

    python -m experiments.main --config experiments/configs/fractalize.py:quick \
        --workdir /tmp/fractalize_quick
    python -m experiments.main --config experiments/configs/fractalize.py:quick \
        --workdir /tmp/fractalize_mine --config.image_path=/path/to/photo.png

The restricted collage (Poli et al. 2022, Sec. 5 "fractalization"): the whole image is the only
domain, pooled to the size of a small range block; every range block is an affine combination of
the isometries of that thumbnail. Parameters are fitted by Adam on the collage objective
``|x - T(x)|^2`` (or, with ``loss="decode"``, on the decoded image through the implicit
fixed-point gradient). Writes WORKDIR/artifacts/: fractal_1x.png, fractal_4x.png,
fractal_8x.png, target.png, decoding.gif (the iterations from a grey start), fractalize.json
and fractalize.md (PSNR of the 1x decode, collage error, contraction factor), and the
point-cloud IFS demo when ``ifs_demo`` is set: ifs_target.png / ifs_fit.png (a Sierpinski
triangle recovered from points on its attractor by ``collage.ops.ifs``; the Chamfer distances
go into fractalize.json).

Variants: ``quick`` (default; 256x256, under a minute on a 2-core CPU, no IFS demo), ``tiny``
(64x64, a few steps: the end-to-end test), ``full`` (512x512 and the IFS demo: about 10 minutes
there, the demo 600 Adam steps on 1,024 points with 4 restarts). The demo in any variant:
``--config.ifs_demo=sierpinski`` (or ``fern``); without it: ``--config.ifs_demo=''``.
"""

import ml_collections

from collage.train.config import training_defaults, variant

VARIANTS = ("quick", "tiny", "full")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The fractalization config; ``arg`` is one of VARIANTS (default "quick")."""
  arg = variant(arg, VARIANTS, "fractalize")
  c = training_defaults()
  c.task = "fractalize"          # experiments/tasks/fractalize.py
  c.total_steps = {"quick": 600, "tiny": 10, "full": 2000}[arg]  # Adam steps on the one image
  c.batch_size = 1               # one image; copies if larger (must divide the device count)
  c.log_every = {"quick": 100, "tiny": 5, "full": 200}[arg]  # steps between progress lines
  c.eval_every = 0               # evaluate + write artifacts only at the end
  c.eval_batches = 1             # the eval set is the one image
  c.checkpoint_every = 0         # checkpoint only at the end
  c.keep_checkpoints = 1         # fits are cheap: keep the last one
  c.optimizer.name = "adam"      # plain Adam on the raw collage parameters
  c.optimizer.learning_rate = 0.05  # large: the parameters are few and well scaled
  c.optimizer.grad_clip_norm = 0.0  # no clipping: the gradient of a mean is already small

  # -- the image -------------------------------------------------------------------------
  c.image_path = ""              # PNG/JPEG to fractalize; "" = the embedded image below
  c.embedded = "astronaut"       # embedded photograph name (collage.data.embedded.EMBEDDED_NAMES)
  c.image_size = {"quick": 256, "tiny": 64, "full": 512}[arg]  # centre square crop resized to this
  c.channels = 3                 # 3 = RGB, 1 = gray

  # -- the collage operator --------------------------------------------------------------
  c.range_size = 4               # range block side; the domain is the whole image
  c.num_isometries = 8           # candidates: the first n of the 8 isometries (blocks.py order)
  c.s_max = 0.95                 # contraction bound of the weight parametrization, in (0, 1)
  c.init_stddev = 0.1            # std of the initial raw weights (biases start at 0.5)
  c.loss = "collage"             # collage: |x - T(x)|^2 | decode: |x - decode|^2 (implicit grad)
  c.train_decode_steps = 30      # decode iterations per step when loss == "decode"

  # -- decoding and artifacts ------------------------------------------------------------
  c.eval_decode_steps = 150      # fixed iterations for the 1x decode that is scored (PSNR)
  c.artifact_tol = 1e-4          # artifact decodes stop when no pixel changes by more than this
  c.artifact_max_steps = 400     # cap on artifact decode iterations
  c.artifact_scales = (1, 4, 8)  # decode scales saved as fractal_{k}x.png
  c.gif_steps = 24               # decoding iterations shown in decoding.gif
  c.gif_frame_ms = 120           # milliseconds per GIF frame

  # -- point-cloud IFS demo (collage.ops.ifs), written next to the image artifacts -----------
  c.ifs_demo = "sierpinski" if arg == "full" else ""  # "" (skip) | sierpinski | fern: ~10 min on 2 CPU cores
  c.ifs_points = 1024            # target points on the true attractor (chaos game); with 256 the
                                 # true maps' Chamfer loss (5.3e-4) is above misaligned fits'
  c.ifs_steps = 600              # Adam steps on the Chamfer collage loss (300 did not recover it)
  c.ifs_restarts = 4             # parallel random restarts; the best is kept
  return c
