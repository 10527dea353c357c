"""Image files in and out: reading them into uint8 arrays, converting between channel counts,
writing PNGs and captioned grids. The ground floor's image I/O (with ``ops`` and ``metrics``):
every floor may import it, and it imports only numpy and Pillow.

The I/O edge of the library: everything here returns ``uint8`` arrays ``[H, W, C]``
with ``C = 1`` (grayscale) or ``C = 3`` (RGB). Inside the library images become
float32 in [0, 1] (see ``collage.data.pipeline``).

Supported Pillow modes (anything else raises ``ValueError`` naming the file):
  "1" (bilevel, read as 0 / 255), "L" (gray), "P" (palette, expanded to RGB),
  "RGB", and "LA" / "RGBA" / "PA" only when every pixel is fully opaque (the alpha
  channel is then dropped; a transparent pixel has no single right colour, so it is an
  error rather than a guess). CMYK is rejected.

Every image with more than 8 bits per sample is rejected, whatever its channels: 16-bit gray
("I;16"), 16-bit RGB and RGBA (which Pillow itself would silently cut to 8 bits), 16-bit gray
with alpha, 32-bit integer ("I"), float ("F"), and PNM files whose maxval exceeds 255. Going
to 8 bits drops precision and, for float or 32-bit data, needs a value range that the file
does not state, so the error names the file and a command that converts it (``DEEP_HINT``).
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

# File extensions ``image_paths`` collects (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SUPPORTED_MODES = ("1", "L", "P", "RGB", "LA (opaque)", "RGBA (opaque)", "PA (opaque)")
# The conversion an error about a deep image suggests ("{path}", "{out}": shell-quoted paths).
DEEP_HINT = "with ImageMagick: magick {path} -depth 8 {out}"
# Modes that hold more than 8 bits per sample once decoded.
_DEEP_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N")
# ITU-R BT.601 luma weights for RGB -> gray.
_LUMA = np.array([0.299, 0.587, 0.114], np.float64)


def image_paths(folder: str | os.PathLike) -> list[str]:
  """Every PNG / JPEG file under ``folder`` (recursively), sorted by path.

  Args:
    folder: a directory.

  Returns:
    Absolute paths, sorted, with extensions in ``IMAGE_EXTENSIONS`` (any case).

  Raises:
    FileNotFoundError: ``folder`` does not exist.
    NotADirectoryError: ``folder`` is a file.
    ValueError: ``folder`` holds no PNG / JPEG file.
  """
  folder = os.path.abspath(os.fspath(folder))
  if os.path.exists(folder) and not os.path.isdir(folder):
    raise NotADirectoryError(f"image folder {folder!r} is a file, not a directory")
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"image folder {folder!r} does not exist")
  paths = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    for name in files:
      if name.lower().endswith(IMAGE_EXTENSIONS):
        paths.append(os.path.join(root, name))
  if not paths:
    raise ValueError(
        f"image folder {folder!r} holds no image file with extension "
        f"{'/'.join(IMAGE_EXTENSIONS)} (searched recursively, any case)")
  return sorted(paths)


def load_image(path: str | os.PathLike) -> np.ndarray:
  """Decode one image file.

  Args:
    path: a file Pillow can read (PNG, JPEG, BMP, TIFF, ...).

  Returns:
    uint8 ``[H, W, C]`` with ``C = 1`` for grayscale files and ``C = 3`` otherwise.

  Raises:
    FileNotFoundError: the file does not exist.
    IsADirectoryError: the path is a directory.
    ValueError: the file is not a regular file, is corrupt, truncated, not an image, has
      more than 8 bits per sample, or is in an unsupported mode (the message names the file
      and, for a mode, lists ``SUPPORTED_MODES``).
  """
  path = os.fspath(path)
  check_file(path, "image file")
  try:
    with Image.open(path) as img:
      bits = sample_bits(img)
      if bits > 8:
        raise ValueError(_deep_message(path, img, bits))
      img.load()  # decode now, so truncated files fail here
      return _to_array(img, path)
  except Image.DecompressionBombError as e:
    raise ValueError(f"image file {path!r} is too large to read safely: {e}") from e
  except (UnidentifiedImageError, OSError, SyntaxError) as e:
    raise ValueError(f"cannot read image file {path!r}: {e}") from e


def check_file(path: str, what: str) -> None:
  """Raises unless ``path`` is a regular file: FileNotFoundError (nothing there, or a link to
  nothing), IsADirectoryError, or ValueError (a device, pipe or socket). ``what`` names the
  path in the message, e.g. "image file"."""
  if os.path.isfile(path):
    return
  if os.path.isdir(path):
    raise IsADirectoryError(f"{what} {path!r} is a directory, not a file")
  if os.path.islink(path):
    raise FileNotFoundError(f"{what} {path!r} is a symbolic link to "
                            f"{os.readlink(path)!r}, which does not exist")
  if os.path.exists(path):
    raise ValueError(f"{what} {path!r} is not a regular file (a device, pipe or socket)")
  raise FileNotFoundError(f"{what} {path!r} does not exist")


def sample_bits(img: Image.Image) -> int:
  """Bits per sample that an opened (not yet loaded) Pillow image stores: 8 for ordinary
  images (also for packed 5-6-5 BMPs and PNMs with a maxval below 256), 16 for a 16-bit PNG,
  TIFF or PNM (10 for a PNM with maxval 1023), 32 for 32-bit integer or float data.

  Pillow decodes 16-bit RGB(A) straight to 8-bit "RGB"/"RGBA", so the mode alone does not
  tell; the raw mode of the file's data (``img.tile``, before ``load``) does."""
  bits = 8
  for tile in img.tile:
    args = tile[3] if len(tile) > 3 else None
    m = re.match(r"^([A-Za-z]+);(\d+)", _raw_mode(tile))
    if m and not m.group(1).upper().startswith("BGR"):  # "BGR;15" / "BGR;16": packed pixels
      bits = max(bits, int(m.group(2)))
    if tile[0] == "ppm" and isinstance(args, tuple) and len(args) > 1 and \
        isinstance(args[1], int) and args[1] > 255:  # a PNM maxval above 255
      bits = max(bits, int(args[1]).bit_length())
  if bits == 8 and img.mode in _DEEP_MODES:  # the file's data did not say: trust the mode
    bits = 16 if img.mode.startswith("I;16") else 32
  return bits


