"""Images into the demo: an uploaded file, or one of the embedded photographs.

An upload is whatever a person drops on the page, so :func:`read_upload` checks it before any
pixel is decoded and refuses, each with one message that names the file and what to do:

* a file that is not an image Pillow recognises (a text file, a PDF, a truncated PNG);
* an image over :data:`MAX_PIXELS` (16 MP), read from its header, so a huge or hostile file
  costs nothing to refuse;
* an image with more than 8 bits per sample (16-bit PNG or TIFF, float TIFF): the codecs take
  8-bit images, and cutting precision silently would misstate every number the page shows;
* what the library's reader refuses (transparent pixels, CMYK): its own message.

The embedded photographs (:mod:`collage.data.embedded`) are written once per process as PNG
files into a folder the app serves, so a picked photograph and an upload travel the same way
(a file path) through every handler and every API endpoint.
"""

from __future__ import annotations

import os
import shlex
import threading

import numpy as np
from PIL import Image, UnidentifiedImageError

from collage.data.embedded import EMBEDDED_NAMES, embedded_images
from collage.images import load_image
from collage.images import sample_bits

MAX_PIXELS = 16_000_000  # the largest upload, width x height (16 MP)
DEFAULT_PHOTO = "astronaut"


class InputError(ValueError):
  """A bad input: the message is shown in the page (and returned to API clients) as it is."""


def _megapixels(n: int) -> str:
  return f"{n / 1e6:.1f} MP"


def read_upload(path: str | os.PathLike | None, what: str = "image") -> np.ndarray:
  """The image in an uploaded file -> uint8 [H, W, C], C = 1 (gray) or 3 (RGB).

  Args:
    path: the file Gradio stored the upload in (its base name is the name the person gave it).
    what: what the file is for, in messages ("image", "content image", ...).

  Raises:
    InputError: no file, not an image, over MAX_PIXELS, deeper than 8 bits, or a mode the
      library does not read (the message names the file and the fix).
  """
  if path is None or not str(path):
    raise InputError(f"no {what}: pick a photograph or upload an image file")
  path = os.fspath(path)
  name = os.path.basename(path)
  if not os.path.isfile(path):
    raise InputError(f"{what} {name!r} is not a file (it may have expired: upload it again)")
  try:
    with Image.open(path) as img:
      width, height = img.size
      bits = sample_bits(img)
  except Image.DecompressionBombError:
    raise InputError(f"{what} {name!r} is far larger than the demo's limit of "
                     f"{_megapixels(MAX_PIXELS)}; downscale it first") from None
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
    raise InputError(f"{name!r} is not an image file: the demo reads PNG, JPEG, WebP, BMP, "
                     "TIFF and the other formats Pillow recognises") from None
  if width * height > MAX_PIXELS:
    raise InputError(f"{what} {name!r} is {width}x{height} = {_megapixels(width * height)}, "
                     f"over the demo's limit of {_megapixels(MAX_PIXELS)}; downscale it first "
                     "(collage-codec on the command line has no such limit)")
  if bits > 8:
    out = shlex.quote(os.path.splitext(name)[0] + "_8bit.png")
    raise InputError(f"{what} {name!r} has {bits}-bit samples; the codecs take 8-bit images, "
                     "so that no precision is dropped silently. Convert it first, e.g. with "
                     f"ImageMagick: magick {shlex.quote(name)} -depth 8 {out}")
  try:
    return load_image(path)
  except (OSError, ValueError) as e:
    raise InputError(str(e).replace(repr(path), repr(name))) from None


def photo(name: str) -> np.ndarray:
  """An embedded photograph by name -> uint8 [H, W, C] (C = 1 for the gray ones)."""
  if name not in EMBEDDED_NAMES:
    raise InputError(f"unknown photograph {name!r}; the embedded ones are "
                     f"{', '.join(EMBEDDED_NAMES)}")
  image = dict(embedded_images(3, "all"))[name]
  if np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0],
                                                                      image[..., 2]):
    return image[..., :1]  # the loader repeats a gray photograph to RGB: undo it
  return image


class PhotoFolder:
  """The embedded photographs as PNG files in ``folder`` (written on first use, once).

  Args:
    folder: a directory the app may serve (``launch(allowed_paths=...)``).
  """

  def __init__(self, folder: str):
    self.folder = folder
    self._lock = threading.Lock()

  def path(self, name: str) -> str:
    """The PNG file of embedded photograph ``name``."""
    out = os.path.join(self.folder, f"{name}.png")
    with self._lock:
      if not os.path.isfile(out):
        image = photo(name)
        os.makedirs(self.folder, exist_ok=True)
        tmp = out + ".tmp"
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp, format="PNG")
        os.replace(tmp, out)
    return out
