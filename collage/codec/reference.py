"""Reference codecs for benchmarks: JPEG, WebP and JPEG 2000 through Pillow.

They implement the same :class:`~collage.codec.base.Codec` interface as this project's
codecs but write their own standard file formats (``codec_id = None``), so the rate
measured from their bytes is the rate a user of those formats would see.

* ``jpeg``: libjpeg via Pillow, ``quality`` passed through, 4:2:0 chroma subsampling by
  default (``subsampling=0`` for 4:4:4), standard (non-optimized) Huffman tables unless
  ``optimize=True``.
* ``webp``: libwebp via Pillow (lossy), ``quality`` passed through, ``method`` 4 (Pillow's
  default; 6 is slower and slightly smaller). Lossy WebP has no grayscale mode: a gray
  image is coded as YUV with neutral chroma and decodes to 3 (near-equal) channels.
* ``jpeg2000``: OpenJPEG via Pillow, a raw J2K codestream (no JP2 boxes), the irreversible
  9/7 wavelet, the colour transform for RGB, one quality layer at the compression ratio
  ``2 ** ((100 - quality) / 12)`` (quality 100 -> ratio 1, 76 -> 4, 52 -> 16, 28 -> 64,
  1 -> ~305), i.e. ``24 / ratio`` bits per pixel for RGB.

``decompress(data, scale)`` with ``scale > 1`` upsamples the decoded image with Pillow's
bicubic filter (these formats are not resolution independent).
"""

from __future__ import annotations

import abc
import io
import warnings

import numpy as np
from PIL import Image

from collage.codec.base import Codec, CodecError, check_image, check_quality, check_scale, register
from collage.codec.memory import check_decode_fits

# Leading bytes of each format, for recognising foreign files (e.g. in ``collage-codec``).
SIGNATURES = {
    "jpeg": (b"\xff\xd8\xff",),
    "jpeg2000": (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  \r\n\x87\n"),
}


def sniff(data: bytes) -> str | None:
  """The name of the reference codec whose format ``data`` starts with, or None."""
  if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
    return "webp"
  for name, signatures in SIGNATURES.items():
    if any(data.startswith(s) for s in signatures):
      return name
  return None


def _to_pil(image: np.ndarray) -> Image.Image:
  image = check_image(image)
  return Image.fromarray(image[..., 0], "L") if image.shape[-1] == 1 else Image.fromarray(
      image, "RGB")


class _PillowCodec(Codec):
  """Shared decode path: Pillow reads the bytes, checks the format, returns uint8 [H, W, C]."""

  format_name: str = ""

  @abc.abstractmethod
  def _save(self, img: Image.Image, quality: int, buf: io.BytesIO) -> None:
    """Write ``img`` to ``buf`` in this codec's format at ``quality`` (1..100)."""

  def compress(self, image: np.ndarray, quality: int) -> bytes:
    quality = check_quality(quality)
    img = _to_pil(image)
    buf = io.BytesIO()
    self._save(img, quality, buf)
    return buf.getvalue()

  def _check_complete(self, data: bytes) -> None:
    """Raises CodecError for a file its decoder would read although it is cut short."""

  def decompress(self, data: bytes, scale: int = 1) -> np.ndarray:
    scale = check_scale(scale)
    if sniff(bytes(data[:16])) != self.name:
      raise CodecError(f"not a {self.format_name} file (wrong signature)")
    self._check_complete(bytes(data))
    try:
      with warnings.catch_warnings():
        # check_decode_fits, not Pillow's pixel-count warning, guards the memory here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as img:
          check_decode_fits(self, img.height, img.width, 1 if img.mode == "L" else 3, scale)
          img.load()
          if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
          if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.Resampling.BICUBIC)
          out = np.asarray(img, np.uint8)
    except CodecError:  # the memory check's refusal, not a corrupt file
      raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
      raise CodecError(f"corrupt {self.format_name} file: {e}") from None
    return out[..., None].copy() if out.ndim == 2 else out.copy()


@register
class JpegCodec(_PillowCodec):
  """JPEG (libjpeg). Keyword arguments: subsampling (2 = 4:2:0, 1 = 4:2:2, 0 = 4:4:4),
  optimize (optimized Huffman tables)."""

  name = "jpeg"
  format_name = "JPEG"

  def __init__(self, subsampling: int = 2, optimize: bool = False):
    if subsampling not in (0, 1, 2):
      raise CodecError(f"subsampling must be 0 (4:4:4), 1 (4:2:2) or 2 (4:2:0), got "
                       f"{subsampling!r}")
    self.subsampling = subsampling
    self.optimize = bool(optimize)

  def _save(self, img, quality, buf):
    img.save(buf, format="JPEG", quality=quality, subsampling=self.subsampling,
             optimize=self.optimize)


@register
class WebpCodec(_PillowCodec):
  """WebP (libwebp, lossy). Keyword argument: method (0 fast .. 6 slow and smallest)."""

  name = "webp"
  format_name = "WebP"

  def __init__(self, method: int = 4):
    if method not in range(7):
      raise CodecError(f"webp method must be an integer in 0..6, got {method!r}")
    self.method = method

  def _save(self, img, quality, buf):
    img.save(buf, format="WEBP", quality=quality, method=self.method, lossless=False)


def jpeg2000_ratio(quality: int) -> float:
  """The compression ratio (raw bytes / coded bytes) a JPEG 2000 ``quality`` asks for."""
  return float(2.0 ** ((100 - check_quality(quality)) / 12.0))


@register
class Jpeg2000Codec(_PillowCodec):
  """JPEG 2000 (OpenJPEG), one quality layer at ``jpeg2000_ratio(quality)``."""

  name = "jpeg2000"
  format_name = "JPEG 2000"

  def _check_complete(self, data: bytes) -> None:
    # OpenJPEG decodes a codestream cut at a packet boundary without complaint (into a
    # different picture); a complete one ends with the EOC marker. JP2 boxes may follow the
    # codestream, so only bare codestreams (what this codec writes) are checked.
    if data.startswith(SIGNATURES["jpeg2000"][0]) and not data.endswith(b"\xff\xd9"):
      raise CodecError("corrupt JPEG 2000 file: it is truncated (the codestream does not end "
                       "with its EOC marker, FF D9)")

  def _save(self, img, quality, buf):
    # Pillow wraps the codestream in a JP2 box unless the format is "J2K"; the bare codestream
    # is what the ratio targets, without ~80 bytes of boxes.
    # mct=1: the RGB -> YCbCr component transform (Pillow's default is none, which costs
    # ~2.5 dB on RGB photographs at 0.5 bpp).
    img.save(buf, format="JPEG2000", no_jp2=True, irreversible=True, quality_mode="rates",
             quality_layers=[jpeg2000_ratio(quality)], mct=1 if img.mode == "RGB" else 0)
