r"""Rate–distortion of one codec over images -> JSON curve rows (results: neural_codec.md).

    python -m benchmarks.neural_codec_rd --images ../shared/data/kodak --codec neural \
        --qualities 1,15,30,45,60,75,90,100 [--label L] [--model DIR] [--mix] [--refine N] \
        [--downscale D] [--repeats R] [--max_images N] [--ms_ssim] --out neural.json
    python -m benchmarks.neural_codec_rd --images ../shared/data/kodak --codec pifs \
        --qualities 20,30,40,50,60,70 --out pifs.json

``--images``: a folder, one image file (a speed sweep on one image), or ``embedded`` (the
17 photographs scikit-image and PyWavelets ship). Every image goes through
``collage.codec.rd.measure`` (real file bytes, RGB PSNR, the least encode / decode time of
``--repeats`` round trips) and the rows are its ``curve_rows``: one per quality, the means
over the images and every image's figures under "per_image". One untimed round trip first
(jit compile). Several codecs are several runs: ``neural_codec_compare``, ``neural_codec_plot``
and ``neural_codec_speed`` read any number of these files.
"""

from __future__ import annotations

import argparse

from collage.codec import neural_models
from collage.codec.base import get_codec
from collage.codec.rd import curve_rows, load_images, measure_images
from collage.codec.rd_compare import save_rows

NEURAL_OPTIONS = ("model", "mix", "refine", "downscale")


def codec_options(args) -> dict:
  """The codec's keyword arguments; the neural options are refused for another codec."""
  given = {k: getattr(args, k) for k in NEURAL_OPTIONS
           if getattr(args, k) not in (None, False, 0, "1")}
  if given and args.codec != "neural":
    raise SystemExit(f"--{', --'.join(given)}: options of the neural codec, not {args.codec!r}")
  return given


def default_label(codec: str, options: dict) -> str:
  """``neural, downscale 2, refine 30, per-tile quality``: the codec and what was set."""
  parts = [codec]
  if "model" in options:
    parts.append(options["model"])
  if "downscale" in options:
    parts.append(f"downscale {options['downscale']}")
  if "refine" in options:
    parts.append(f"refine {options['refine']}")
  if options.get("mix"):
    parts.append("per-tile quality")
  return ", ".join(parts)


def main(argv=None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--images", default="../shared/data/kodak",
                 help="a folder of images, one image file, or 'embedded[:SPLIT]'")
  p.add_argument("--max_images", type=int, default=0, help="the first N images (0: all)")
  p.add_argument("--codec", default="neural", help="a registered codec name")
  p.add_argument("--qualities", required=True, help="comma-separated qualities 1..100")
  p.add_argument("--label", default="", help="the rows' codec label (default: the codec and "
                 "its options), so that curves in several files differ")
  p.add_argument("--model", default=None, help="neural: a model folder, 'variable' or 'fixed'")
  p.add_argument("--mix", action="store_true", help="neural: the per-tile choice")
  p.add_argument("--refine", type=int, default=0, help="neural: test-time refinement steps")
  p.add_argument("--downscale", default="1",
                 help="neural: code at 1/D resolution (D in steps of 1/4, e.g. 1.5 or 3/2)")
  p.add_argument("--batch", type=int, default=neural_models.ENCODE_BATCH,
                 help="neural: tiles per jitted pass (a power of two; larger suits a GPU)")
  p.add_argument("--repeats", type=int, default=1,
                 help="round trips per image and quality; the times are the least")
  p.add_argument("--ms_ssim", action="store_true", help="also measure MS-SSIM")
  p.add_argument("--out", default="", help="the JSON rows (default: print only)")
  args = p.parse_args(argv)
  if args.batch < 1 or args.batch & (args.batch - 1):
    p.error(f"--batch must be a power of two, got {args.batch}")
  neural_models.ENCODE_BATCH = args.batch
  options = codec_options(args)
  label = args.label or default_label(args.codec, options)
  qualities = [int(v) for v in args.qualities.split(",")]
  images = load_images(args.images, 3, args.max_images)
  codec = get_codec(args.codec, **options)
  codec.decompress(codec.compress(images[0][1], qualities[0]))  # compile, untimed
  print(f"{len(images)} images from {args.images}")
  print("| codec | quality | bpp | PSNR (dB) | encode (s) | decode (s) |")
  print("| --- | ---: | ---: | ---: | ---: | ---: |")
  rows = []
  for q in qualities:
    (row,) = curve_rows(measure_images(codec, label, q, images, args.ms_ssim, args.repeats))
    rows.append(row)
    print(f"| {label} | {q} | {row['bpp']:.4f} | {row['psnr']:.2f} | {row['encode_s']:.3f} | "
          f"{row['decode_s']:.3f} |", flush=True)
  save_rows(args.out, rows)
  return rows


if __name__ == "__main__":
  main()
