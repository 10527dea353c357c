"""Reading image files into uint8 arrays, and converting between channel counts.

The I/O edge of the library: everything here returns ``uint8`` arrays ``[H, W, C]``
with ``C = 1`` (grayscale) or ``C = 3`` (RGB). Inside the library images become
float32 in [0, 1] (see ``collage.data.pipeline``).

Supported Pillow modes (anything else raises ``ValueError`` naming the file):
  "1" (bilevel, read as 0 / 255), "L" (gray), "P" (palette, expanded to RGB),
  "RGB", and "LA" / "RGBA" / "PA" only when every pixel is fully opaque (the alpha
  channel is then dropped; a transparent pixel has no single right colour, so it is an
  error rather than a guess). 16-bit, 32-bit, float and CMYK images are rejected.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

# File extensions ``image_paths`` collects (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SUPPORTED_MODES = ("1", "L", "P", "RGB", "LA (opaque)", "RGBA (opaque)", "PA (opaque)")
# ITU-R BT.601 luma weights for RGB -> gray.
_LUMA = np.array([0.299, 0.587, 0.114], np.float64)


def image_paths(folder: str | os.PathLike) -> list[str]:
  """Every PNG / JPEG file under ``folder`` (recursively), sorted by path.

  Args:
    folder: a directory.

  Returns:
    Absolute paths, sorted, with extensions in ``IMAGE_EXTENSIONS`` (any case).

  Raises:
    FileNotFoundError: ``folder`` does not exist or is not a directory.
    ValueError: ``folder`` holds no PNG / JPEG file.
  """
  folder = os.path.abspath(os.fspath(folder))
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"image folder {folder!r} does not exist or is not a directory")
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
    ValueError: the file is corrupt, truncated, not an image, or in an unsupported
      mode (the message names the file and lists ``SUPPORTED_MODES``).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"image file {path!r} does not exist")
  try:
    with Image.open(path) as img:
      img.load()  # decode now, so truncated files fail here
      return _to_array(img, path)
  except (UnidentifiedImageError, OSError, SyntaxError) as e:
    raise ValueError(f"cannot read image file {path!r}: {e}") from e


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
      f"image file {path!r} has unsupported mode {mode!r} (e.g. 16-bit, float or CMYK); "
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


def save_png(path: str | os.PathLike, image) -> None:
  """Writes float [H, W, C] in [0, 1] (C = 1 or 3) as an 8-bit PNG."""
  Image.fromarray(to_uint8(image)).save(path, format="PNG")
