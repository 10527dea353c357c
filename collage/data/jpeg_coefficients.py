"""JPEG files as quantized DCT coefficients, through libjpeg itself (the ``jpeglib`` package).

``jpeglib`` (Butora and Bas, https://jpeglib.readthedocs.io) wraps the IJG libjpeg and exposes the
coefficient arrays it stores: reading a JPEG gives them without decoding pixels, and writing
coefficients produces a baseline JPEG file any viewer opens. Coefficients here are in the layout
of ``collage.ops.jpeg``: per component int32 [H_b, W_b, 64] in zig-zag order, (Y, Cb, Cr) with
4:2:0 chroma or (Y,) for gray; quantization tables [64] in zig-zag order.

    comps, tables = read_coefficients("photo.jpg")            # a folder of JPEGs is a dataset
    comps, tables = coefficients_from_pixels(rgb_uint8, 75)   # PNG pixels through libjpeg
    write_jpeg("sample.jpg", comps, tables)                   # a generated sample as a real file
    nbytes = entropy_coded_bytes(comps, tables)               # libjpeg's optimized Huffman size
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from collage.ops import jpeg as jpeg_ops


def _jpeglib():
  import jpeglib  # pylint: disable=g-import-not-at-top
  return jpeglib


def _to_components(dct) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
  """jpeglib's [H_b, W_b, 8, 8] natural-order blocks -> our zig-zag [H_b, W_b, 64] arrays."""
  zz = jpeg_ops.zigzag(8)
  planes = [dct.Y] + ([dct.Cb, dct.Cr] if dct.has_chrominance else [])
  comps = tuple(np.asarray(p, np.int32).reshape(*p.shape[:2], 64)[..., zz] for p in planes)
  qt = np.asarray(dct.qt, np.int32).reshape(-1, 64)
  numbers = list(np.asarray(dct.quant_tbl_no).reshape(-1))[:len(planes)]
  tables = tuple(qt[int(n)][zz] for n in numbers)
  return comps, tables


