"""Images as the DCTransformer's sparse coordinate lists, and back.

An 8-bit image is fitted to a square (:func:`fit_image`; a JPEG file's coefficients are cropped in
whole cells by :func:`fit_components`), quantized by libjpeg (``jpeglib``) or the in-JAX transform
at ``data.quality``, and listed as ``collage.ops.sparse_dct`` entries: ``{"ranks", "positions",
"values": int32 [L], "length": int32 []}``, one (channel rank, position, value) triple per
non-zero coefficient, rank-major. :class:`Coder` does both directions: sequences for training,
and a DCT image back to pixels or to a baseline ``.jpg``.

    coder = Coder(config)                     # config.data and config.model fields, see Coder
    seq = coder.sequence(fit_image(pixels, coder.size, None))
    coder.write_jpeg("sample.jpg", dct_image)  # [rows, cols, C] coefficients as a real file
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import ml_collections
import numpy as np

from collage.data import jpeg_coefficients as jc
from collage.ops import jpeg as jpeg_ops
from collage.ops import sparse_dct

TRANSFORMS = ("libjpeg", "jax")


def fit_image(image: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
  """uint8 [h, w, c] -> [size, size, c]: zero-padded (centred) where smaller, cropped (random
  with ``rng``, else central) where larger."""
  h, w = image.shape[:2]
  ph, pw = max(0, size - h), max(0, size - w)
  if ph or pw:
    image = np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    h, w = image.shape[:2]
  if rng is None:
    top, left = (h - size) // 2, (w - size) // 2
  else:
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
  return np.ascontiguousarray(image[top:top + size, left:left + size])


class Coder:
  """Turns 8-bit images into the model's sequences, and sequences back into files and pixels.

  Args:
    config: reads ``data.size``, ``data.channels`` (1 or 3), ``data.quality``, ``data.block``,
      ``data.transform`` ("libjpeg" | "jax"), ``model.order``, ``model.max_len`` (the capacity
      L), ``model.max_value``, ``model.truncate`` and ``model.clip_values``.

  Raises:
    ValueError: an unknown transform, libjpeg with blocks other than 8x8, or a size the block
      layout does not divide.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    d, m = config.data, config.model
    self.size, self.channels = int(d.size), int(d.channels)
    self.quality = jpeg_ops.check_quality(int(d.quality))
    self.block = jpeg_ops.check_block(int(d.block))
    if d.transform not in TRANSFORMS:
      raise ValueError(f"data.transform={d.transform!r} is unknown; valid: {', '.join(TRANSFORMS)}")
    if d.transform == "libjpeg" and self.block != 8:
      raise ValueError(f"data.transform='libjpeg' needs data.block=8 (JPEG files hold 8x8 "
                       f"blocks); use data.transform='jax' for block {self.block}")
    self.transform = d.transform
    jpeg_ops.check_shape(self.size, self.size, self.channels, self.block)
    self.layout = sparse_dct.layout_for(self.size, self.size, self.channels == 3, self.block,
                                        str(m.order))
    self.capacity, self.max_value = int(m.max_len), int(m.max_value)
    self.truncate, self.clip_values = bool(m.truncate), bool(m.clip_values)
    self._jax_encode = jax.jit(functools.partial(jpeg_ops.encode_pixels, quality=self.quality,
                                                 block=self.block))

  def tables(self) -> tuple[np.ndarray, ...]:
    """The quantization tables [B*B] zig-zag, per component."""
    n = 3 if self.channels == 3 else 1
    return tuple(jpeg_ops.quant_zigzag(self.quality, i > 0, self.block) for i in range(n))

  def components(self, pixels: np.ndarray) -> tuple[np.ndarray, ...]:
    """uint8 [size, size, channels] -> the quantized components (libjpeg's or the in-JAX)."""
    if self.transform == "libjpeg":
      comps, tables = jc.coefficients_from_pixels(pixels, self.quality)
      if any(not np.array_equal(a, b) for a, b in zip(tables, self.tables())):
        raise ValueError("libjpeg used other quantization tables than collage.ops.jpeg's")
      return comps
    with jax.ensure_compile_time_eval():
      return tuple(np.asarray(c) for c in self._jax_encode(pixels))

  def sequence(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 image -> {"ranks", "positions", "values": [L], "length": []} (host arrays, also
    when called while a sampler is being traced)."""
    return self.sequence_of(self.components(pixels))

  def sequence_of(self, components) -> dict[str, np.ndarray]:
    """Quantized components -> the sequence (host arrays)."""
    with jax.ensure_compile_time_eval():
      image = np.asarray(sparse_dct.dct_image(components))
    seq = sparse_dct.encode(image, self.layout, self.capacity, truncate=self.truncate,
                            max_value=self.max_value, clip_values=self.clip_values)
    seq.pop("truncated")
    return seq

  def jpeg_bits(self, pixels: np.ndarray) -> float:
    """Bits of libjpeg's optimized-Huffman coding of the image's coefficients (no headers)."""
    return 8.0 * jc.entropy_coded_bytes(self.components(pixels), self.tables())

  def pixels(self, dct_image: jax.Array) -> jax.Array:
    """A DCT image [rows, cols, C] -> float [size, size, channels] in [0, 1] (jnp)."""
    comps = sparse_dct.components_of(dct_image, self.channels == 3)
    tables = tuple(jpeg_ops.quant_table(self.quality, i > 0, self.block)
                   for i in range(len(comps)))
    return jpeg_ops.decode_pixels(comps, tables=tables)

  def write_jpeg(self, path: str, dct_image: np.ndarray) -> None:
    """A DCT image as a baseline .jpg (8x8 blocks only)."""
    comps = sparse_dct.components_of(np.asarray(dct_image), self.channels == 3)
    jc.write_jpeg(path, [np.asarray(c) for c in comps], self.tables())


def fit_components(element: dict[str, Any], coder: Coder, rng: np.random.Generator | None):
  """A JPEG file's components cropped to ``data.size`` in whole cells (random with ``rng``)."""
  comps = element["components"]
  if (len(comps) == 3) != (coder.channels == 3):
    raise ValueError(f"{element['name']}: a {'colour' if len(comps) == 3 else 'gray'} JPEG, "
                     f"but data.channels={coder.channels}")
  rows, cols = coder.layout.grid
  cell = 2 if len(comps) == 3 else 1
  have_r, have_c = comps[0].shape[0] // cell, comps[0].shape[1] // cell
  if have_r < rows or have_c < cols:
    raise ValueError(f"{element['name']}: {8 * cell * have_r}x{8 * cell * have_c} pixels of "
                     f"whole cells, smaller than data.size={coder.size}")
  if rng is None:
    top, left = (have_r - rows) // 2, (have_c - cols) // 2
  else:
    top, left = int(rng.integers(0, have_r - rows + 1)), int(rng.integers(0, have_c - cols + 1))
  return jc.crop_cells(comps, top, left, rows, cols)


def train_element(element: dict[str, Any], rng: np.random.Generator, *, coder: Coder,
                  flip: bool) -> dict[str, np.ndarray]:
  """One training sequence from a source element: a JPEG file's own coefficients
  (``"components"``), or an ``"image"`` fitted at random and mirrored with probability 1/2
  when ``flip``."""
  if "components" in element:
    return coder.sequence_of(fit_components(element, coder, rng))
  image = fit_image(np.asarray(element["image"]), coder.size, rng)
  if flip and rng.random() < 0.5:
    image = np.ascontiguousarray(image[:, ::-1])
  return coder.sequence(image)


def prefix_of(seq: dict[str, np.ndarray], ranks: int, channels: int) -> dict[str, np.ndarray]:
  """The conditioning prefix of a sequence: its entries with rank < ``ranks`` (a prefix,
  since entries are rank-major); ``length`` counts them. The rest is padding (rank
  ``channels``, position and value 0)."""
  n = int(np.sum((seq["ranks"] < ranks) & (np.arange(len(seq["ranks"])) < seq["length"])))
  out = {k: np.array(seq[k]) for k in ("ranks", "positions", "values")}
  out["ranks"][n:], out["positions"][n:], out["values"][n:] = channels, 0, 0
  out["length"] = np.int32(n)
  return out
