"""Exhaustive batched search of fractal (PIFS) block maps: the encoder's inner loop.

The classical fractal coder (Jacquin 1992; Fisher 1995, "Fractal Image Compression")
approximates every range block ``r`` by an affine map of a domain block twice its size,
mean-pooled to the range size and transformed by one of the 8 isometries of the square.
This module finds, for a batch of range blocks, the best (domain, isometry, contrast,
brightness) exhaustively, with the contrast and brightness QUANTIZED before the error that
selects the map is evaluated.

Parametrization (orthogonalized brightness; Oien & Lepsoy 1994, used by Saupe's coders):
  r_hat = s * (P - mean(P)) + o_bar,     P = isometry_k(pool(domain)),
which is the affine map ``s * P + o`` with ``o = o_bar - s * mean(P)``. The stored
brightness ``o_bar`` is the range block's mean, so it lies in [0, 1] for images in [0, 1].

Quantizers (documented here, used by the codec):
  s: ``2**s_bits`` levels evenly spaced over [-s_max, s_max] (endpoints included),
     s_q(j) = -s_max + j * 2 s_max / (2**s_bits - 1), j in [0, 2**s_bits);
     with an even number of levels 0 is not a level (smallest |s_q| is half a step).
  o_bar: ``2**o_bits`` levels evenly spaced over [0, 1], o_q(j) = j / (2**o_bits - 1).

Error (exact, with quantized values; n pixels, rc = r - mean(r), dc = P - mean(P)):
  err = sum(rc^2) - 2 s_q sum(rc dc) + s_q^2 sum(dc^2) + n (mean(r) - o_q)^2,
the closed form of ``sum (r - r_hat)^2``; the cross term between the mean and the
zero-mean part vanishes. Only ``sum(rc dc)`` depends on the pair, so the search is one
matrix product (range rows x pixels) . (pixels x domains) with the 8 isometries applied to
the RANGE side (row = range * 8 + j holds ``isometry_j(range)``; it matches domain d by the
map whose isometry is ``inverse(j)``), chunked over domains with a running minimum.

The running minimum records only the winning domain CHUNK per row (a plain, vectorised
``min`` reduction); the winning column inside it is found afterwards by recomputing that one
chunk for each range's best row. Peak memory is bounded by ``memory_limit_bytes``.

The domain side (centred pooled domains in column chunks, their sums) does not depend on the
ranges: :func:`prepare_domains` builds it once per quadtree level and :func:`search_ranges`
reuses it for every batch of ranges; :func:`search` is the two in one call.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from einops import rearrange
from jax import lax

from collage.ops import blocks

# inverse(j) of each D4 element in the numbering of ``collage.ops.blocks``.
INVERSE_ISOMETRY = (0, 3, 2, 1, 4, 5, 6, 7)


class Quantizer(NamedTuple):
  """The scalar quantizers of contrast and brightness (see module docstring)."""
  s_bits: int = 5
  o_bits: int = 7
  s_max: float = 0.9

  @property
  def s_levels(self) -> int:
    return 1 << self.s_bits

  @property
  def o_levels(self) -> int:
    return 1 << self.o_bits

  @property
  def s_step(self) -> float:
    return 2.0 * self.s_max / (self.s_levels - 1)

  def validate(self) -> None:
    if not 1 <= self.s_bits <= 8 or not 1 <= self.o_bits <= 8:
      raise ValueError(f"s_bits and o_bits must be in 1..8, got {self.s_bits}, {self.o_bits}")
    if not 0.0 < self.s_max < 1.0:
      raise ValueError(f"s_max must be in (0, 1) for a contractive code, got {self.s_max}")

  def s_value(self, j):
    """Quantized contrast of index j (array or int)."""
    return jnp.float32(self.s_step) * j - jnp.float32(self.s_max)

  def o_value(self, j):
    """Quantized brightness (block mean) of index j."""
    return j / jnp.float32(self.o_levels - 1)

  def s_index(self, s):
    """Nearest level index of contrast s (clipped to [-s_max, s_max])."""
    j = jnp.round(s * jnp.float32(1.0 / self.s_step) + jnp.float32(self.s_max / self.s_step))
    return jnp.clip(j, 0, self.s_levels - 1)

  def o_index(self, o):
    j = jnp.round(o * jnp.float32(self.o_levels - 1))
    return jnp.clip(j, 0, self.o_levels - 1)


class Maps(NamedTuple):
  """Best map per range block; every field is ``[R]``.

  domain: int32 index into the domain list; iso: int32 isometry (0..7, applied to the
  pooled domain block); s_idx, o_idx: int32 quantizer indices; err: float32 squared error
  ``sum (r - r_hat)^2`` of the block with the quantized map.
  """
  domain: jnp.ndarray
  iso: jnp.ndarray
  s_idx: jnp.ndarray
  o_idx: jnp.ndarray
  err: jnp.ndarray


def search_chunks(n_ranges: int, n_pixels: int, col_chunk: int,
                  memory_limit_bytes: int) -> int:
  """Ranges per chunk so that one chunk's buffers fit in ``memory_limit_bytes``.

  Per range: 8 product rows of ``col_chunk`` float32 (and their epilogue), the 8 isometric
  copies, and the resolve step's gathered domain chunk (n_pixels x col_chunk).
  """
  per_range = 4 * (2 * 8 * col_chunk + n_pixels * col_chunk + 8 * n_pixels)
  return int(max(1, min(n_ranges, memory_limit_bytes // per_range)))


class DomainTable(NamedTuple):
  """The domain side of the search, built once per quadtree level (:func:`prepare_domains`).

  dmat: [C#, C, n] centred pooled domains as rows, in chunks of C = col_chunk (the last chunk
  padded by repeating the last domain); dmat_t: [C#, n, C] the same, transposed; a: [C#, C]
  ``1 / (sum(dc^2) * s_step)`` (0 for flat domains); vd: [C#, C] ``sum(dc^2)``; count: int32
  [] the number of real domains Nd.
  """
  dmat: jnp.ndarray
  dmat_t: jnp.ndarray
  a: jnp.ndarray
  vd: jnp.ndarray
  count: jnp.ndarray


@functools.partial(jax.jit, static_argnames=("quant", "col_chunk"))
def prepare_domains(domains: jnp.ndarray, quant: Quantizer = Quantizer(),
                    col_chunk: int = 64) -> DomainTable:
  """domains: [Nd, b, b] pooled domain blocks -> DomainTable (see its docstring).

  Flat domains (variance ~ 0) get zero rows, so their contrast is 0 and only the brightness
  codes the range.
  """
  nd, b, _ = domains.shape
  n = b * b
  step = jnp.float32(quant.s_step)
  d = domains.reshape(nd, n).astype(jnp.float32)
  dc = d - d.mean(axis=1, keepdims=True)
  vd = jnp.sum(dc * dc, axis=1)
  flat = vd <= 1e-10 * n
  dc = jnp.where(flat[:, None], 0.0, dc)
  vd = jnp.where(flat, 0.0, vd)
  a = jnp.where(flat, 0.0, 1.0 / jnp.where(flat, 1.0, vd) / step)  # s / step per unit A
  n_chunks = -(-nd // col_chunk)
  pad = n_chunks * col_chunk - nd  # padded columns repeat the last domain (clipped later)
  dmat = jnp.concatenate([dc, jnp.repeat(dc[-1:], pad, axis=0)])  # [Nd', n]
  a = jnp.concatenate([a, jnp.repeat(a[-1:], pad)])
  vd = jnp.concatenate([vd, jnp.repeat(vd[-1:], pad)])
  dmat = dmat.reshape(n_chunks, col_chunk, n)  # [C#, C, n]
  return DomainTable(dmat, dmat.transpose(0, 2, 1), a.reshape(n_chunks, col_chunk),
                     vd.reshape(n_chunks, col_chunk), jnp.int32(nd))


# |error| bound for the clamp in _native_epilogue: far above any block error of [0, 1] images.
_ERR_BOUND = 3.0e38


def _native_epilogue(e):
  """``e`` unchanged (a clamp to +-3e38 that never binds), as a code-generation hint.

  XLA:CPU (jax 0.10) hands the product and the row ``min`` to its YNNPACK fusions, and a
  YNNPACK fusion also swallows the arithmetic of the epilogue between them, which it runs
  about half as fast as XLA's own fused loops (``benchmarks/pifs_speed.md``). A clamp is an op
  YNNPACK does not take, so with it at the end of the epilogue the whole epilogue stays in
  one XLA loop fusion, the product and the ``min`` stay in YNNPACK, and the search runs ~1.7x
  faster. The values are unchanged (the clamp never binds).
  """
  return jnp.clip(e, -_ERR_BOUND, _ERR_BOUND)


def _search_table(ranges, table, quant, memory_limit_bytes, fusion_hint=True):
  """The body of :func:`search_ranges` (traced inside the jitted callers); ``fusion_hint``: end
  the epilogue with :func:`_native_epilogue` (False: leave its fusion to XLA's default)."""
  r_count, b, _ = ranges.shape
  n_chunks, col_chunk, n = table.dmat.shape
  levels = quant.s_levels
  step = jnp.float32(quant.s_step)
  c0 = jnp.float32(quant.s_max / quant.s_step)
  s_max = jnp.float32(quant.s_max)
  dmat, dmat_t, a, vd = table.dmat, table.dmat_t, table.a, table.vd

  def rel_err(prod, a_c, vd_c):
    # sum (rc - s_q dc)^2 - sum rc^2, with s_q the quantized least-squares contrast.
    j = jnp.clip(jnp.round(prod * a_c + c0), 0, levels - 1)
    sq = j * step - s_max
    return sq * (sq * vd_c - 2.0 * prod), j

  # Range side: 8 isometric copies per range, chunked over ranges.
  rc_per = search_chunks(r_count, n, col_chunk, memory_limit_bytes)
  n_rchunks = -(-r_count // rc_per)
  rpad = n_rchunks * rc_per - r_count
  r = ranges.astype(jnp.float32)
  r = jnp.concatenate([r, jnp.zeros((rpad, b, b), jnp.float32)])
  rows = rearrange(blocks.isometries(r[..., None])[..., 0], "(k r) i h w -> k (r i) (h w)",
                   k=n_rchunks)  # [n_rchunks, rc_per * 8, n]: range-major, then isometry

  def one_chunk(rws):  # rws: [rc*8, n]
    def body(i, carry):
      best, best_chunk = carry
      e, _ = rel_err(rws @ dmat[i].T, a[i], vd[i])
      m = jnp.min(_native_epilogue(e) if fusion_hint else e, axis=1)
      better = m < best
      return jnp.where(better, m, best), jnp.where(better, i, best_chunk)

    init = (jnp.full((rws.shape[0],), jnp.inf, jnp.float32),
            jnp.zeros((rws.shape[0],), jnp.int32))
    best, best_chunk = lax.fori_loop(0, n_chunks, body, init)
    best = best.reshape(rc_per, 8)
    row_iso = jnp.argmin(best, axis=1)  # isometry applied to the range
    chunk = jnp.take_along_axis(best_chunk.reshape(rc_per, 8), row_iso[:, None], 1)[:, 0]
    # Resolve: the exact column inside the winning chunk, one [n] x [n, C] product per
    # range (1 / (8 * C#) of the loop's work).
    rsel = jnp.take_along_axis(rws.reshape(rc_per, 8, n), row_iso[:, None, None], 1)[:, 0]
    prod = jnp.einsum("rn,rnc->rc", rsel, dmat_t[chunk])  # [rc, C]
    e, j = rel_err(prod, a[chunk], vd[chunk])
    col = jnp.argmin(e, axis=1)
    e_best = jnp.take_along_axis(e, col[:, None], 1)[:, 0]
    s_idx = jnp.take_along_axis(j, col[:, None], 1)[:, 0]
    dom = jnp.minimum(chunk * col_chunk + col, table.count - 1)
    return dom, row_iso, s_idx, e_best

  dom, row_iso, s_idx, e_rel = lax.map(one_chunk, rows)
  dom, row_iso, s_idx, e_rel = (x.reshape(-1)[:r_count] for x in (dom, row_iso, s_idx, e_rel))

  flat_r = ranges.reshape(r_count, n).astype(jnp.float32)
  mean = flat_r.mean(axis=1)
  rc = flat_r - mean[:, None]
  o_idx = quant.o_index(mean)
  err = jnp.sum(rc * rc, axis=1) + e_rel + n * (mean - quant.o_value(o_idx)) ** 2
  iso = jnp.asarray(INVERSE_ISOMETRY, jnp.int32)[row_iso]
  return Maps(dom.astype(jnp.int32), iso, s_idx.astype(jnp.int32), o_idx.astype(jnp.int32),
              jnp.maximum(err, 0.0))


@functools.partial(jax.jit, static_argnames=("quant", "memory_limit_bytes"))
def search_ranges(ranges: jnp.ndarray, table: DomainTable, quant: Quantizer = Quantizer(),
                  memory_limit_bytes: int = 8 << 20) -> Maps:
  """Exhaustive search of a batch of ranges against a prepared domain table.

  ranges: [R, b, b] float32; table: from :func:`prepare_domains` with the same ``quant``
  -> Maps with fields [R]. One compile per (R, table shape): the quadtree encoder calls it
  with a few fixed batch sizes per level and reuses the table for every batch.
  """
  return _search_table(ranges, table, quant, memory_limit_bytes)


@functools.partial(jax.jit, static_argnames=("quant", "col_chunk", "memory_limit_bytes",
                                             "fusion_hint"))
def search(ranges: jnp.ndarray, domains: jnp.ndarray, quant: Quantizer = Quantizer(),
           col_chunk: int = 64, memory_limit_bytes: int = 8 << 20,
           fusion_hint: bool = True) -> Maps:
  """Exhaustive search of the best quantized map for each range block.

  Args:
    ranges: [R, b, b] float32 range blocks.
    domains: [Nd, b, b] float32 domain blocks, already pooled to the range size.
    quant: the quantizers (static).
    col_chunk: domains per step of the running minimum (static).
    memory_limit_bytes: bound on one chunk's working buffers (static).
    fusion_hint: keep the code-generation hint that makes XLA:CPU fuse the epilogue in its own
      loop (see ``_native_epilogue``; static). False compiles the same search without it, for
      measuring the hint (``benchmarks/pifs_speed.py``); the maps are the same either way.

  Returns:
    Maps with fields [R]. Ties go to the lowest domain chunk, then the lowest isometry row,
    then the lowest domain index.
  """
  table = prepare_domains(domains, quant, col_chunk)
  return _search_table(ranges, table, quant, memory_limit_bytes, fusion_hint)


def range_batch(n_pixels: int, col_chunk: int = 64, memory_limit_bytes: int = 8 << 20) -> int:
  """Ranges per step of the search's range loop when there are many ranges (the natural
  batch size for :func:`search_ranges`)."""
  return search_chunks(1 << 30, n_pixels, col_chunk, memory_limit_bytes)


def domain_pool(image: jnp.ndarray, size: int, stride: int) -> jnp.ndarray:
  """Domain blocks of ``2*size`` at ``stride``, mean-pooled to ``size``, in raster order.

  image: [H, W] -> [nh * nw, size, size] with nh = (H - 2 size) // stride + 1 (same for nw).
  """
  z = image[None, :, :, None]
  d = blocks.strided_blocks(z, 2 * size, 2 * size, stride, stride)  # [1, nh, nw, 2s, 2s, 1]
  return rearrange(blocks.mean_pool(d, 2), "1 nh nw h w 1 -> (nh nw) h w")


def domain_grid(height: int, width: int, size: int, stride: int) -> tuple[int, int]:
  """(nh, nw): the number of domain positions of ``domain_pool``; (0, 0) if none fits."""
  if height < 2 * size or width < 2 * size:
    return 0, 0
  return (height - 2 * size) // stride + 1, (width - 2 * size) // stride + 1
