"""A learned entropy model for quantized collage parameters.

Every quantized parameter belongs to a *slot* (e.g. "luma weight of candidate 3", "chroma
bias coefficient (0, 1)"); all parameters in a slot share one learned probability mass
function over the integers ``-M..M``. This is the fully factorized prior of Ballé et al.
2018 ("Variational image compression with a scale hyperprior", Sec. 2 / App. 6.1) in its
simplest non-parametric form: one softmax over the support per slot.

Training needs a *continuous* likelihood of the relaxed value ``y~ = y + u``
(``u ~ U(-1/2, 1/2)``, Ballé et al.'s additive-noise proxy for rounding). We use the
density that is piecewise constant on the bins ``[k - 1/2, k + 1/2)`` with mass ``p[k]``;
its probability of a unit-width interval centred at ``y~`` is the linear interpolation of
``p`` between ``floor(y~)`` and ``floor(y~) + 1``. It equals ``p[k]`` exactly at integers,
so the rate that training optimises is the rate that the codec pays (up to coder overhead),
and it is differentiable in ``y~``, so the rate pulls parameters towards cheap values.

For coding, :func:`integer_tables` turns the learned pmfs into integer frequency tables
(each entry ``>= 1``, each row summing to ``2**precision``) by a deterministic procedure, so
encoder and decoder build bit-identical models from the same weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

LOG2 = float(np.log(2.0))


class FactorizedPrior(nnx.Module):
  """Per-slot learned pmf over the integers ``-support..support``.

  Attributes:
    logits: nnx.Param [num_slots, 2 * support + 1], the unnormalised log-pmf of each slot.
  """

  def __init__(self, num_slots: int, support: int, init_scale: float | np.ndarray = 2.0):
    """Args:
      num_slots: number of slots S.
      support: M; symbols are the integers in ``[-M, M]`` (2M + 1 of them).
      init_scale: scalar or [S]; the initial pmf is a discrete Laplace with this scale.
    """
    if support < 1:
      raise ValueError(f"support must be >= 1, got {support}")
    if num_slots < 1:
      raise ValueError(f"num_slots must be >= 1, got {num_slots}")
    self.support = int(support)
    self.num_slots = int(num_slots)
    self.logits = nnx.Param(jnp.asarray(laplace_logits(num_slots, support, init_scale)))

  def log_pmf(self) -> jax.Array:
    """-> [S, 2M+1] natural-log pmf of every slot."""
    return log_pmf(self.logits[...])

  def bits(self, y: jax.Array, slots: jax.Array) -> jax.Array:
    """-log2 likelihood of relaxed values. y: [..., N] in quantization units (values beyond
    ``+-M`` are clipped), slots: int [N] -> bits [..., N]."""
    return relaxed_bits(self.logits[...], y, slots)


def laplace_logits(num_slots: int, support: int, scale: float | np.ndarray) -> np.ndarray:
  """float32 [num_slots, 2 * support + 1]: the logits of a discrete Laplace pmf of ``scale``
  (scalar or [num_slots]) per slot, the initial :class:`FactorizedPrior`."""
  k = np.arange(-support, support + 1, dtype=np.float32)
  scale = np.broadcast_to(np.asarray(scale, np.float32), (num_slots,))
  return -np.abs(k)[None, :] / scale[:, None]


def log_pmf(logits: jax.Array) -> jax.Array:
  """logits: [S, K] -> [S, K] log-softmax over the support."""
  return jax.nn.log_softmax(logits, axis=-1)


def relaxed_bits(logits: jax.Array, y: jax.Array, slots: jax.Array) -> jax.Array:
  """-log2 of the interpolated pmf at ``y``.

  Args:
    logits: [S, 2M+1].
    y: [..., N] real values in quantization units; clipped to ``[-M, M]``.
    slots: int [N], the slot of every position.

  Returns:
    [..., N] bits; at integer ``y`` exactly ``-log2 pmf[slot, y]``.
  """
  pmf = jax.nn.softmax(logits, axis=-1)[slots]                      # [N, K]
  cols = jnp.arange(pmf.shape[0])
  return _interpolated_bits(y, logits.shape[-1], lambda index: pmf[cols, index])


def _interpolated_bits(y: jax.Array, k: int, pmf_at) -> jax.Array:
  """-log2 of a pmf over ``k`` symbols interpolated linearly at ``y`` (quantization units,
  clipped to ``[-M, M]``): ``pmf_at(index)`` gives the pmf at integer symbol indices shaped
  like ``y``. The relaxation of :func:`relaxed_bits` and :func:`level_bits`."""
  m = (k - 1) // 2
  y = jnp.clip(y + m, 0.0, float(k - 1))                            # index space
  lo = jnp.clip(jnp.floor(y), 0, k - 2)
  frac = y - lo
  lo = lo.astype(jnp.int32)
  p = (1.0 - frac) * pmf_at(lo) + frac * pmf_at(lo + 1)
  return -jnp.log(jnp.maximum(p, 1e-12)) / LOG2


def level_weights(level: jax.Array, levels: int) -> tuple[jax.Array, jax.Array]:
  """A continuous rate level ``t`` in ``[0, levels - 1]`` (clipped) -> (lower level index
  int32, weight of the level above): ``t = lo + frac``, ``lo <= levels - 2``."""
  t = jnp.clip(jnp.asarray(level, jnp.float32), 0.0, float(levels - 1))
  lo = jnp.minimum(jnp.floor(t), float(levels - 2))
  return lo.astype(jnp.int32), t - lo


def interpolate_levels(table: jax.Array, level: jax.Array) -> jax.Array:
  """Linear interpolation between the rows of ``table`` [L, ...] at levels [B] -> [B, ...]."""
  lo, frac = level_weights(level, table.shape[0])
  frac = frac.reshape(frac.shape + (1,) * (table.ndim - 1))
  return (1.0 - frac) * table[lo] + frac * table[lo + 1]


def level_bits(logits: jax.Array, y: jax.Array, slots: jax.Array, level: jax.Array) -> jax.Array:
  """:func:`relaxed_bits` of a variable-rate model, one rate level per row.

  The pmf of a slot at level ``t = lo + frac`` is the mixture ``(1 - frac) p_lo + frac p_hi``
  of the pmfs learned at the two neighbouring levels (a valid pmf at every ``t``, equal to the
  learned one at integer levels; :func:`level_logits` is the same on the host).

  Args:
    logits: [L, S, 2M+1], the logits of every level.
    y: [B, N] relaxed values in quantization units (clipped to ``[-M, M]``).
    slots: int [N].
    level: [B] continuous levels.

  Returns:
    [B, N] bits; at integer ``y`` exactly ``-log2`` of the mixture pmf.
  """
  pmf = jax.nn.softmax(logits, axis=-1)                              # [L, S, K]
  lv, w = level_weights(level, logits.shape[0])
  s = jnp.asarray(slots)[None, :]
  lv, w = lv[:, None], w[:, None]

  def at(index):  # the mixture of the two neighbouring levels' pmfs
    return (1.0 - w) * pmf[lv, s, index] + w * pmf[lv + 1, s, index]

  return _interpolated_bits(y, logits.shape[-1], at)


def level_logits(logits, level: float) -> np.ndarray:
  """Host (float64) logits of a variable-rate model's pmfs at one level: the log of the
  mixture :func:`level_bits` uses. logits: [L, S, K] -> [S, K], input of
  :func:`integer_tables` (deterministic: encoder and decoder build the same tables)."""
  return _log(_mix_levels(_softmax(np.asarray(logits, np.float64)), level))


def _softmax(a: np.ndarray) -> np.ndarray:
  p = np.exp(a - a.max(axis=-1, keepdims=True))
  return p / p.sum(axis=-1, keepdims=True)


def _log(p: np.ndarray) -> np.ndarray:
  return np.log(np.maximum(p, 1e-300))


def _mix_levels(p: np.ndarray, level: float) -> np.ndarray:
  """Host (float64) twin of :func:`level_weights` + mixing: p [L, ...] (L >= 1) -> the linear
  mixture of its two levels around ``level`` (clipped to ``[0, L - 1]``; L = 1: p[0])."""
  levels = p.shape[0]
  if levels == 1:
    return p[0]
  t = min(max(float(np.float32(level)), 0.0), float(levels - 1))
  lo = min(int(np.floor(t)), levels - 2)
  frac = t - lo
  return (1.0 - frac) * p[lo] + frac * p[lo + 1]


def round_ste(y: jax.Array) -> jax.Array:
  """Rounding with a straight-through (identity) gradient."""
  return y + jax.lax.stop_gradient(jnp.round(y) - y)


def uniform_noise(rng: jax.Array, y: jax.Array) -> jax.Array:
  """Ballé et al.'s training proxy for rounding: y + U(-1/2, 1/2)."""
  return y + jax.random.uniform(rng, y.shape, y.dtype, -0.5, 0.5)


