"""Partitioning images into blocks, pooling, and the 8 isometries of a square block.

Shared by the collage operator (``collage.ops.collage``) and the PIFS codec
(``collage.ops.pifs``). Pure ``jnp`` functions; images are ``[B, H, W, C]``.

Isometry numbering (the dihedral group D4 acting on a block's two spatial axes):
  k = 0, 1, 2, 3: rotation by k * 90 degrees counter-clockwise (``jnp.rot90`` semantics);
  k = 4, 5, 6, 7: mirror left-right, then rotate by (k - 4) * 90 degrees.
Each of the 8 appears exactly once. Rotations by 90/270 degrees (k = 1, 3, 5, 7) need
square blocks.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from einops import rearrange

NUM_ISOMETRIES = 8
# Isometries that keep a non-square block's shape: identity, rot180, mirror LR, mirror UD.
SHAPE_PRESERVING = (0, 2, 4, 6)


def _pair(k) -> tuple[int, int]:
  return (int(k), int(k)) if isinstance(k, int) else (int(k[0]), int(k[1]))


def check_tiles(height: int, width: int, bh: int, bw: int, what: str = "block") -> None:
  """Raise ValueError unless ``bh x bw`` blocks tile a ``height x width`` image."""
  if bh <= 0 or bw <= 0:
    raise ValueError(f"{what} size must be positive, got {bh}x{bw}")
  if height % bh or width % bw:
    raise ValueError(
        f"{what} size {bh}x{bw} does not tile a {height}x{width} image; "
        f"valid {what} heights divide {height} and widths divide {width}")


def to_blocks(z: jnp.ndarray, bh: int, bw: int) -> jnp.ndarray:
  """Non-overlapping blocks. z: [B, H, W, C] -> [B, H//bh, W//bw, bh, bw, C]."""
  check_tiles(z.shape[1], z.shape[2], bh, bw)
  return rearrange(z, "b (nh bh) (nw bw) c -> b nh nw bh bw c", bh=bh, bw=bw)


def from_blocks(blocks: jnp.ndarray) -> jnp.ndarray:
  """Inverse of :func:`to_blocks`. blocks: [B, nh, nw, bh, bw, C] -> [B, nh*bh, nw*bw, C]."""
  return rearrange(blocks, "b nh nw bh bw c -> b (nh bh) (nw bw) c")


def strided_blocks(z: jnp.ndarray, bh: int, bw: int, sh: int, sw: int) -> jnp.ndarray:
  """Possibly overlapping blocks at a stride. z: [B, H, W, C] -> [B, nh, nw, bh, bw, C]
  with nh = (H - bh) // sh + 1, nw = (W - bw) // sw + 1."""
  b, h, w, c = z.shape
  if bh > h or bw > w:
    raise ValueError(f"block {bh}x{bw} is larger than the {h}x{w} image")
  if sh <= 0 or sw <= 0:
    raise ValueError(f"stride must be positive, got {sh}x{sw}")
  if sh == bh and sw == bw and h % bh == 0 and w % bw == 0:
    return to_blocks(z, bh, bw)
  nh, nw = (h - bh) // sh + 1, (w - bw) // sw + 1
  rows = jnp.arange(nh)[:, None] * sh + jnp.arange(bh)[None, :]  # [nh, bh]
  cols = jnp.arange(nw)[:, None] * sw + jnp.arange(bw)[None, :]  # [nw, bw]
  out = z[:, rows[:, None, :, None], cols[None, :, None, :], :]  # [B, nh, nw, bh, bw, C]
  return out


def mean_pool(z: jnp.ndarray, k: int | Sequence[int]) -> jnp.ndarray:
  """Average over k x k windows. z: [..., H, W, C] -> [..., H//kh, W//kw, C]."""
  kh, kw = _pair(k)
  *lead, h, w, c = z.shape
  check_tiles(h, w, kh, kw, "pooling window")
  z = z.reshape(*lead, h // kh, kh, w // kw, kw, c)
  return z.mean(axis=(-4, -2))


def upsample_nearest(z: jnp.ndarray, k: int | Sequence[int]) -> jnp.ndarray:
  """Repeat each pixel k x k times. z: [..., H, W, C] -> [..., H*kh, W*kw, C]."""
  kh, kw = _pair(k)
  return jnp.repeat(jnp.repeat(z, kh, axis=-3), kw, axis=-2)


def upsample_smooth(z: jnp.ndarray, k: int | Sequence[int]) -> jnp.ndarray:
  """Bilinear upsampling by k, corrected so that ``mean_pool(result, k) == z`` exactly.

  ``lin + upsample_nearest(z - mean_pool(lin, k), k)`` with ``lin`` the bilinear (half-pixel
  centres, edge-clamped) upsampling of z: as smooth as bilinear where the image is smooth,
  and still consistent with mean-pooling, like nearest. z: [..., H, W, C] -> [..., H*kh,
  W*kw, C].
  """
  kh, kw = _pair(k)
  if kh == kw == 1:
    return z
  *lead, h, w, c = z.shape
  lin = jax.image.resize(z, (*lead, h * kh, w * kw, c), method="linear")
  return lin + upsample_nearest(z - mean_pool(lin, (kh, kw)), (kh, kw))


def isometry(x: jnp.ndarray, k: int) -> jnp.ndarray:
  """Apply isometry ``k`` (0..7, see module doc) to axes (-3, -2) of x: [..., h, w, C]."""
  if not 0 <= k < NUM_ISOMETRIES:
    raise ValueError(f"isometry index must be in 0..7, got {k}")
  h, w = x.shape[-3], x.shape[-2]
  if k % 2 == 1 and h != w:
    raise ValueError(
        f"isometry {k} (a 90-degree rotation) needs square blocks, got {h}x{w}; "
        f"valid isometries for non-square blocks: {SHAPE_PRESERVING}")
  if k >= 4:
    x = jnp.flip(x, axis=-2)
  return jnp.rot90(x, k=k % 4, axes=(-3, -2))


def isometries(x: jnp.ndarray, which: Sequence[int] = tuple(range(NUM_ISOMETRIES))) -> jnp.ndarray:
  """Stack of isometric copies. x: [..., h, w, C] -> [..., len(which), h, w, C]."""
  which = tuple(int(k) for k in which)
  if len(set(which)) != len(which):
    raise ValueError(f"isometries must be distinct, got {which}")
  return jnp.stack([isometry(x, k) for k in which], axis=-4)
