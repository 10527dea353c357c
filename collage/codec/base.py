"""The codec contract: bytes in, bytes out, the rate always measured from real bytes.

Every codec (PIFS fractal, neural collage, and the reference JPEG/WebP/JPEG 2000
wrappers used by benchmarks) implements :class:`Codec`. Codecs of this project write
their files through :mod:`collage.codec.container`, so every file carries magic bytes,
a version, the codec id, the image geometry, the codec's parameters and a checksum.
"""

from __future__ import annotations

import abc
import time

import numpy as np

from collage.codec.errors import CodecError
from collage.codec.memory import FIXED_BYTES


class Codec(abc.ABC):
  """A lossy image codec.

  Attributes:
    name: the name users type (``--codec NAME``), e.g. ``"pifs"``.
    codec_id: the byte stored in the container (unique per codec; reference codecs that
      write foreign formats, such as JPEG, use ``None``).
  """

  name: str
  codec_id: int | None = None

  @abc.abstractmethod
  def compress(self, image: np.ndarray, quality: int) -> bytes:
    """image: uint8 [H, W, C] (C = 1 or 3) or gray [H, W] (see :func:`check_image`),
    quality: int in 1..100 (higher is better) -> the complete file's bytes."""

  @abc.abstractmethod
  def decompress(self, data: bytes, scale: int = 1) -> np.ndarray:
    """A complete file's bytes -> uint8 [H*scale, W*scale, C]. Raises CodecError on any
    file this codec did not write intact (wrong magic, version, codec, truncation, checksum),
    and before a decode that would not fit in the available memory
    (:func:`collage.codec.memory.check_decode_fits`)."""

  def decode_bytes(self, height: int, width: int, channels: int, scale: int) -> int:
    """Estimated peak memory (bytes) of ``decompress`` at ``scale`` of an image of that size,
    beyond what the process holds already: working arrays, the returned image and one copy
    of it (the caller's, to write it). This default fits decoders that make 8-bit pixels
    and resize them (the reference codecs through Pillow): five 8-bit copies of the output."""
    return FIXED_BYTES + 5 * height * scale * width * scale * channels


_REGISTRY: dict[str, type[Codec]] = {}


def register(cls: type[Codec]) -> type[Codec]:
  """Class decorator: make a codec available by its ``name``."""
  if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
    raise ValueError(f"codec name {cls.name!r} registered twice")
  _REGISTRY[cls.name] = cls
  return cls


def unregister(name: str) -> None:
  """Inverse of :func:`register`, for codecs defined at run time (a test's, say)."""
  if name not in _REGISTRY:
    raise ValueError(f"no codec {name!r} is registered; registered: {sorted(_REGISTRY)}")
  del _REGISTRY[name]


def round_trip(codec: Codec, image: np.ndarray, quality: int
               ) -> tuple[bytes, np.ndarray, float, float]:
  """One timed encode and decode of ``image`` (uint8 [H, W, C]) -> (the file's bytes, the
  decoded image with the input's channel count, encode seconds, decode seconds). WebP has no
  gray mode: a gray image comes back as (near-)equal RGB, and its luma is the image."""
  start = time.perf_counter()
  data = codec.compress(image, quality)
  encode_s = time.perf_counter() - start
  start = time.perf_counter()
  decoded = np.asarray(codec.decompress(data))
  decode_s = time.perf_counter() - start
  if decoded.shape[-1] != image.shape[-1]:
    from collage.images import to_channels  # pylint: disable=import-outside-toplevel
    decoded = to_channels(decoded, image.shape[-1])
  return data, decoded, encode_s, decode_s


def codec_class(name: str) -> type[Codec]:
  """The class of the codec called ``name``; unknown names list the valid ones."""
  _import_builtin_codecs()
  if name not in _REGISTRY:
    raise CodecError(f"unknown codec {name!r}; valid codecs: {', '.join(sorted(_REGISTRY))}")
  return _REGISTRY[name]


def get_codec(name: str, **kwargs) -> Codec:
  """An instance of the codec called ``name``; unknown names list the valid ones."""
  return codec_class(name)(**kwargs)


def codec_names() -> list[str]:
  _import_builtin_codecs()
  return sorted(_REGISTRY)


def _import_builtin_codecs() -> None:
  """Imports the built-in codec modules (importing one registers it), by name: the contract
  module imports no codec."""
  import importlib  # pylint: disable=import-outside-toplevel
  for module in ("collage.codec.pifs", "collage.codec.reference", "collage.codec.neural"):
    importlib.import_module(module)


def check_image(image) -> np.ndarray:
  """Validates a codec's input: uint8 [H, W, C] with C in (1, 3) and H, W >= 1, or a gray
  [H, W] -> the array, [H, W, C] (a gray [H, W] becomes [H, W, 1]).

  Raises:
    CodecError: wrong dtype, rank, channel count or an empty image (the message names the
      valid form).
  """
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise CodecError(f"expected a uint8 image [H, W, C], got dtype {image.dtype}")
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3) or 0 in image.shape:
    raise CodecError(f"expected an image [H, W, C] with C = 1 (gray) or 3 (RGB) and H, W >= 1, "
                     f"got shape {image.shape}")
  return image


def check_quality(quality) -> int:
  """Validates a quality setting: an integer in 1..100 (higher is better) -> int."""
  if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not (
      1 <= int(quality) <= 100):
    raise CodecError(f"quality must be an integer in 1..100 (higher is better), got {quality!r}")
  return int(quality)


def check_scale(scale) -> int:
  """Validates a decoding scale factor: an integer in 1..16 -> int."""
  if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not (
      1 <= int(scale) <= 16):
    raise CodecError(f"scale must be an integer in 1..16, got {scale!r}")
  return int(scale)