def integer_tables(logits, precision: int = 16) -> np.ndarray:
  """Deterministic integer frequency tables from learned logits.

  Args:
    logits: [S, K] array (any float dtype; computed in float64).
    precision: bits of the tables; every row sums to exactly ``2**precision``.

  Returns:
    int64 [S, K], every entry ``>= 1`` (every symbol stays encodable).
  """
  logits = np.asarray(logits, np.float64)
  s, k = logits.shape
  total = 1 << precision
  if k >= total:
    raise ValueError(f"support of {k} symbols does not fit {precision}-bit tables")
  p = np.exp(logits - logits.max(axis=-1, keepdims=True))
  p /= p.sum(axis=-1, keepdims=True)
  free = total - k
  scaled = p * free
  counts = np.floor(scaled).astype(np.int64) + 1
  frac = scaled - np.floor(scaled)
  rest = total - counts.sum(axis=-1)                                 # in [0, K]
  # Hand the leftover units to the largest fractional parts (ties: lower index first).
  order = np.argsort(-frac, axis=-1, kind="stable")
  ranks = np.empty_like(order)
  np.put_along_axis(ranks, order, np.arange(k)[None, :].repeat(s, 0), axis=-1)
  counts += (ranks < rest[:, None]).astype(np.int64)
  assert (counts.sum(-1) == total).all() and counts.min() >= 1
  return counts