def _raw_mode(tile) -> str:
  """The raw mode of one ``img.tile`` entry ("RGB;16B", "F;32F", ...), or ""."""
  args = tile[3] if len(tile) > 3 else None
  if isinstance(args, tuple) and args:
    args = args[0]
  return args if isinstance(args, str) else ""


def _deep_message(path: str, img: Image.Image, bits: int) -> str:
  raw = _raw_mode(img.tile[0]) if img.tile else ""
  kind = "float" if img.mode == "F" or raw.startswith("F;") else f"{bits}-bit"
  layout = {"LA": "gray + alpha", "RGB": "RGB", "RGBA": "RGBA"}.get(
      (raw or img.mode).split(";")[0], "gray")
  out = shlex.quote(os.path.splitext(path)[0] + "_8bit.png")
  return (f"image file {path!r} has {kind} samples ({layout}, {img.format} format); only "
          "8-bit images are read, so that no precision is dropped silently. Convert it "
          f"first, e.g. {DEEP_HINT.format(path=shlex.quote(path), out=out)}")


def _to_array(img: Image.Image, path: str) -> np.ndarray:
  """A decoded Pillow image -> uint8 [H, W, 1 or 3]."""
  mode = img.mode
  if mode == "P":
    img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    mode = img.mode
  if mode == "PA":
    img = img.convert("RGBA")
    mode = "RGBA"
  if mode in ("LA", "RGBA"):
    arr = np.asarray(img)
    if np.any(arr[..., -1] != 255):
      raise ValueError(
          f"image file {path!r} has transparent pixels (mode {img.mode}); supported "
          f"modes are {', '.join(SUPPORTED_MODES)}. Flatten it onto a background first.")
    return np.ascontiguousarray(arr[..., :-1]) if mode == "RGBA" else arr[..., :1].copy()
  if mode == "1":
    return (np.asarray(img, dtype=np.uint8) * 255)[..., None]
  if mode == "L":
    return np.asarray(img, dtype=np.uint8)[..., None].copy()
  if mode == "RGB":
    return np.asarray(img, dtype=np.uint8).copy()
  raise ValueError(
      f"image file {path!r} has unsupported mode {mode!r}; "
      f"supported modes are {', '.join(SUPPORTED_MODES)}")


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
  """Convert a uint8 image to ``channels`` channels.

  Gray -> RGB repeats the channel; RGB -> gray is ITU-R BT.601 luma
  (0.299 R + 0.587 G + 0.114 B), rounded to the nearest integer.

  Args:
    image: uint8 ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]``.
    channels: 1 or 3.

  Returns:
    uint8 ``[H, W, channels]``.
  """
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels}")
  if image.dtype != np.uint8:
    raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f"expected an image [H, W, 1 or 3], got shape {image.shape}")
  c = image.shape[-1]
  if c == channels:
    return image
  if channels == 3:
    return np.repeat(image, 3, axis=-1)
  luma = image.astype(np.float64) @ _LUMA
  return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]


