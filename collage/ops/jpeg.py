"""JPEG's lossy transform in jnp: YCbCr, 4:2:0 subsampling, block DCT, quantization, zig-zag.

The forward path follows the Independent JPEG Group's libjpeg step by step, so that for B = 8
the quantized coefficients are the ones libjpeg stores for the same pixels and quality (facts
from the libjpeg sources' documented arithmetic, ``jccolor.c``, ``jcsample.c``, ``jcdctmgr.c``,
and ITU-T T.81; the code is our own):

  1. colour: 8-bit RGB -> 8-bit YCbCr with libjpeg's 16-bit fixed-point JFIF matrix, rounded
     as libjpeg rounds (Y half up, Cb/Cr just under half up);
  2. 4:2:0: each 2x2 chroma block averaged as ``(a + b + c + d + bias) >> 2``, the bias
     alternating 1, 2 along a row (libjpeg's ordered rounding);
  3. level shift by 128, the orthonormal B x B DCT-II per block (T.81 A.3.3: for B = 8 the
     orthonormal 2-D DCT is JPEG's FDCT);
  4. quantization: ``8 F`` rounded to an integer (libjpeg's DCT output scale), then divided by
     ``8 Q`` and rounded half up in magnitude (libjpeg's quantizer).

libjpeg's integer ("islow") DCT is a fixed-point approximation of step 3, so its coefficients
and ours can differ by one where ``F / Q`` lies next to a rounding boundary: on Kodak they agree
on 99.97% of luma coefficients at quality 50 and 99.5% at quality 95, never by more than one
(``tests/ops/test_jpeg.py``).

The inverse (:func:`decode_pixels`) mirrors libjpeg's decoder: dequantize, inverse DCT, round and
clamp to 8 bits, "fancy" (triangle-filter) 2x chroma upsampling (``jdsample.c``) and the fixed-point
YCbCr -> RGB of ``jdcolor.c``; Pillow's decode of a file holding the same coefficients agrees
with it to within the inverse DCT's rounding.

Block sizes 16 and 32 (the paper's larger images) have no libjpeg counterpart: their tables
are the Annex K tables repeated B/8 times along each axis and multiplied by B/8, so that a
coefficient keeps the precision of the 8x8 frequency it refines (an orthonormal DC grows as B).

Shapes: pixels uint8-valued [H, W, 3] (RGB) or [H, W, 1] (gray), H and W multiples of the
"MCU" (2B for 4:2:0 colour, B for gray). Coefficients of one component: int32 [H_b, W_b, B*B]
in zig-zag order, H_b x W_b blocks.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from collage.ops.dct import dct_matrix
from third_party.jpeg import annex_k

BLOCK_SIZES = (8, 16, 32)
COMPONENTS_COLOR = ("Y", "Cb", "Cr")
COMPONENTS_GRAY = ("Y",)


def check_block(block: int) -> int:
  """``block`` if it is a supported block side.

  Raises:
    ValueError: naming the valid sides.
  """
  if int(block) not in BLOCK_SIZES:
    raise ValueError(f"block size {block} is not supported; valid: {BLOCK_SIZES}")
  return int(block)


def check_quality(quality: int) -> int:
  """``quality`` if it is in 1..100 (the IJG quality scale).

  Raises:
    ValueError: a quality outside 1..100.
  """
  if not (isinstance(quality, (int, np.integer)) and 1 <= int(quality) <= 100):
    raise ValueError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
  return int(quality)


@functools.lru_cache(maxsize=None)
def zigzag(block: int = 8) -> np.ndarray:
  """int32 [B*B]: entry k is the row-major index of the k-th coefficient in zig-zag order.

  For B = 8 this is T.81 Figure A.6; larger B continue the same rule: anti-diagonals from the
  DC outwards, alternating direction, the first one leaving the DC to the right.
  """
  block = check_block(block)
  order = []
  for s in range(2 * block - 1):
    rows = range(max(0, s - block + 1), min(s, block - 1) + 1)
    cells = [(r, s - r) for r in rows]          # r increasing: down-left along the diagonal
    order.extend(cells if s % 2 else cells[::-1])
  out = np.array([r * block + c for r, c in order], np.int32)
  out.setflags(write=False)
  return out


def ijg_scale(quality: int) -> int:
  """libjpeg's percentage scale of the Annex K tables for ``quality`` in 1..100."""
  quality = check_quality(quality)
  return 5000 // quality if quality < 50 else 200 - 2 * quality