def read_coefficients(path: str | os.PathLike
                      ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
  """The quantized coefficients and tables stored in a baseline or progressive JPEG file.

  Returns:
    (components, tables): int32 [H_b, W_b, 64] zig-zag per component, int32 [64] zig-zag per
    component.

  Raises:
    ValueError: the file is not a JPEG, or is not gray or YCbCr 4:2:0 with 8x8 blocks.
  """
  path = os.fspath(path)
  try:
    dct = _jpeglib().read_dct(path)
    dct.load()
  except Exception as e:  # jpeglib raises plain IOError/RuntimeError from libjpeg's messages
    raise ValueError(f"{path}: not a readable JPEG file ({e})") from e
  comps, tables = _to_components(dct)
  if len(comps) == 3:
    (yh, yw, _), (ch, cw, _) = comps[0].shape, comps[1].shape
    if (yh, yw) != (2 * ch, 2 * cw) or comps[2].shape != comps[1].shape:
      raise ValueError(f"{path}: chroma is not 4:2:0 (Y blocks {yh}x{yw}, Cb blocks {ch}x{cw}); "
                       "only gray and YCbCr 4:2:0 JPEGs are supported")
  return comps, tables


def coefficients_from_pixels(pixels: np.ndarray, quality: int
                             ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
  """libjpeg's quantized coefficients of an 8-bit image at an IJG quality.

  Args:
    pixels: uint8 [H, W, 3] RGB (coded as YCbCr 4:2:0) or [H, W, 1] gray; H, W multiples of 16
      (colour) or 8 (gray), so that libjpeg pads nothing.
    quality: 1..100.
  """
  pixels = np.ascontiguousarray(pixels)
  if pixels.dtype != np.uint8:
    raise ValueError(f"pixels must be uint8, got {pixels.dtype}")
  jpeg_ops.check_shape(*pixels.shape, 8)
  quality = jpeg_ops.check_quality(quality)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "x.jpg")
    jl = _jpeglib()
    space = jl.JCS_RGB if pixels.shape[-1] == 3 else jl.JCS_GRAYSCALE
    jl.from_spatial(pixels, in_color_space=space).write_spatial(path, qt=quality)
    return read_coefficients(path)


def _natural_blocks(zz: np.ndarray) -> np.ndarray:
  inverse = np.argsort(jpeg_ops.zigzag(8))
  blocks = np.asarray(zz)[..., inverse].reshape(*zz.shape[:2], 8, 8)
  return np.ascontiguousarray(blocks, dtype=np.int16)  # jpeglib hands the buffer to libjpeg


def write_jpeg(path: str | os.PathLike, components, tables, optimize: bool = False) -> None:
  """Writes coefficients as a JPEG file (libjpeg entropy-codes them; lossless). The file is
  baseline when every table entry is at most 255 (IJG quality >= 25).

  Args:
    components: (Y, Cb, Cr) 4:2:0 or (Y,) int [H_b, W_b, 64] zig-zag, values in -2047..2047
      (the AC range of 8-bit baseline JPEG; DC -2048..2047).
    tables: int [64] zig-zag per component, 1..32767 (chroma components share the second table).
    optimize: optimized Huffman tables (libjpeg's two-pass coding) instead of the standard ones.

  Raises:
    ValueError: coefficients outside baseline JPEG's range or tables outside 1..255.
  """
  comps = [np.asarray(c) for c in components]
  for c in comps:
    if c.shape[-1] != 64:
      raise ValueError(f"JPEG files hold 8x8 blocks (64 coefficients), got {c.shape[-1]}")
    if c.size and (c.min() < -2048 or c.max() > 2047):
      raise ValueError(f"coefficients {c.min()}..{c.max()} are outside baseline JPEG's "
                       "-2048..2047")
  tabs = [np.asarray(t, np.int64) for t in tables]
  if any(t.min() < 1 or t.max() > 32767 for t in tabs):
    raise ValueError("quantization tables must be in 1..32767 (1..255 for baseline JPEG)")
  inverse = np.argsort(jpeg_ops.zigzag(8))
  qt = np.stack([tabs[0][inverse].reshape(8, 8)] + (
      [tabs[1][inverse].reshape(8, 8)] if len(tabs) > 1 else []))
  qt = np.ascontiguousarray(qt, dtype=np.uint16)
  blocks = [_natural_blocks(c) for c in comps]
  jl = _jpeglib()
  if len(blocks) == 3:
    dct = jl.from_dct(Y=blocks[0], Cb=blocks[1], Cr=blocks[2], qt=qt,
                      quant_tbl_no=np.array([0, 1, 1]))
  else:
    dct = jl.from_dct(Y=blocks[0], qt=qt, quant_tbl_no=np.array([0]))
  dct.write_dct(os.fspath(path), flags=["+OPTIMIZE_CODING"] if optimize else [])


def entropy_coded_bytes(components, tables) -> int:
  """Bytes of libjpeg's entropy-coded data for these coefficients with optimized Huffman
  tables: the baseline file minus its headers (everything up to the end of the SOS header, the
  two EOI bytes), i.e. the cost of the coefficients alone."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "x.jpg")
    write_jpeg(path, components, tables, optimize=True)
    with open(path, "rb") as f:
      data = f.read()
  return len(data) - scan_start(data) - 2


def scan_start(data: bytes) -> int:
  """Offset of the first entropy-coded byte of a baseline JPEG (just past the SOS header)."""
  i = 2
  while i + 4 <= len(data):
    if data[i] != 0xFF:
      raise ValueError("not a JPEG marker stream")
    marker = data[i + 1]
    length = (data[i + 2] << 8) | data[i + 3]
    if marker == 0xDA:
      return i + 2 + length
    i += 2 + length
  raise ValueError("no SOS marker: not a complete JPEG file")


def crop_cells(components, top: int, left: int, rows: int, cols: int):
  """A window of whole MCU cells of a component tuple (a cell: 2x2 luma blocks and one chroma
  block of each for 4:2:0, one block for gray); ``top``, ``left``, ``rows``, ``cols`` in cells."""
  color = len(components) == 3
  s = 2 if color else 1
  y = components[0][s * top:s * (top + rows), s * left:s * (left + cols)]
  return (y,) + tuple(c[top:top + rows, left:left + cols] for c in components[1:])


class JpegFolderSource:
  """Every .jpg / .jpeg under a folder, read as coefficients (no pixel decoding).

  Element i: ``{"components": (...), "tables": (...), "name": path}`` as
  :func:`read_coefficients` returns them (read on access).
  """

  EXTENSIONS = (".jpg", ".jpeg")

  def __init__(self, folder: str | os.PathLike):
    self.folder = os.fspath(folder)
    if not os.path.isdir(self.folder):
      raise NotADirectoryError(f"JPEG folder {self.folder!r} does not exist")
    self.paths = sorted(os.path.join(root, f) for root, _, files in os.walk(self.folder)
                        for f in files if f.lower().endswith(self.EXTENSIONS))
    if not self.paths:
      raise ValueError(f"no .jpg / .jpeg files under {self.folder!r}")

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict:
    path = self.paths[index]
    comps, tables = read_coefficients(path)
    return {"components": comps, "tables": tables, "name": path}

  def __repr__(self) -> str:
    return f"JpegFolderSource({self.folder!r}, {len(self)} files)"