def check_size(shape: Sequence[int], crop: tuple[int, int], name: str) -> None:
  """Raise ValueError unless an image of ``shape`` [H, W, C] fits a ``crop`` (h, w)."""
  h, w = int(shape[0]), int(shape[1])
  if h < crop[0] or w < crop[1]:
    raise ValueError(
        f"image {name!r} is {h}x{w}, smaller than the {crop[0]}x{crop[1]} crop; "
        "images are never upscaled: choose a crop size of at most "
        f"{h}x{w} or remove the image")


# -- writing ------------------------------------------------------------------------------------

def to_uint8(image) -> np.ndarray:
  """Float [..., H, W, C] in [0, 1] -> uint8, rounded; values outside [0, 1] are clipped (for
  display). C = 1 becomes [..., H, W] so that Pillow writes a grayscale image."""
  x = np.round(np.clip(np.asarray(image, np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
  return x[..., 0] if x.shape[-1] == 1 else x


def image_grid(images, columns: int | None = None, pad: int = 2, pad_value: float = 1.0
               ) -> np.ndarray:
  """Tiles images [N, H, W, C] into one [rows*(H+pad)-pad, cols*(W+pad)-pad, C] image.

  Args:
    images: float [N, H, W, C].
    columns: images per row (default: the smallest square that holds N).
    pad: pixels between images; ``pad_value`` fills them and any empty cells.
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f"image_grid takes images [N, H, W, C] with N >= 1, got {images.shape}")
  n, h, w, c = images.shape
  cols = columns or int(np.ceil(np.sqrt(n)))
  rows = -(-n // cols)
  grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), pad_value, np.float32)
  for i, img in enumerate(images):
    r, q = divmod(i, cols)
    grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = img
  return grid


def captioned(image, caption: str, min_width: int = 512, max_zoom: int = 8) -> np.ndarray:
  """``image`` [H, W, C] enlarged for a person and labelled: nearest-neighbour upscaled by the
  whole factor (at most ``max_zoom``) that makes it at least ``min_width`` wide (28-pixel digits
  stay sharp squares), with ``caption`` in black on a white strip below, wrapped to the width.
  Returns float [H', W', C] in [0, 1]."""
  from PIL import ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top
  image = np.asarray(image, np.float32)
  h, w, c = image.shape
  zoom = max(1, min(max_zoom, -(-min_width // w)))
  image = np.repeat(np.repeat(image, zoom, axis=0), zoom, axis=1)
  font = ImageFont.load_default()
  probe = ImageDraw.Draw(Image.new("L", (1, 1)))
  width, lines = w * zoom, []
  for word in caption.split():
    trial = f"{lines[-1]} {word}" if lines else word
    if lines and probe.textlength(trial, font=font) <= width - 8:
      lines[-1] = trial
    else:
      lines.append(word)
  line_height = 14
  strip = Image.new("L", (width, 6 + line_height * len(lines)), 255)
  draw = ImageDraw.Draw(strip)
  for i, line in enumerate(lines):
    draw.text((4, 3 + i * line_height), line, fill=0, font=font)
  text = np.asarray(strip, np.float32)[..., None] / 255.0
  return np.concatenate([image, np.repeat(text, c, axis=-1)], axis=0)


def save_png(path: str | os.PathLike, image) -> None:
  """Writes float [H, W, C] in [0, 1] (C = 1 or 3) as an 8-bit PNG."""
  Image.fromarray(to_uint8(image)).save(path, format="PNG")