@functools.lru_cache(maxsize=None)
def quant_table(quality: int, chroma: bool = False, block: int = 8) -> np.ndarray:
  """int32 [B, B] quantization table in natural order (row = vertical frequency).

  For B = 8 it is libjpeg's table: Annex K's table scaled by :func:`ijg_scale`,
  ``(base * scale + 50) // 100`` clamped to 1..32767 (libjpeg's default, ``force_baseline``
  off: below quality 25 some entries exceed 255 and files carry 16-bit tables).
  """
  block = check_block(block)
  base = np.array(annex_k.CHROMINANCE if chroma else annex_k.LUMINANCE, np.int64)
  table = np.clip((base * ijg_scale(quality) + 50) // 100, 1, 32767)
  rep = block // 8
  table = np.repeat(np.repeat(table, rep, 0), rep, 1) * rep
  out = table.astype(np.int32)
  out.setflags(write=False)
  return out


def quant_zigzag(quality: int, chroma: bool = False, block: int = 8) -> np.ndarray:
  """int32 [B*B]: :func:`quant_table` in zig-zag order."""
  return quant_table(quality, chroma, block).reshape(-1)[zigzag(block)]


# -- colour ---------------------------------------------------------------------------------

def _fix(x: float) -> int:
  return int(x * 65536 + 0.5)


def rgb_to_ycbcr_8bit(rgb: jax.Array) -> jax.Array:
  """libjpeg's RGB -> YCbCr on 8-bit samples. rgb: int [..., 3] in 0..255 -> int32 [..., 3]."""
  r, g, b = (rgb[..., i].astype(jnp.int32) for i in range(3))
  half, offset = 1 << 15, 128 << 16
  y = (_fix(0.299) * r + _fix(0.587) * g + _fix(0.114) * b + half) >> 16
  cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + offset + half - 1) >> 16
  cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + offset + half - 1) >> 16
  return jnp.stack([y, cb, cr], axis=-1)


def ycbcr_to_rgb_8bit(ycc: jax.Array) -> jax.Array:
  """libjpeg's YCbCr -> RGB on 8-bit samples, clamped. ycc: int [..., 3] -> int32 [..., 3]."""
  y, cb, cr = (ycc[..., i].astype(jnp.int32) for i in range(3))
  cb, cr = cb - 128, cr - 128
  half = 1 << 15
  r = y + ((_fix(1.402) * cr + half) >> 16)
  g = y + ((-_fix(0.34414) * cb - _fix(0.71414) * cr + half) >> 16)
  b = y + ((_fix(1.772) * cb + half) >> 16)
  return jnp.clip(jnp.stack([r, g, b], axis=-1), 0, 255)


