r"""Rate-distortion benchmark of the codecs: bpp (from real bytes), PSNR, MS-SSIM, timings.

    python -m experiments.main --config experiments/configs/codec_benchmark.py:quick \
        --workdir /tmp/codec_quick
    python -m experiments.main --config experiments/configs/codec_benchmark.py:kodak \
        --workdir runs/codec_kodak --config.codecs=jpeg,webp,jpeg2000

Writes WORKDIR/artifacts/: per_image.csv, averages.csv, summary.md (tables, PSNR at
0.25 / 0.5 / 1.0 bpp) and rd_psnr.png / rd_msssim.png. Variants: ``quick`` (default: the three
held-out embedded photographs, centre-cropped to 256x256, a few qualities; minutes on a CPU)
and ``kodak`` (the 24 Kodak images from ../shared/data/kodak, full quality sweeps).
A later codec adds its name to ``codecs`` and its sweep to ``qualities``.
"""

import ml_collections

from collage.train.config import training_defaults, variant

VARIANTS = ("quick", "kodak")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The benchmark config; ``arg`` is one of VARIANTS (default "quick")."""
  arg = variant(arg, VARIANTS, "codec_benchmark")
  c = training_defaults()
  c.task = "codec_benchmark"           # experiments/tasks/codec_benchmark.py (not a training task)
  c.images = ""                        # image folder (PNG/JPEG, recursive); "" = embedded photos
  c.embedded_split = "eval"            # embedded split when images == "": all | train | eval
  c.max_images = 0                     # use only the first N images (0: all)
  c.crop = 256                         # centre-crop each image to crop x crop (0: full size)
  c.channels = 3                       # 3: RGB (gray images repeated), 1: BT.601 luma
  c.codecs = "neural,pifs,jpeg,webp,jpeg2000"  # comma-separated codec names; unregistered ones are reported
  c.qualities = ml_collections.ConfigDict()  # per codec: comma-separated quality settings 1..100
  c.qualities.neural = "1,15,29,43,57,71,85,100"  # Neural Collages: the variable-rate model's quality (or the per-tile lam with neural_mix)
  c.qualities.pifs = "30,50,70"        # PIFS quality sweep (q 30 .. 70: low .. high rate)
  c.qualities.jpeg = "2,10,30,60"      # JPEG (libjpeg, 4:2:0) quality sweep
  c.qualities.webp = "1,10,40,75"      # WebP quality sweep
  c.qualities.jpeg2000 = "10,25,40,55"  # JPEG 2000: ratio 2**((100-q)/12), 0.08 .. 1.5 bpp RGB
  c.neural_refine = 0                  # Neural Collages: test-time refinement steps per image (0: one forward pass)
  c.neural_mix = False                 # Neural Collages: False: the default variable-rate model (one forward pass);
                                       # True: the five fixed-rate models chosen per tile by RD cost (better below ~0.45 bpp)
  c.target_bpps = "0.25,0.5,1.0"       # rates at which PSNR is interpolated on the average curve
  c.warmup = True                      # one untimed encode+decode per codec first (jit compile)
  c.ms_ssim = True                     # compute MS-SSIM (needs images >= 176 pixels a side)
  c.total_steps = 0                    # unused: the benchmark does not train
  if arg == "kodak":
    c.images = "../shared/data/kodak"  # relative to the working directory (the project root)
    c.crop = 0
    c.qualities.pifs = "30,35,40,50,60,70"  # Kodak average ~0.17 .. ~1.4 bpp
    c.qualities.jpeg = "2,5,8,10,15,20,30,40,50,60,70,80,90"
    c.qualities.webp = "1,3,5,10,20,30,40,50,60,70,80,90"
    c.qualities.jpeg2000 = "5,10,15,20,25,30,35,40,45,50,55,60"
  return c