def row_bits(q: np.ndarray, slots: np.ndarray, tables: np.ndarray) -> np.ndarray:
  """Ideal code length in bits of each row of integer symbols under integer tables.

  q: int [..., N] in ``[-M, M]``, slots: int [N], tables: int [S, 2M+1] -> float64 [...].
  """
  m = (tables.shape[-1] - 1) // 2
  total = tables[0].sum()
  q = np.asarray(q)
  counts = tables[np.asarray(slots), q + m]
  return -np.log2(counts / total).sum(axis=-1)


def table_bits(q: np.ndarray, slots: np.ndarray, tables: np.ndarray) -> float:
  """Ideal code length in bits of integer symbols under integer tables (all rows of
  :func:`row_bits`). q: int [..., N] in ``[-M, M]`` -> float."""
  return float(row_bits(np.asarray(q).reshape(-1, len(slots)), slots, tables).sum())


# -- the context model of collage weights --------------------------------------------------
# A tile's collage weights are sparse (at every rate most candidates of a range get weight
# zero) and their sparsity is spatially coherent: a range next to busy ranges is busy, and a
# candidate used by the range to the left or above is likelier to be used again. The context
# model codes every weight as a significance flag (zero or not) whose probability depends on a
# discrete context of already decoded flags, then the nonzero values with one pmf per slot
# (the binarization of CABAC, Marpe et al. 2003; a causal context over decoded symbols, as in
# Minnen et al. 2018, but discrete, so the decoder builds its integer tables exactly). The
# context of candidate k of a range (grid position i, j) counts:
#   * the activity of the neighbourhood: nonzero weights in the ranges to the left and above
#     (same tile), bucketed by ACTIVITY_EDGES: 5 values;
#   * whether candidate k itself is used by the range to the left, and by the one above: 4;
#   * how many earlier candidates of the same range are used, capped at 3: 4.
# Ranges are coded in raster order, candidates in order within a range, so every input of a
# context is decoded before it is needed. On the codes that the factorized-prior model r4_var8
# writes for the shared training photographs, with statistics fitted on half the images and
# measured on the other half, these contexts spend 16-21 % fewer bits than the best factorized
# prior fitted the same way, 20-30 % fewer than that model's own tables, before any training
# (benchmarks/context_model_analysis.py; benchmarks/neural_codec.md, session 8).
ACTIVITY_EDGES = (1, 2, 4, 8)
NEIGHBOUR_CONTEXTS = (len(ACTIVITY_EDGES) + 1) * 4
PREV_CAP = 3
CONTEXTS = NEIGHBOUR_CONTEXTS * (PREV_CAP + 1)