def downsample_2x2(x: jax.Array) -> jax.Array:
  """libjpeg's h2v2 downsampling. x: int [H, W] (H, W even) -> int32 [H/2, W/2]."""
  h, w = x.shape
  s = x.astype(jnp.int32).reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))
  bias = jnp.where(jnp.arange(w // 2) % 2 == 0, 1, 2)
  return (s + bias[None, :]) >> 2


def upsample_2x2_fancy(x: jax.Array) -> jax.Array:
  """libjpeg's h2v2 "fancy" upsampling (triangle filter, edges replicated).

  x: int [h, w] -> int32 [2h, 2w]. Each output sample is ``(9 a + 3 b + 3 c + d)/16`` of its
  four nearest input samples, with libjpeg's alternating rounding offsets 8 and 7.
  """
  x = x.astype(jnp.int32)
  up = jnp.concatenate([x[:1], x[:-1]], axis=0)
  down = jnp.concatenate([x[1:], x[-1:]], axis=0)
  # Vertical sums, output rows 2i (nearer the row above) and 2i+1.
  rows = jnp.stack([3 * x + up, 3 * x + down], axis=1).reshape(2 * x.shape[0], x.shape[1])
  left = jnp.concatenate([rows[:, :1], rows[:, :-1]], axis=1)
  right = jnp.concatenate([rows[:, 1:], rows[:, -1:]], axis=1)
  even = (3 * rows + left + 8) >> 4
  odd = (3 * rows + right + 7) >> 4
  return jnp.stack([even, odd], axis=2).reshape(rows.shape[0], 2 * rows.shape[1])


def upsample_2x2_nearest(x: jax.Array) -> jax.Array:
  """x: [h, w] -> [2h, 2w], each sample repeated 2x2 (a plain alternative to the fancy one)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=0), 2, axis=1)


# -- block DCT ------------------------------------------------------------------------------

def to_blocks(x: jax.Array, block: int) -> jax.Array:
  """x: [H, W] -> [H/B, W/B, B, B] (B x B tiles, row-major)."""
  h, w = x.shape
  return x.reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3)


def from_blocks(b: jax.Array) -> jax.Array:
  """[H_b, W_b, B, B] -> [H_b * B, W_b * B]; inverse of :func:`to_blocks`."""
  hb, wb, bs, _ = b.shape
  return b.transpose(0, 2, 1, 3).reshape(hb * bs, wb * bs)


def block_dct(x: jax.Array, block: int) -> jax.Array:
  """Orthonormal 2-D DCT-II of every B x B block. x: float [H, W] -> [H_b, W_b, B, B]."""
  d = jnp.asarray(dct_matrix(block))
  return jnp.einsum("uh,ijhw,vw->ijuv", d, to_blocks(x, block), d,
                    precision=jax.lax.Precision.HIGHEST)


def block_idct(c: jax.Array) -> jax.Array:
  """Inverse of :func:`block_dct`. c: float [H_b, W_b, B, B] -> [H, W]."""
  d = jnp.asarray(dct_matrix(c.shape[-1]))
  return from_blocks(jnp.einsum("uh,ijuv,vw->ijhw", d, c, d,
                                precision=jax.lax.Precision.HIGHEST))


def quantize(coeffs: jax.Array, table: jax.Array) -> jax.Array:
  """libjpeg's quantization of DCT coefficients. float [..., B, B] -> int32 [..., B, B].

  libjpeg's integer DCT outputs ``X = 8 F`` rounded to an integer; the quantizer then rounds
  ``X / (8 Q)`` half up in magnitude. Rounding ``8 F`` first, as libjpeg does, halves the
  disagreements with libjpeg at high qualities (Kodak at quality 95: 98.2% -> 99.5% agreement).
  """
  x = jnp.round(8.0 * coeffs)
  q = jnp.floor((jnp.abs(x) + 4.0 * table) / (8.0 * table))
  return (jnp.sign(x) * q).astype(jnp.int32)


def _to_zigzag(blocks: jax.Array) -> jax.Array:
  hb, wb, bs, _ = blocks.shape
  return blocks.reshape(hb, wb, bs * bs)[..., jnp.asarray(zigzag(bs))]


def _from_zigzag(zz: jax.Array) -> jax.Array:
  hb, wb, n = zz.shape
  bs = int(round(n ** 0.5))
  inverse = np.argsort(zigzag(bs))
  return zz[..., jnp.asarray(inverse)].reshape(hb, wb, bs, bs)


def check_shape(height: int, width: int, channels: int, block: int) -> None:
  """Raises ValueError unless an image of this shape can be transformed whole."""
  block = check_block(block)
  if channels not in (1, 3):
    raise ValueError(f"images must have 1 (gray) or 3 (RGB) channels, got {channels}")
  mcu = 2 * block if channels == 3 else block
  if height % mcu or width % mcu or height == 0 or width == 0:
    kind = "4:2:0 colour" if channels == 3 else "gray"
    raise ValueError(f"a {kind} image with {block}x{block} blocks must have height and width "
                     f"that are positive multiples of {mcu}, got {height}x{width}; crop or pad it")


def encode_pixels(pixels: jax.Array, quality: int, block: int = 8) -> tuple[jax.Array, ...]:
  """Quantized DCT coefficients of an 8-bit image.

  Args:
    pixels: uint8-valued [H, W, 3] RGB or [H, W, 1] gray.
    quality: the IJG quality 1..100.
    block: block side B (8, 16 or 32).

  Returns:
    One int32 [H_b, W_b, B*B] zig-zag array per component: (Y, Cb, Cr) for RGB, with Cb and Cr
    at half resolution (4:2:0), or (Y,) for gray.
  """
  h, w, ch = pixels.shape
  check_shape(h, w, ch, block)
  if ch == 3:
    ycc = rgb_to_ycbcr_8bit(pixels)
    planes = [ycc[..., 0], downsample_2x2(ycc[..., 1]), downsample_2x2(ycc[..., 2])]
  else:
    planes = [pixels[..., 0].astype(jnp.int32)]
  out = []
  for i, plane in enumerate(planes):
    table = jnp.asarray(quant_table(quality, i > 0, block), jnp.float32)
    coeffs = block_dct(plane.astype(jnp.float32) - 128.0, block)
    out.append(_to_zigzag(quantize(coeffs, table)))
  return tuple(out)


def decode_plane(zz: jax.Array, table: jax.Array) -> jax.Array:
  """One component's coefficients -> its 8-bit samples, as libjpeg's decoder makes them.

  zz: int [H_b, W_b, B*B] zig-zag; table: [B, B] natural order -> int32 [H_b * B, W_b * B].
  """
  coeffs = _from_zigzag(zz).astype(jnp.float32) * jnp.asarray(table, jnp.float32)
  return jnp.clip(jnp.floor(block_idct(coeffs) + 128.5), 0, 255).astype(jnp.int32)


def decode_pixels(components: tuple[jax.Array, ...], quality: int | None = None,
                  tables: tuple[jax.Array, ...] | None = None) -> jax.Array:
  """The decoded image of quantized coefficients (the inverse of :func:`encode_pixels`).

  Args:
    components: (Y, Cb, Cr) or (Y,) zig-zag int arrays as :func:`encode_pixels` returns.
    quality: the quality whose tables dequantize (or give ``tables``: [B, B] per component).

  Returns:
    float32 [H, W, 3 or 1] in [0, 1] (exactly k / 255).
  """
  bs = int(round(components[0].shape[-1] ** 0.5))
  if tables is None:
    if quality is None:
      raise ValueError("decode_pixels needs quality or tables")
    tables = tuple(quant_table(quality, i > 0, bs) for i in range(len(components)))
  planes = [decode_plane(c, t) for c, t in zip(components, tables)]
  if len(planes) == 1:
    return (planes[0][..., None] / 255.0).astype(jnp.float32)
  cb, cr = upsample_2x2_fancy(planes[1]), upsample_2x2_fancy(planes[2])
  rgb = ycbcr_to_rgb_8bit(jnp.stack([planes[0], cb, cr], axis=-1))
  return (rgb / 255.0).astype(jnp.float32)
