"""What the Compress tab computes: a codec run with its numbers, JPEG and WebP at the same file
size, and a compressed file decoded at a larger scale beside the JPEG upscaled.

The numbers are the codec benchmark's (``experiments/tasks/codec_benchmark.py``): the rate from
the file's real bytes (``8 * bytes / pixels``), PSNR of the 8-bit images, MS-SSIM (images of at
least 176 pixels a side; its channels in parallel threads), encode and decode seconds of this
process. A file made here is the
file ``collage-codec compress --codec NAME --quality Q`` writes for the same image (the same
codec, defaults and quality), byte for byte; ``stats["sha256"]`` lets a script check it.

Zooming decodes the file at an integer scale with its own decoder: the neural codec and PIFS
run their collage operators at that resolution (no resampling); the reference codecs have no
such decoder and upsample (bicubic), as their ``decompress(scale)`` does. For a crop, the neural
codec decodes only the tiles under it (its tiles are independent: the pixels are those of the
whole image's decode); PIFS decodes the whole image (its domains reach anywhere), so a crop of
it is cut from the full decode. Every decode passes the codec's own memory check first
(:func:`collage.codec.memory.check_decode_fits`), which refuses in one line a scale that would
not fit.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import threading
from typing import Any

import numpy as np
from PIL import Image

from collage.codec import container, reference
from collage.codec.base import (Codec, CodecError, check_image, check_quality, get_codec,
                                round_trip)
from collage.codec.memory import check_decode_fits
from collage.codec.neural import NeuralCollageCodec
from collage.codec.neural_format import TileCode
from collage.codec.neural_tiles import tile_grid
from collage.metrics.distortion import psnr
from collage.metrics.msssim import min_side, ms_ssim
from collage.metrics.rate import bpp

# (label shown in the page, codec name), in the order the page lists them.
CODEC_CHOICES = (("Neural Collage", "neural"), ("PIFS (fractal)", "pifs"), ("JPEG", "jpeg"),
                 ("WebP", "webp"), ("JPEG 2000", "jpeg2000"))
CODEC_NAMES = tuple(name for _, name in CODEC_CHOICES)
CODEC_LABELS = {name: label for label, name in CODEC_CHOICES}
COLLAGE_CODECS = ("neural", "pifs")  # decoders that run at any scale without resampling
SUFFIXES = {"neural": ".clg", "pifs": ".clg", "jpeg": ".jpg", "webp": ".webp",
            "jpeg2000": ".j2k"}
MAX_ZOOM = 8
ZOOM_CROP = 96  # the side of the zoomed region, in pixels of the image (96 * 8 = 768 shown)
LANCZOS_MARGIN = 4  # pixels around a crop that the Lanczos filter reads (its support is 3)

_codecs: dict[str, Codec] = {}
_codecs_lock = threading.Lock()
_channel_pool = concurrent.futures.ThreadPoolExecutor(3, thread_name_prefix="ms-ssim")


def check_codec(name: Any) -> str:
  """A codec name the page offers -> the name; anything else names the valid ones."""
  if name not in CODEC_NAMES:
    raise CodecError(f"unknown codec {name!r}; valid codecs: {', '.join(CODEC_NAMES)}")
  return str(name)


def check_zoom(scale: Any) -> int:
  """A zoom factor: an integer 1..MAX_ZOOM (a float such as 4.0 from a slider counts)."""
  try:
    value = float(scale)
  except (TypeError, ValueError):
    value = float("nan")
  if isinstance(scale, bool) or not value.is_integer() or not 1 <= value <= MAX_ZOOM:
    raise CodecError(f"zoom must be an integer in 1..{MAX_ZOOM}, got {scale!r}")
  return int(value)


def as_quality(quality: Any) -> int:
  """A quality from a slider or a client (an int, or a float such as 50.0) -> int 1..100."""
  if isinstance(quality, float) and quality.is_integer():
    quality = int(quality)
  return check_quality(quality)


def codec(name: str) -> Codec:
  """The codec called ``name``, one instance per process (the neural codec keeps its loaded
  models and compiled programs)."""
  name = check_codec(name)
  with _codecs_lock:
    if name not in _codecs:
      _codecs[name] = get_codec(name)
    return _codecs[name]


@dataclasses.dataclass(frozen=True)
class Coded:
  """One image through one codec at one quality.

  Attributes:
    name: the codec.
    quality: its quality setting, 1..100.
    data: the file's bytes.
    decoded: uint8 [H, W, C], the decoded image with the input's channel count.
    stats: bytes, bpp, psnr (dB; None for a lossless result), ms_ssim (None below 176
      pixels a side), encode_s, decode_s, the geometry, and the file's sha256.
  """
  name: str
  quality: int
  data: bytes
  decoded: np.ndarray
  stats: dict[str, Any]


def multiscale_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
  """MS-SSIM of two uint8 images [H, W, C] (:func:`collage.metrics.msssim.ms_ssim`, the mean
  over channels of each channel's value), the channels in parallel threads (numpy releases
  the GIL): the codec benchmark's number, to rounding, in about half the time. None for an
  image under ``min_side()`` pixels a side."""
  if min(a.shape[:2]) < min_side():
    return None
  if a.shape[-1] == 1:
    return ms_ssim(a, b)
  return float(np.mean(list(_channel_pool.map(lambda k: ms_ssim(a[..., k], b[..., k]),
                                              range(a.shape[-1])))))


def run(image: np.ndarray, name: str, quality: Any) -> Coded:
  """Compress ``image`` (uint8 [H, W, C]) with codec ``name`` at ``quality``, decode it, and
  measure both (see the module docstring)."""
  image = check_image(image)
  quality = as_quality(quality)
  data, decoded, encode_s, decode_s = round_trip(codec(name), image, quality)
  h, w, ch = image.shape
  quality_db = psnr(image, decoded, peak=255.0)
  stats = {
      "codec": name, "quality": quality, "width": w, "height": h, "channels": ch,
      "bytes": len(data), "bpp": bpp(len(data), h, w),
      "psnr": None if quality_db == float("inf") else quality_db,
      "ms_ssim": multiscale_ssim(image, decoded),
      "encode_s": encode_s, "decode_s": decode_s,
      "sha256": hashlib.sha256(data).hexdigest(),
  }
  return Coded(name, quality, data, decoded, stats)


def quality_for_size(image: np.ndarray, name: str, target_bytes: int) -> int:
  """The quality 1..100 at which codec ``name`` writes ``image`` in the number of bytes
  nearest ``target_bytes`` (ties: the lower quality). File size grows with quality, so a
  bisection finds the last quality at or under the target; it or the next one is nearest."""
  c, sizes = codec(name), {}

  def size(q: int) -> int:
    if q not in sizes:
      sizes[q] = len(c.compress(image, q))
    return sizes[q]

  lo, hi = 1, 100
  if size(lo) >= target_bytes:
    return lo
  while lo < hi:  # invariant: size(lo) < target_bytes
    mid = (lo + hi + 1) // 2
    if size(mid) <= target_bytes:
      lo = mid
    else:
      hi = mid - 1
  candidates = [q for q in (lo, lo + 1) if q <= 100]
  return min(candidates, key=lambda q: (abs(size(q) - target_bytes), q))


def same_size(image: np.ndarray, name: str, target_bytes: int) -> Coded:
  """``image`` through codec ``name`` at the quality whose file is nearest ``target_bytes``."""
  return run(image, name, quality_for_size(check_image(image), name, int(target_bytes)))


# -- files and zooming ------------------------------------------------------------------------
def codec_for_file(data: bytes) -> str:
  """The name of the codec that wrote ``data``: a standard JPEG / WebP / JPEG 2000 file by its
  signature, a collage container by its codec id.

  Raises:
    CodecError: not a file any codec here reads (the container's own message names why).
  """
  if not data:
    raise CodecError("the compressed file is empty")
  foreign = reference.sniff(bytes(data[:16]))
  if foreign is not None:
    return foreign
  name = container.describe(bytes(data))["codec"]
  if name not in CODEC_NAMES:
    raise CodecError(f"the file was written by a codec the demo does not offer ({name!r}); "
                     f"it offers {', '.join(CODEC_NAMES)}")
  return name


def decode_at(data: bytes, scale: Any) -> np.ndarray:
  """The whole file decoded at ``scale`` by its own decoder -> uint8 [H*k, W*k, C]; the
  codec's memory check refuses a decode that would not fit."""
  scale = check_zoom(scale)
  return np.asarray(codec(codec_for_file(data)).decompress(bytes(data), scale=scale))


@dataclasses.dataclass(frozen=True)
class Box:
  """A square region of an image, in its pixels: rows y..y+size, columns x..x+size."""
  y: int
  x: int
  size: int

  @classmethod
  def around(cls, height: int, width: int, fy: float, fx: float,
             size: int = ZOOM_CROP) -> "Box":
    """The square of side ``size`` (at most the image's shorter side) centred as near the
    point at fractions (fy, fx) of the height and width as the image allows."""
    size = max(1, min(int(size), height, width))
    fy, fx = min(max(float(fy), 0.0), 1.0), min(max(float(fx), 0.0), 1.0)
    y = min(max(int(round(fy * height - size / 2)), 0), height - size)
    x = min(max(int(round(fx * width - size / 2)), 0), width - size)
    return cls(y, x, size)

  def cut(self, image: np.ndarray, scale: int = 1) -> np.ndarray:
    """This box of ``image`` at ``scale`` times the box's image size."""
    k = int(scale)
    return image[self.y * k:(self.y + self.size) * k, self.x * k:(self.x + self.size) * k]


def _neural_crop(c: NeuralCollageCodec, data: bytes, scale: int, box: Box) -> np.ndarray:
  """The tiles of a neural file that cover ``box``, decoded at ``scale`` -> the box's pixels
  uint8 [size*k, size*k, C]. Tiles decode independently, so these are the whole decode's."""
  code, header = c.decode_code(data)
  tile = code.models[0].cfg.tile
  d = code.downscale
  span = tile * d.numerator // d.denominator  # image pixels one tile covers
  rows, cols = tile_grid(header.height, header.width, d, tile)
  r0, r1 = box.y // span, min(rows, -(-(box.y + box.size) // span))
  c0, c1 = box.x // span, min(cols, -(-(box.x + box.size) // span))
  chosen = np.array([r * cols + q for r in range(r0, r1) for q in range(c0, c1)], np.int64)
  rank = np.zeros(len(code.choice), np.int64)  # a tile's row in its entry's codes
  for k in range(len(code.models)):
    where = code.choice == k
    rank[where] = np.arange(int(where.sum()))
  entries = [k for k in range(len(code.models)) if np.any(code.choice[chosen] == k)]
  index = {k: i for i, k in enumerate(entries)}
  sub = TileCode(
      models=tuple(code.models[k] for k in entries),
      choice=np.array([index[int(k)] for k in code.choice[chosen]], np.int64),
      codes=tuple(code.codes[k][rank[chosen[code.choice[chosen] == k]]] for k in entries),
      qualities=tuple(code.qualities[k] for k in entries), downscale=d)
  height, width, channels = (r1 - r0) * span, (c1 - c0) * span, header.channels
  check_decode_fits(c, height, width, channels, scale,
                    lambda s: c.decode_bytes(height, width, channels, s, d))
  out = c.reconstruct(sub, height, width, channels, scale)
  inner = Box(box.y - r0 * span, box.x - c0 * span, box.size)
  return inner.cut(out, scale)


def zoom_crop(data: bytes, scale: Any, box: Box, cache: dict | None = None) -> np.ndarray:
  """``box`` of the file decoded at ``scale`` by its own decoder -> uint8 [size*k, size*k, C].

  ``cache`` (a session's dict) keeps the last whole-image decode of a codec whose crop needs
  one (PIFS, the reference codecs), so moving the crop does not decode again."""
  scale = check_zoom(scale)
  data = bytes(data)
  name = codec_for_file(data)
  c = codec(name)
  if isinstance(c, NeuralCollageCodec):
    return _neural_crop(c, data, scale, box)
  key = (hashlib.sha256(data).hexdigest(), scale)
  if cache is not None and cache.get("key") == key:
    full = cache["image"]
  else:
    full = np.asarray(c.decompress(data, scale=scale))
    if cache is not None:
      cache.clear()
      cache.update(key=key, image=full)
  return box.cut(full, scale)


def lanczos_crop(image: np.ndarray, scale: Any, box: Box) -> np.ndarray:
  """``box`` of ``image`` (uint8 [H, W, C]) upscaled ``scale`` times with Lanczos, from the
  box and a margin around it (so the edges see the pixels a whole-image resize would)."""
  scale = check_zoom(scale)
  h, w, ch = image.shape
  m = LANCZOS_MARGIN
  y0, x0 = max(box.y - m, 0), max(box.x - m, 0)
  y1, x1 = min(box.y + box.size + m, h), min(box.x + box.size + m, w)
  region = image[y0:y1, x0:x1]
  pil = Image.fromarray(region[..., 0] if ch == 1 else region)
  big = np.asarray(pil.resize(((x1 - x0) * scale, (y1 - y0) * scale),
                              Image.Resampling.LANCZOS)).reshape((y1 - y0) * scale,
                                                                 (x1 - x0) * scale, ch)
  return Box(box.y - y0, box.x - x0, box.size).cut(big, scale)