def neighbour_contexts(sig, xp=np):
  """The part of the weights' contexts that depends on other ranges.

  Args:
    sig: int [..., gh, gw, k], 1 where a weight is nonzero (ranges on a gh x gw grid, k
      candidates each); entries not yet decoded must be 0 (they do not enter).
    xp: numpy or jax.numpy.

  Returns:
    int32 [..., gh, gw, k] in ``[0, NEIGHBOUR_CONTEXTS)``: activity bucket * 4 + used by the
    left range + 2 * used by the range above.
  """
  sig = sig.astype(xp.int32)
  nd = sig.ndim
  pad_left = [(0, 0)] * (nd - 2) + [(1, 0), (0, 0)]
  pad_up = [(0, 0)] * (nd - 3) + [(1, 0), (0, 0), (0, 0)]
  left = xp.pad(sig, pad_left)[..., :-1, :]                          # the range to the left
  up = xp.pad(sig, pad_up)[..., :-1, :, :]                           # the range above
  act = left.sum(-1, keepdims=True) + up.sum(-1, keepdims=True)
  bucket = xp.searchsorted(xp.asarray(ACTIVITY_EDGES), act, side="right").astype(xp.int32)
  return bucket * 4 + left + 2 * up


def weight_contexts(sig, xp=np):
  """Every weight's context in ``[0, CONTEXTS)``: :func:`neighbour_contexts` * (PREV_CAP + 1)
  + the number of earlier nonzero candidates in its range (capped). sig: [..., gh, gw, k]."""
  sig = sig.astype(xp.int32)
  prev = xp.minimum(xp.cumsum(sig, axis=-1) - sig, PREV_CAP)
  return neighbour_contexts(sig, xp) * (PREV_CAP + 1) + prev


