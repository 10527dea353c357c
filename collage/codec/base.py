"""The codec contract: bytes in, bytes out, the rate always measured from real bytes.

Every codec (PIFS fractal, neural collage, and the reference JPEG/WebP/JPEG 2000
wrappers used by benchmarks) implements :class:`Codec`. Codecs of this project write
their files through :mod:`collage.codec.container`, so every file carries magic bytes,
a version, the codec id, the image geometry, the codec's parameters and a checksum.
"""

from __future__ import annotations

import abc

import numpy as np


class CodecError(ValueError):
  """A file or an image a codec cannot handle. The message names the problem and,
  where there is one, the valid choices. Command-line tools print it without a traceback."""


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
    """image: uint8 [H, W, C] (C = 1 or 3), quality: int in 1..100 (higher is better)
    -> the complete file's bytes."""

  @abc.abstractmethod
  def decompress(self, data: bytes, scale: int = 1) -> np.ndarray:
    """A complete file's bytes -> uint8 [H*scale, W*scale, C]. Raises CodecError on any
    file this codec did not write intact (wrong magic, version, codec, truncation, checksum)."""


_REGISTRY: dict[str, type[Codec]] = {}


def register(cls: type[Codec]) -> type[Codec]:
  """Class decorator: make a codec available by its ``name``."""
  if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
    raise ValueError(f"codec name {cls.name!r} registered twice")
  _REGISTRY[cls.name] = cls
  return cls


def get_codec(name: str, **kwargs) -> Codec:
  """An instance of the codec called ``name``; unknown names list the valid ones."""
  _import_builtin_codecs()
  if name not in _REGISTRY:
    raise CodecError(f"unknown codec {name!r}; valid codecs: {', '.join(sorted(_REGISTRY))}")
  return _REGISTRY[name](**kwargs)


def codec_names() -> list[str]:
  _import_builtin_codecs()
  return sorted(_REGISTRY)


def _import_builtin_codecs() -> None:
  # Importing a codec module registers it. Modules that do not exist yet are skipped
  # so that the registry works while codecs are being added.
  import importlib
  for module in ("collage.codec.pifs", "collage.codec.reference", "collage.codec.neural"):
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      if e.name != module:
        raise
