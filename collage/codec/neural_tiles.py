"""The geometry of the Neural Collage codec: how an image becomes the model's tiles, and the
lower resolution it may be coded at (``downscale``).

Tiles: the image (uint8 [H, W, C], C = 1 or 3) is edge-padded to multiples of the model's
tile ``T`` and cut into ``T x T`` tiles in raster order (:func:`image_tiles`); the padding
is no part of the image (:func:`valid_pixels`).

Downscale D = p/q (1 <= D <= MAX_DOWNSCALE in steps of 1/4, :func:`check_downscale`): the
encoder codes the image resampled to 1/D of its size by area averaging
(:func:`downscale_image`: every pixel repeated q x q times, the result edge-padded to a
multiple of p and averaged over p x p blocks; for a whole D, the mean of every D x D block),
of :func:`coded_size` ceil(H q / p) x ceil(W q / p) pixels, cut into :func:`tile_grid`
tiles; the decoder decodes every tile at ``p * scale`` and averages q x q pixel blocks.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from einops import rearrange

from collage.codec.base import CodecError

MAX_DOWNSCALE = 4
DOWNSCALE_DENOMINATORS = (1, 2, 4)  # D in steps of 1/4 (a model's tile is a multiple of q)


def _pad_to_tiles(image: np.ndarray, tile: int) -> np.ndarray:
  h, w = image.shape[:2]
  ph, pw = -h % tile, -w % tile
  return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")


def _cut_tiles(a: np.ndarray, tile: int) -> np.ndarray:
  """[H, W, ...] with H and W multiples of ``tile`` -> [n, T, T, ...]: its tiles in raster
  order (inverse: the tile placement in
  :meth:`collage.codec.neural.NeuralCollageCodec.reconstruct`)."""
  return rearrange(a, "(nh th) (nw tw) ... -> (nh nw) th tw ...", th=tile, tw=tile)


def image_tiles(image: np.ndarray, tile: int) -> np.ndarray:
  """uint8 [H, W, C] (C = 1 or 3) -> the model's input: float32 RGB tiles [n, T, T, 3] in
  [0, 1], edge-padded to whole tiles, in raster order (gray is repeated to RGB)."""
  x = image.astype(np.float32) / 255.0
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return _cut_tiles(_pad_to_tiles(x, tile), tile)


def valid_pixels(height: int, width: int, tile: int) -> np.ndarray:
  """float32 [n_tiles, T, T]: 1 where a tile pixel lies inside the image, 0 on the padding
  (cut like :func:`image_tiles`)."""
  mask = np.pad(np.ones((height, width), np.float32), ((0, -height % tile), (0, -width % tile)))
  return _cut_tiles(mask, tile)


def _as_fraction(downscale) -> Fraction | None:
  """``downscale`` as a Fraction if it is a number or a number's text (not a bool), else None."""
  try:
    if isinstance(downscale, bool):
      return None
    if isinstance(downscale, (int, np.integer)):
      return Fraction(int(downscale))
    if isinstance(downscale, Fraction):
      return downscale
    if isinstance(downscale, (float, np.floating)):
      return Fraction(float(downscale))
    if isinstance(downscale, str):
      return Fraction(downscale.strip())
  except (ValueError, ZeroDivisionError, OverflowError):
    return None  # text that is not a number
  return None


def check_downscale(downscale) -> Fraction:
  """Validates ``downscale``: a number in 1..MAX_DOWNSCALE in steps of 1/4 (an int, a float,
  a Fraction, or text such as "1.5" or "3/2") -> Fraction."""
  value = _as_fraction(downscale)
  if (value is None or value.denominator not in DOWNSCALE_DENOMINATORS
      or not 1 <= value <= MAX_DOWNSCALE):
    raise CodecError(f"downscale must be a number in 1..{MAX_DOWNSCALE} in steps of 1/4 "
                     f"(1: code every pixel; e.g. 1.5 or 3/2, 2), got {downscale!r}")
  return value


def coded_size(height: int, width: int, downscale) -> tuple[int, int]:
  """The size of the image that a file of ``height x width`` at ``downscale`` D = p/q codes:
  ceil(height * q / p) x ceil(width * q / p)."""
  d = Fraction(downscale)
  return -(-height * d.denominator // d.numerator), -(-width * d.denominator // d.numerator)


def tile_grid(height: int, width: int, downscale, tile: int) -> tuple[int, int]:
  """The rows and columns of ``tile`` x ``tile`` tiles that code an image of ``height x
  width`` at ``downscale`` (those of its :func:`coded_size`, the edges padded)."""
  hs, ws = coded_size(height, width, downscale)
  return -(-hs // tile), -(-ws // tile)


def _block_sums(x: np.ndarray, p: int, q: int, axis: int) -> np.ndarray:
  """Along ``axis``: every element repeated q times, the result edge-padded to a multiple of
  p and summed over blocks of p; int32. Computed without the repeat: output i is the sum of
  the few input rows that its block overlaps, each weighted by the overlap (in repeats)."""
  x = np.moveaxis(x, axis, 0)
  n = x.shape[0]
  i = np.arange(-(-n * q // p))
  start = i * p // q
  taps = -(-p // q) + 1  # input rows one block can overlap
  if int(start[-1]) + taps > n:  # the edge padding
    x = np.concatenate([x, np.repeat(x[-1:], int(start[-1]) + taps - n, axis=0)])
  out = np.zeros((len(i), *x.shape[1:]), np.int32)
  for t in range(taps):
    r = start + t
    w = np.clip(np.minimum((i + 1) * p, (r + 1) * q) - np.maximum(i * p, r * q), 0, None)
    if w.any():
      out += w.reshape(-1, *(1,) * (x.ndim - 1)).astype(np.int32) * x[r]
  return np.moveaxis(out, 0, axis)


def downscale_image(image: np.ndarray, downscale) -> np.ndarray:
  """uint8 [H, W, C] -> uint8 :func:`coded_size` [H', W', C]: the image resampled to 1/D of
  its size by area averaging, rounded. For D = p/q: every pixel repeated q x q times, the
  result edge-padded to a multiple of p and averaged over p x p blocks (a whole D: the mean of
  every D x D block), in exact integer sums."""
  d = Fraction(downscale)
  if d == 1:
    return image
  p, q = d.numerator, d.denominator
  sums = _block_sums(_block_sums(image.astype(np.int32), p, q, 0), p, q, 1)
  return np.round(sums.astype(np.float32) / np.float32(p * p)).astype(np.uint8)