def zero_logits_from(logits) -> np.ndarray:
  """Host logits [S, K] -> [S]: the log-odds of zero under each slot's pmf, the context
  model's starting significance (the same in every context: rates unchanged at the start)."""
  logits = np.asarray(logits, np.float64)
  p0 = np.clip(_softmax(logits)[:, (logits.shape[-1] - 1) // 2], 1e-6, 1.0 - 1e-6)
  return np.log(p0) - np.log1p(-p0)


def context_bits(logits: jax.Array, zero_logits: jax.Array, y: jax.Array, slots: jax.Array,
                 is_weight: jax.Array, ctx: jax.Array, level: jax.Array) -> jax.Array:
  """Relaxed bits [B, N] under the context model (the counterpart of :func:`level_bits`).

  A weight position (``is_weight``) has the pmf ``p0`` at 0 and ``(1 - p0) r(v)`` elsewhere:
  ``p0 = sigmoid(zero_logits[slot, ctx])`` the significance of its context, ``r`` the slot's
  pmf without zero (its logits with zero masked out). Other positions have the slot's full pmf.
  Between levels, ``p0``, ``r`` and the full pmf are each mixed linearly.

  Args:
    logits: [L, S, K] (L >= 1 levels).
    zero_logits: [L, S, CONTEXTS].
    y: [B, N] relaxed values in quantization units.
    slots: int [N]; is_weight: bool [N].
    ctx: int [B, N] contexts (from the hard code; ignored where not is_weight).
    level: [B] continuous levels (zeros for L = 1).
  """
  if logits.shape[0] == 1:  # a fixed-rate model: one level, mixed with itself
    logits, zero_logits = (jnp.concatenate([a, a]) for a in (logits, zero_logits))
  k = logits.shape[-1]
  m = (k - 1) // 2
  full = jax.nn.softmax(logits, axis=-1)
  nz = jax.nn.softmax(jnp.where(jnp.arange(k) == m, -jnp.inf, logits), axis=-1)
  p0 = jax.nn.sigmoid(zero_logits)
  lv, w = level_weights(level, logits.shape[0])
  s = jnp.asarray(slots)[None, :]
  lv, w = lv[:, None], w[:, None]
  c = jnp.clip(ctx, 0, CONTEXTS - 1)
  zero = (1.0 - w) * p0[lv, s, c] + w * p0[lv + 1, s, c]
  weight = jnp.asarray(is_weight)[None, :]

  def at(index):
    mix = lambda t: (1.0 - w) * t[lv, s, index] + w * t[lv + 1, s, index]  # noqa: E731
    return jnp.where(weight, jnp.where(index == m, zero, (1.0 - zero) * mix(nz)), mix(full))

  return _interpolated_bits(y, k, at)


def context_tables(logits, zero_logits, level: float, precision: int = 16) -> dict:
  """The integer tables of the context model at one level (host, float64, deterministic).

  Args:
    logits: [L, S, K]; zero_logits: [L, S, CONTEXTS]; level: in ``[0, L - 1]``.

  Returns:
    {"full": int64 [S, K] (non-weight slots), "nonzero": int64 [S, K - 1] (weight values
    without zero, ``-M..-1, 1..M``), "zero": int64 [S, CONTEXTS, 2] (counts of zero and
    nonzero per context)}; every row sums to ``2**precision``.
  """
  logits = np.asarray(logits, np.float64)
  _, s, k = logits.shape
  full = _log(_mix_levels(_softmax(logits), level))
  nonzero = _log(_mix_levels(_softmax(np.delete(logits, (k - 1) // 2, axis=-1)), level))
  p0 = _mix_levels(1.0 / (1.0 + np.exp(-np.asarray(zero_logits, np.float64))), level)
  two = _log(np.stack([p0, 1.0 - p0], -1)).reshape(-1, 2)
  return {"full": integer_tables(full, precision),
          "nonzero": integer_tables(nonzero, precision),
          "zero": integer_tables(two, precision).reshape(s, CONTEXTS, 2)}


def context_row_bits(q: np.ndarray, slots: np.ndarray, is_weight: np.ndarray, ctx: np.ndarray,
                     tables: dict) -> np.ndarray:
  """Ideal code length in bits of each row of q [n, N] under :func:`context_tables` (ctx:
  int [n, N], the weights' contexts) -> float64 [n]."""
  q = np.asarray(q, np.int64)
  m = (tables["full"].shape[-1] - 1) // 2
  total = float(tables["full"][0].sum())
  s = np.broadcast_to(np.asarray(slots), q.shape)
  w = np.broadcast_to(np.asarray(is_weight), q.shape)
  nzi = np.where(q < 0, q + m, q + m - 1).clip(0, 2 * m - 1)
  full = tables["full"][s, q + m]
  sig = (q != 0).astype(np.int64)
  flag = tables["zero"][s, np.clip(ctx, 0, CONTEXTS - 1), sig]
  value = np.where(sig == 1, tables["nonzero"][s, nzi], total)
  counts = np.where(w, -np.log2(flag / total) - np.log2(value / total), -np.log2(full / total))
  return counts.sum(-1)
