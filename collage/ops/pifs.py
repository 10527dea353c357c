"""Classical fractal image coding (PIFS): quadtree encoder and resolution-free decoder.

Method: Jacquin (1992), "Image coding based on a fractal theory of iterated contractive
image transformations", IEEE TIP; Fisher (1995), "Fractal Image Compression: Theory and
Application", Springer (the quadtree coder). Each range block of a quadtree partition is
coded as ``s * (P - mean(P)) + o_bar`` with ``P`` a domain block of twice its size,
mean-pooled and transformed by one of 8 isometries (quantizers and error:
:mod:`collage.ops.pifs_search`). Decoding iterates the maps from a flat image; the maps are
defined on block geometry only, so they can be iterated on a grid ``scale`` times finer.

The code (:class:`PIFSCode`) in canonical order, per channel:
  * levels l = 0..L-1 with range size ``max_range >> l``, down to ``min_range``;
  * the nodes of level 0 are the ``(Hp/max_range) x (Wp/max_range)`` blocks of the padded
    image; the nodes of level l+1 are the four children of the split nodes of level l;
    nodes of a level are ordered by raster position (y, then x);
  * ``split``: one flag per node of every level but the last, levels concatenated;
  * ``domain, iso, s_idx, o_idx``: one entry per leaf (unsplit node, and every node of the
    last level), levels concatenated, raster order within a level. ``domain`` indexes the
    level's domain grid in raster order (``domain_grid``) with stride
    ``PIFSParams.stride(size, Hp, Wp)``: ``max(1, size // stride_div)``, doubled while the
    level has more than ``2**domain_cap_log2`` domains (when ``domain_cap_log2 > 0``).
Images are padded by edge replication to a multiple of ``max_range`` (and to at least
``2 * max_range`` so that a domain fits) and cropped back after decoding.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from collage.ops import blocks
from collage.ops.color import rgb_to_ycbcr, ycbcr_to_rgb
from collage.ops.pifs_search import (Quantizer, domain_grid, domain_pool, prepare_domains,
                                     range_batch, search_ranges)


@dataclasses.dataclass(frozen=True)
class PIFSParams:
  """Static parameters shared by encoder and decoder (all stored in the file).

  max_range: largest (root) range block side, a power of two times min_range.
  min_range: smallest range block side (>= 2, even).
  stride_div, domain_cap_log2: the domain stride of a level (:meth:`stride`) is
    max(1, range_size // stride_div), doubled while the level has more than
    2**domain_cap_log2 domains (0: no cap). A cap bounds the search's work per range on
    large images (the domain lattice thins out, as with Fisher 1995's coarser domain pools)
    while small images keep the dense pool; 2**15 with stride_div 2 gives stride = range / 2
    on 8x8 and larger ranges and stride = range on 4x4 ranges of a 512x512 or 768x512 image.
  quant: the contrast/brightness quantizers.
  """
  max_range: int = 16
  min_range: int = 4
  stride_div: int = 1
  quant: Quantizer = Quantizer()
  domain_cap_log2: int = 0

  def validate(self) -> None:
    self.quant.validate()
    if self.min_range < 2 or self.min_range % 2:
      raise ValueError(f"min_range must be an even integer >= 2, got {self.min_range}")
    ratio = self.max_range // self.min_range
    if self.max_range % self.min_range or ratio & (ratio - 1):
      raise ValueError(f"max_range ({self.max_range}) must be min_range ({self.min_range}) "
                       "times a power of two")
    if self.stride_div < 1:
      raise ValueError(f"stride_div must be >= 1, got {self.stride_div}")
    if not 0 <= self.domain_cap_log2 <= 40:
      raise ValueError(f"domain_cap_log2 must be in 0..40, got {self.domain_cap_log2}")

  def sizes(self, min_range: int | None = None) -> list[int]:
    """Range sizes per level, largest first."""
    lo = self.min_range if min_range is None else min_range
    out, b = [], self.max_range
    while b >= lo:
      out.append(b)
      b //= 2
    return out

  def stride(self, size: int, height: int, width: int) -> int:
    """Domain stride of the ``size`` level in a padded ``height`` x ``width`` image."""
    stride = max(1, size // self.stride_div)
    if self.domain_cap_log2:
      cap = 1 << self.domain_cap_log2
      while True:
        nh, nw = domain_grid(height, width, size, stride)
        if nh * nw <= cap:
          break
        stride *= 2
    return stride


@dataclasses.dataclass(frozen=True)
class ChannelCode:
  """One channel's quadtree and maps in canonical order (see module docstring).

  min_range: this channel's smallest range size (chroma may stop earlier).
  split: bool [num_internal_flags]; domain: int32 [leaves]; iso, s_idx, o_idx: int32 [leaves].
  """
  min_range: int
  split: np.ndarray
  domain: np.ndarray
  iso: np.ndarray
  s_idx: np.ndarray
  o_idx: np.ndarray


@dataclasses.dataclass(frozen=True)
class PIFSCode:
  """A complete fractal code: image size, static parameters and one ChannelCode per channel."""
  height: int
  width: int
  params: PIFSParams
  channels: tuple[ChannelCode, ...]

  @property
  def padded_shape(self) -> tuple[int, int]:
    return padded_shape(self.height, self.width, self.params.max_range)


def padded_shape(height: int, width: int, max_range: int) -> tuple[int, int]:
  """Size after edge padding: a multiple of max_range and at least 2 * max_range."""
  def up(x):
    return max(2 * max_range, -(-x // max_range) * max_range)
  return up(height), up(width)


def pad_edge(img: jnp.ndarray, hp: int, wp: int) -> jnp.ndarray:
  """img: [H, W] -> [hp, wp] by replicating the last row and column."""
  h, w = img.shape
  return jnp.pad(img, ((0, hp - h), (0, wp - w)), mode="edge")


# ----------------------------------------------------------------------------------------
# Geometry shared by encoder, decoder and the codec's validation.

def leaf_layout(hp: int, wp: int, params: PIFSParams, min_range: int,
                split: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
  """Leaf positions per level from the split flags.

  Returns one (ys, xs) pair of int arrays per level (top-left pixel of each leaf, canonical
  order). Raises ValueError if ``split`` has the wrong length.
  """
  sizes = params.sizes(min_range)
  b0 = sizes[0]
  gy, gx = np.meshgrid(np.arange(hp // b0) * b0, np.arange(wp // b0) * b0, indexing="ij")
  ys, xs = gy.ravel(), gx.ravel()
  out, used = [], 0
  split = np.asarray(split, bool)
  for li, b in enumerate(sizes):
    if li == len(sizes) - 1:
      out.append((ys, xs))
      break
    flags = split[used:used + len(ys)]
    if len(flags) != len(ys):
      raise ValueError(f"split flags end early at level {li}: need {used + len(ys)}, "
                       f"have {len(split)}")
    used += len(ys)
    out.append((ys[~flags], xs[~flags]))
    h = b // 2
    cy = np.stack([ys, ys, ys + h, ys + h], 1)[flags].ravel()
    cx = np.stack([xs, xs + h, xs, xs + h], 1)[flags].ravel()
    order = np.lexsort((cx, cy))
    ys, xs = cy[order], cx[order]
  if used != len(split):
    raise ValueError(f"{len(split) - used} split flags left over")
  return out


def num_leaves(layout) -> int:
  return int(sum(len(y) for y, _ in layout))


# ----------------------------------------------------------------------------------------
# Encoder.

def _batch_size(m: int, batch: int) -> int:
  """Ranges per search call: the power of two >= m (at least 64) below ``batch``, else
  ``batch``. A level's ranges are searched in calls of this one size, so each level compiles
  for a handful of shapes only and pads at most one batch."""
  return min(batch, max(64, 1 << int(np.ceil(np.log2(max(m, 1))))))


@functools.partial(jax.jit, static_argnames=("size",))
def _gather_ranges(img: jnp.ndarray, ys: jnp.ndarray, xs: jnp.ndarray, size: int):
  """img: [Hp, Wp], ys/xs: [m] -> [m, size, size]."""
  i = jnp.arange(size)
  return img[ys[:, None, None] + i[None, :, None], xs[:, None, None] + i[None, None, :]]


@functools.partial(jax.jit, static_argnames=("size", "stride", "quant", "col_chunk"))
def _domain_table(img, size, stride, quant, col_chunk):
  return prepare_domains(domain_pool(img, size, stride), quant, col_chunk)


def search_level(img: jnp.ndarray, ys: np.ndarray, xs: np.ndarray, size: int, stride: int,
                 quant: Quantizer, col_chunk: int = 64,
                 memory_limit_bytes: int = 8 << 20):
  """Best maps of the ``size`` x ``size`` ranges at (ys, xs) against every domain of ``img``.

  img: [Hp, Wp]; ys, xs: [m] int top-left corners -> Maps with numpy fields [m]. The domain
  table is built once per call; ranges go through ``search_ranges`` in equal-size batches.
  """
  m = len(ys)
  table = _domain_table(img, size, stride, quant, col_chunk)
  bs = _batch_size(m, range_batch(size * size, col_chunk, memory_limit_bytes))
  calls = -(-m // bs)
  pys = np.zeros(calls * bs, np.int32)
  pxs = np.zeros(calls * bs, np.int32)
  pys[:m], pxs[:m] = ys, xs
  parts = []
  for k in range(calls):
    rng = _gather_ranges(img, jnp.asarray(pys[k * bs:(k + 1) * bs]),
                         jnp.asarray(pxs[k * bs:(k + 1) * bs]), size)
    parts.append(search_ranges(rng, table, quant, memory_limit_bytes))  # dispatched async
  parts = [jax.tree.map(np.asarray, p) for p in parts]
  return jax.tree.map(lambda *f: np.concatenate(f)[:m], *parts)


def encode_channel(img: jnp.ndarray, params: PIFSParams, threshold: float,
                   min_range: int | None = None, col_chunk: int = 64,
                   memory_limit_bytes: int = 8 << 20) -> ChannelCode:
  """Quadtree PIFS code of one padded channel.

  Args:
    img: [Hp, Wp] float32 in [0, 1], Hp and Wp multiples of max_range, >= 2 * max_range.
    params: static parameters.
    threshold: split a range while its best RMS error (in [0, 1] units) exceeds this.
    min_range: this channel's smallest range (default params.min_range).
    col_chunk, memory_limit_bytes: search chunking (see ``pifs_search.search``).

  Returns:
    The channel's ChannelCode (canonical order).
  """
  min_range = params.min_range if min_range is None else min_range
  hp, wp = img.shape
  img = jnp.asarray(img, jnp.float32)
  sizes = params.sizes(min_range)
  b0 = sizes[0]
  gy, gx = np.meshgrid(np.arange(hp // b0) * b0, np.arange(wp // b0) * b0, indexing="ij")
  ys, xs = gy.ravel(), gx.ravel()
  split_all, leaf_parts = [], []
  for li, b in enumerate(sizes):
    last = li == len(sizes) - 1
    m = len(ys)
    stride = params.stride(b, hp, wp)
    if domain_grid(hp, wp, b, stride)[0] == 0:
      raise ValueError(f"no {2 * b}x{2 * b} domain fits a {hp}x{wp} image")
    maps = search_level(img, ys, xs, b, stride, params.quant, col_chunk, memory_limit_bytes)
    if last:
      flags = np.zeros(m, bool)
    else:
      flags = maps.err > (threshold ** 2) * b * b
      split_all.append(flags)
    keep = ~flags
    leaf_parts.append(tuple(np.asarray(f)[keep] for f in (maps.domain, maps.iso, maps.s_idx,
                                                          maps.o_idx)))
    if last or not flags.any():
      # Deeper levels are empty; their flags (none) and leaves (none) are implied.
      for _ in range(li + 1, len(sizes) - 1):
        split_all.append(np.zeros(0, bool))
      break
    h = b // 2
    cy = np.stack([ys, ys, ys + h, ys + h], 1)[flags].ravel()
    cx = np.stack([xs, xs + h, xs, xs + h], 1)[flags].ravel()
    order = np.lexsort((cx, cy))
    ys, xs = cy[order], cx[order]
  cat = lambda k: np.concatenate([p[k] for p in leaf_parts]).astype(np.int32)
  split = np.concatenate(split_all) if split_all else np.zeros(0, bool)
  return ChannelCode(min_range, split, cat(0), cat(1), cat(2), cat(3))


def encode(image: np.ndarray, params: PIFSParams = PIFSParams(), threshold: float = 8 / 255,
           chroma_threshold: float | None = None, chroma_min_range: int | None = None,
           **search_kwargs) -> PIFSCode:
  """PIFS code of an image.

  Args:
    image: [H, W] or [H, W, C] float in [0, 1] with C = 1 (grayscale) or 3 (RGB; coded as
      YCbCr, chroma with ``chroma_threshold`` (default 2x threshold) and
      ``chroma_min_range`` (default 2 x min_range, capped at max_range)).
    params: static parameters.
    threshold: luma split threshold, RMS error in [0, 1] units.

  Returns:
    PIFSCode.
  """
  params.validate()
  image = np.asarray(image, np.float32)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f"image must be [H, W], [H, W, 1] or [H, W, 3], got {image.shape}")
  h, w, c = image.shape
  hp, wp = padded_shape(h, w, params.max_range)
  planes = jnp.asarray(image)
  if c == 3:
    planes = rgb_to_ycbcr(planes)
  cthr = 2 * threshold if chroma_threshold is None else chroma_threshold
  cmin = min(params.max_range, 2 * params.min_range) if chroma_min_range is None \
      else chroma_min_range
  codes = []
  for ch in range(c):
    plane = pad_edge(planes[..., ch], hp, wp)
    luma = ch == 0
    codes.append(encode_channel(plane, params, threshold if luma else cthr,
                                None if luma else cmin, **search_kwargs))
  return PIFSCode(h, w, params, tuple(codes))


# ----------------------------------------------------------------------------------------
# Decoder.

def _iso_index_maps(size: int) -> np.ndarray:
  """[8, size*size]: flat source index in the pooled domain for each output pixel."""
  ar = jnp.arange(size * size, dtype=jnp.int32).reshape(size, size, 1)
  return np.stack([np.asarray(blocks.isometry(ar, k)).reshape(-1) for k in range(8)])


def decoder_tables(code_ch: ChannelCode, hp: int, wp: int, params: PIFSParams,
                   scale: int) -> dict[str, np.ndarray]:
  """Gather tables for one channel at ``scale``: for each output pixel (raster order) the 4
  source pixels of its pooled-domain value, its leaf id, and per-leaf s and o values."""
  layout = leaf_layout(hp, wp, params, code_ch.min_range, code_ch.split)
  sizes = params.sizes(code_ch.min_range)
  H, W = hp * scale, wp * scale
  src = np.zeros((H, W, 4), np.int32)
  leaf_of = np.zeros((H, W), np.int32)
  start = 0
  for (ys, xs), b in zip(layout, sizes):
    m = len(ys)
    if m == 0:
      continue
    stride = params.stride(b, hp, wp)
    nh, nw = domain_grid(hp, wp, b, stride)
    dom = code_ch.domain[start:start + m]
    iso = code_ch.iso[start:start + m]
    dy, dx = (dom // nw) * stride * scale, (dom % nw) * stride * scale
    bs = b * scale
    tmap = _iso_index_maps(bs)[iso]  # [m, bs*bs] pooled index after the isometry
    u, v = tmap // bs, tmap % bs
    oy = ys[:, None] * scale + (np.arange(bs * bs) // bs)[None]
    ox = xs[:, None] * scale + (np.arange(bs * bs) % bs)[None]
    for q, (a, c) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
      sy = dy[:, None] + 2 * u + a
      sx = dx[:, None] + 2 * v + c
      src[oy, ox, q] = sy * W + sx
    leaf_of[oy, ox] = start + np.arange(m)[:, None]
    start += m
  quant = params.quant
  s = np.asarray(quant.s_value(jnp.asarray(code_ch.s_idx, jnp.float32)), np.float32)
  o = np.asarray(quant.o_value(jnp.asarray(code_ch.o_idx, jnp.float32)), np.float32)
  return dict(src=src.reshape(-1, 4), leaf=leaf_of.reshape(-1), s=s, o=o)


@functools.partial(jax.jit, static_argnames=("shape", "max_iter"))
def iterate_maps(src, leaf, s, o, shape, max_iter: int = 64, tol: float = 1e-5):
  """Iterate one channel's maps from a flat 0.5 image until the largest pixel change is
  below ``tol`` (or ``max_iter`` steps).

  src: [P, 4] int32 source pixels; leaf: [P] int32; s, o: [leaves] float32; shape: (H, W)
  -> ([H, W] float32 fixed point, number of iterations).
  """
  n_leaves = s.shape[0]
  count = jax.ops.segment_sum(jnp.ones_like(leaf, jnp.float32), leaf, n_leaves)
  s_pix, o_pix = s[leaf], o[leaf]

  def step(x):
    pooled = x[src].mean(axis=1)
    dmean = jax.ops.segment_sum(pooled, leaf, n_leaves) / count
    return s_pix * (pooled - dmean[leaf]) + o_pix

  def cond(c):
    _, delta, i = c
    return (delta > tol) & (i < max_iter)

  def body(c):
    x, _, i = c
    y = step(x)
    return y, jnp.max(jnp.abs(y - x)), i + 1

  x0 = jnp.full(src.shape[0], 0.5, jnp.float32)
  x, _, iters = jax.lax.while_loop(cond, body, (x0, jnp.float32(jnp.inf), jnp.int32(0)))
  return x.reshape(shape), iters


@jax.jit
def deblock(x: jnp.ndarray, leaf: jnp.ndarray) -> jnp.ndarray:
  """Light deblocking: each pixel next to a range-block edge moves a quarter of the way
  towards its neighbour across the edge. x: [H, W], leaf: [H, W] leaf ids -> [H, W]."""
  def one_axis(x, leaf, axis):
    nxt = jnp.roll(x, -1, axis)
    prv = jnp.roll(x, 1, axis)
    n = x.shape[axis]
    idx = jnp.arange(n)
    shape = [1, 1]
    shape[axis] = n
    idx = idx.reshape(shape)
    edge_next = (leaf != jnp.roll(leaf, -1, axis)) & (idx < n - 1)
    edge_prev = (leaf != jnp.roll(leaf, 1, axis)) & (idx > 0)
    return x + 0.25 * (jnp.where(edge_next, nxt - x, 0.0) + jnp.where(edge_prev, prv - x, 0.0))
  return one_axis(one_axis(x, leaf, 0), leaf, 1)


def decode(code: PIFSCode, scale: int = 1, deblocking: bool = False, max_iter: int = 64,
           tol: float = 1e-5) -> np.ndarray:
  """Decode a PIFSCode. -> float32 [H*scale, W*scale, C] in [0, 1] (RGB if C = 3)."""
  if scale < 1 or int(scale) != scale:
    raise ValueError(f"scale must be a positive integer, got {scale}")
  hp, wp = code.padded_shape
  planes = []
  for ch in code.channels:
    t = decoder_tables(ch, hp, wp, code.params, scale)
    x, _ = iterate_maps(jnp.asarray(t["src"]), jnp.asarray(t["leaf"]), jnp.asarray(t["s"]),
                        jnp.asarray(t["o"]), (hp * scale, wp * scale), max_iter, tol)
    if deblocking:
      x = deblock(x, jnp.asarray(t["leaf"]).reshape(x.shape))
    planes.append(x[:code.height * scale, :code.width * scale])
  out = jnp.stack(planes, axis=-1)
  if out.shape[-1] == 3:
    out = ycbcr_to_rgb(out)
  return np.asarray(jnp.clip(out, 0.0, 1.0))
