"""Per-image crops and dihedral augmentations, in NumPy (host side, inside grain).

All functions take a single image ``[H, W, C]`` (any dtype) and return a view or copy
with the same dtype. Random ones take a ``np.random.Generator``, which grain's
``random_map`` seeds from the pipeline seed and the element's index, so results are
reproducible element by element.

Dihedral numbering matches ``collage.ops.blocks``: k = 0..3 rotate by k * 90 degrees
counter-clockwise; k = 4..7 mirror left-right, then rotate by (k - 4) * 90 degrees.
"""

from __future__ import annotations

import numpy as np

# The dihedral elements that keep an h x w image h x w when h != w:
# identity, rot180, mirror left-right, mirror up-down (= mirror LR then rot180).
SHAPE_PRESERVING = (0, 2, 4, 6)


def random_crop(image: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
  """A uniformly placed ``size`` crop. image: [H, W, C] -> [h, w, C]; needs H >= h, W >= w."""
  h, w = size
  top = int(rng.integers(0, image.shape[0] - h + 1))
  left = int(rng.integers(0, image.shape[1] - w + 1))
  return image[top:top + h, left:left + w]


def center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """The central ``size`` crop (rounding the offset down). [H, W, C] -> [h, w, C]."""
  h, w = size
  top = (image.shape[0] - h) // 2
  left = (image.shape[1] - w) // 2
  return image[top:top + h, left:left + w]


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
  """Apply dihedral element ``k`` in 0..7 (numbering in the module docstring)."""
  if k >= 4:
    image = image[:, ::-1]
  return np.rot90(image, k % 4, axes=(0, 1))


def random_dihedral(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """A uniformly random flip / 90-degree rotation: all 8 for square images, else the 4
  that keep the shape. [H, W, C] -> same shape."""
  if image.shape[0] == image.shape[1]:
    k = int(rng.integers(0, 8))
  else:
    k = SHAPE_PRESERVING[int(rng.integers(0, 4))]
  return dihedral(image, k)


def to_float(image: np.ndarray) -> np.ndarray:
  """uint8 [H, W, C] -> float32 [H, W, C] in [0, 1] (contiguous)."""
  return np.ascontiguousarray(image, dtype=np.float32) * np.float32(1.0 / 255.0)
