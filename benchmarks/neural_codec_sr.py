r"""Scale-2 decode of the neural codec against bicubic upsampling (results: neural_codec.md).

    python -m benchmarks.neural_codec_sr --images ../shared/data/kodak [--model DIR] \
        [--qualities 1,61,100] [--out sr.json]

``x`` = each image (cropped to even sides), ``small`` = ``x`` box-downsampled 2x2; PSNR
against ``x`` of the collage decode of ``small``'s file at scale 2, of bicubic x2 of its
scale-1 decode and of bicubic x2 of ``small`` itself; and the scale-1 decode against
``small``. Means over the images, one row per quality.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from PIL import Image

from collage.codec import neural
from collage.codec.rd import load_images
from collage.codec.rd_compare import save_rows
from collage.metrics.distortion import psnr


def box_down(img: np.ndarray) -> np.ndarray:
  """uint8 [H, W, C] with even H, W -> the means of its 2x2 blocks, rounded: [H/2, W/2, C]."""
  h, w, c = img.shape
  x = img.astype(np.float64).reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))
  return np.round(x).astype(np.uint8)


def bicubic(img: np.ndarray, like: np.ndarray) -> np.ndarray:
  """``img`` resized with Pillow's bicubic filter to ``like``'s height and width."""
  return np.asarray(Image.fromarray(img).resize((like.shape[1], like.shape[0]), Image.BICUBIC))


def main(argv=None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--images", default="../shared/data/kodak",
                 help="a folder of images, one image file, or 'embedded[:SPLIT]'")
  p.add_argument("--max_images", type=int, default=0)
  p.add_argument("--model", default=None, help="a model folder, 'variable' or 'fixed'")
  p.add_argument("--qualities", default="100")
  p.add_argument("--out", default="")
  args = p.parse_args(argv)
  images = load_images(args.images, 3, args.max_images)
  codec = neural.NeuralCollageCodec(model=args.model)
  rows = []
  for q in [int(v) for v in args.qualities.split(",")]:
    p_sr, p_bic, p_dec, p_low = [], [], [], []
    for _, img in images:
      x = img[:img.shape[0] - img.shape[0] % 2, :img.shape[1] - img.shape[1] % 2]
      small = box_down(x)
      data = codec.compress(small, q)
      decoded = codec.decompress(data)
      p_sr.append(psnr(codec.decompress(data, scale=2), x, 255.0))
      p_low.append(psnr(decoded, small, 255.0))
      p_bic.append(psnr(bicubic(small, x), x, 255.0))
      p_dec.append(psnr(bicubic(decoded, x), x, 255.0))
    row = {"quality": q, "model": os.path.relpath(codec.setting(q).model.directory),
           "collage_scale2_psnr": float(np.mean(p_sr)),
           "bicubic_of_uncompressed_psnr": float(np.mean(p_bic)),
           "bicubic_of_decoded_psnr": float(np.mean(p_dec)),
           "scale1_decode_vs_downsampled_psnr": float(np.mean(p_low))}
    print(json.dumps(row), flush=True)
    rows.append(row)
  save_rows(args.out, rows)
  return rows


if __name__ == "__main__":
  main()
