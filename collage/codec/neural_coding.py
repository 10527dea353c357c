"""Entropy coding of Neural Collage codes with a model's integer tables (range coder:
``constriction``'s queue coder, so symbols decode in the order they were encoded).

Two schemes, chosen by the model (:class:`collage.nn.neural_collage.ModelConfig`):

* factorized prior (every model before session 8): the symbols slot by slot (all tiles'
  values of slot 0, then slot 1, ...), one table per slot (:func:`encode_slots`);
* context model (``context_model``): first the significance flags of every weight block
  (luma, then Cb and Cr for colour) range by range in raster order and candidate by candidate,
  each tile's flag under the table of its slot and context
  (:func:`collage.nn.entropy_model.weight_contexts`, computed from the flags decoded so far);
  then slot by slot the nonzero weights (the slot's table without zero) and the bias
  coefficients (the slot's full table) (:func:`encode_context`).

Tables are integer frequencies (rows summing to ``2**16``); the coder's floating-point models
are built from them identically on both sides.

A model's codes to bytes and back (:func:`encode_symbols`, :func:`decode_symbols`: the words
of one range coder, little-endian uint32, under a
:class:`~collage.codec.neural_models.LoadedModel`'s scheme and tables), and the per-tile
stream of a file that mixes models or qualities (:func:`encode_per_tile`,
:func:`decode_per_tile`: each tile's entry index, uniform over the K entries, then every
entry's codes, in one range coder). Where these bytes sit in a file:
:mod:`collage.codec.neural_format`.
"""

from __future__ import annotations

import functools

import numpy as np

from collage.codec.base import CodecError
from collage.nn import entropy_model as em


def categorical(freqs: np.ndarray):
  """One fixed categorical model from integer frequencies [K]."""
  import constriction  # pylint: disable=import-outside-toplevel
  freqs = np.asarray(freqs, np.float64)
  return constriction.stream.model.Categorical(freqs / freqs.sum(), perfect=False)


@functools.lru_cache(maxsize=1)
def _family():
  """A categorical model family: each symbol gets its own probabilities at coding time."""
  import constriction  # pylint: disable=import-outside-toplevel
  return constriction.stream.model.Categorical(perfect=False)


def _check_range(q: np.ndarray, m: int) -> np.ndarray:
  q = np.asarray(q, np.int64)
  if q.size and (q.min() < -m or q.max() > m):
    raise CodecError(f"code values must be in [-{m}, {m}], got [{q.min()}, {q.max()}]")
  return q


def encode_slots(coder, q: np.ndarray, slots: np.ndarray, tables: np.ndarray) -> None:
  """Append the codes ``q`` [n_tiles, N] to a range coder, slot by slot (factorized prior)."""
  m = (tables.shape[1] - 1) // 2
  q = _check_range(q, m)
  for s in np.unique(slots):
    sym = (q[:, slots == s] + m).reshape(-1).astype(np.int32)
    if sym.size:
      coder.encode(sym, categorical(tables[s]))


def decode_slots(coder, n_tiles: int, slots: np.ndarray, tables: np.ndarray) -> np.ndarray:
  """Inverse of :func:`encode_slots` -> int64 [n_tiles, N]."""
  m = (tables.shape[1] - 1) // 2
  q = np.zeros((n_tiles, len(slots)), np.int64)
  for s in np.unique(slots):
    cols = np.flatnonzero(slots == s)
    count = n_tiles * cols.size
    if count:
      sym = np.asarray(coder.decode(categorical(tables[s]), count), np.int64)
      q[:, cols] = sym.reshape(n_tiles, cols.size) - m
  return q


# Flags per encode call: their [n, 2] float64 probabilities (1 MB) are gathered into one
# buffer that stays in cache (a whole block's, 20 MB, cost more to write than to code).
_CHUNK = 1 << 16


def _prob_table(zero_table: np.ndarray) -> np.ndarray:
  """[S * CONTEXTS, 2] coder probabilities (zero, nonzero) of a flag, row slot * CONTEXTS +
  context: the integer counts over their power-of-two total (exact in float64, as is 1 minus
  it). Built once per code by the encoder and the decoder."""
  if zero_table.shape[1] != em.CONTEXTS:
    raise CodecError(f"significance tables of {zero_table.shape[1]} contexts, expected "
                     f"{em.CONTEXTS}")
  p0 = zero_table[..., 0].reshape(-1) / float(zero_table[0, 0].sum())
  return np.stack([p0, 1.0 - p0], axis=-1)


# Activity (nonzero weights of the left and upper ranges, at most 2 * 255) -> its bucket.
_BUCKET = np.searchsorted(np.asarray(em.ACTIVITY_EDGES), np.arange(512),
                          side="right").astype(np.uint8)


def _block_flags(sig: np.ndarray, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """A weight block's flags and their rows of :func:`_prob_table` (slot * CONTEXTS +
  context), in decoding order (range, candidate, tile), both int32.
  sig: bool [n_tiles, gh, gw, k]; slot: int [k], the candidates' slots.

  The contexts are those of :func:`collage.nn.entropy_model.weight_contexts` (tested equal),
  computed with the tiles as the last axis in 8-bit integers: the order the coder takes them
  in, without the int32 arrays and the transposes of the whole code that dominated the host
  coding. (The same computed by XLA in jitted chunks of tiles was slower: 9.5 against 6.3 ms
  for kodim23's code.)"""
  if sig.shape[-1] > 255:  # 8-bit sums would wrap
    raise CodecError(f"a weight block of {sig.shape[-1]} candidates is too large for the coder")
  t = np.ascontiguousarray(np.moveaxis(sig.view(np.uint8), 0, -1))   # [gh, gw, k, n]
  left = np.zeros_like(t)
  left[:, 1:] = t[:, :-1]                                            # the range to the left
  up = np.zeros_like(t)
  up[1:] = t[:-1]                                                    # the range above
  act = left.sum(axis=2, dtype=np.uint16) + up.sum(axis=2, dtype=np.uint16)
  prev = np.minimum(np.cumsum(t, axis=2, dtype=np.uint8) - t, em.PREV_CAP)
  ctx = (_BUCKET[act][:, :, None] * 4 + left + 2 * up) * (em.PREV_CAP + 1) + prev
  rows = np.asarray(slot, np.int32)[:, None] * em.CONTEXTS + ctx
  return t.reshape(-1).astype(np.int32), rows.reshape(-1)


def _decode_values(coder, q: np.ndarray, slots: np.ndarray, is_weight: np.ndarray,
                   tables: dict) -> None:
  """Decode into ``q`` (its flags decoded: 1 marks a nonzero weight) the values after the
  flags: slot by slot, a weight slot's nonzero values (table without zero), a bias slot's
  every value."""
  m = (tables["full"].shape[1] - 1) // 2
  for s in np.unique(slots):
    cols = np.flatnonzero(slots == s)
    part = q[:, cols]
    if is_weight[cols[0]]:
      where = part != 0
      if not where.any():
        continue
      idx = np.asarray(coder.decode(categorical(tables["nonzero"][s]), int(where.sum())),
                       np.int64)
      part[where] = np.where(idx < m, idx - m, idx - m + 1)
    else:
      part[:] = (np.asarray(coder.decode(categorical(tables["full"][s]), part.size), np.int64)
                 .reshape(part.shape) - m)
    q[:, cols] = part


def _encode_values(coder, q: np.ndarray, slots: np.ndarray, is_weight: np.ndarray,
                   tables: dict, nonzero: list[tuple[np.ndarray, np.ndarray]]) -> None:
  """Encode the values after the flags, in :func:`_decode_values`' order: slot by slot, a
  weight slot's nonzero values (within the slot tile by tile, position by position), a bias
  slot's every value. ``nonzero``: the (tile, position) indices of the nonzero weights, in
  row-major order, of each weight block (the blocks' slots are disjoint)."""
  m = (tables["full"].shape[1] - 1) // 2
  tile, pos = (np.concatenate(a) for a in zip(*nonzero))
  v, v_slot = q[tile, pos], slots[pos]
  order = np.argsort(v_slot, kind="stable")
  v, v_slot = v[order], v_slot[order]
  sym = np.where(v < 0, v + m, v + m - 1).astype(np.int32)
  for s in np.unique(slots):
    cols = np.flatnonzero(slots == s)
    if is_weight[cols[0]]:
      lo, hi = np.searchsorted(v_slot, [s, s + 1])
      if hi > lo:
        coder.encode(sym[lo:hi], categorical(tables["nonzero"][s]))
    else:
      coder.encode((q[:, cols] + m).reshape(-1).astype(np.int32), categorical(tables["full"][s]))


def encode_context(coder, q: np.ndarray, layout, tables: dict) -> None:
  """Append codes q [n_tiles, n] (colour length or luma prefix) under the context model's
  tables (:func:`collage.nn.entropy_model.context_tables`) to a range coder."""
  m = (tables["full"].shape[1] - 1) // 2
  q = _check_range(q, m)
  n_tiles, n = q.shape
  slots = layout.slots[:n]
  table, probs = _prob_table(tables["zero"]), np.empty((_CHUNK, 2))
  nonzero = []
  for off, gh, gw, k, _ in layout.weight_blocks(n):
    sig = q[:, off:off + gh * gw * k] != 0
    tile, pos = np.nonzero(sig)
    nonzero.append((tile, pos + off))
    flags, rows = _block_flags(sig.reshape(n_tiles, gh, gw, k), slots[off:off + k])
    for start in range(0, flags.size, _CHUNK):
      part = slice(start, start + _CHUNK)
      count = len(flags[part])
      # np.take, not fancy indexing: the same rows, gathered several times faster.
      np.take(table, rows[part], axis=0, out=probs[:count])
      coder.encode(flags[part], _family(), probs[:count])
  _encode_values(coder, q, slots, layout.is_weight[:n], tables, nonzero)


def decode_context(coder, n_tiles: int, n: int, layout, tables: dict) -> np.ndarray:
  """Inverse of :func:`encode_context` -> int64 [n_tiles, n]."""
  q = np.zeros((n_tiles, n), np.int64)
  slots = layout.slots[:n]
  table = _prob_table(tables["zero"])
  for off, gh, gw, k, _ in layout.weight_blocks(n):
    sig = np.zeros((n_tiles, gh, gw, k), np.int32)
    slot = slots[off:off + k]
    for r in range(gh * gw):
      i, j = divmod(r, gw)
      # The neighbour part of the contexts from the 2 x 2 window ending at this range (the
      # ranges to its left and above are decoded; itself is still zero).
      window = sig[:, max(i - 1, 0):i + 1, max(j - 1, 0):j + 1, :]
      base = em.neighbour_contexts(window)[:, -1, -1, :] * (em.PREV_CAP + 1)
      prev = np.zeros(n_tiles, np.int64)
      for c in range(k):
        ctx = base[:, c] + np.minimum(prev, em.PREV_CAP)
        probs = np.take(table, slot[c] * em.CONTEXTS + ctx, axis=0)
        flags = np.asarray(coder.decode(_family(), probs), np.int32)
        sig[:, i, j, c] = flags
        prev += flags
    q[:, off:off + gh * gw * k] = sig.reshape(n_tiles, -1)          # 1 marks a nonzero
  _decode_values(coder, q, slots, layout.is_weight[:n], tables)
  return q


# -- a model's codes <-> the range coder's bytes ----------------------------------------------
def range_decoder(data: bytes):
  """A range decoder reading ``data`` (little-endian uint32 words). Raises CodecError when
  its length is not a whole number of words."""
  import constriction  # pylint: disable=import-outside-toplevel
  if len(data) % 4:
    raise CodecError(f"corrupt neural payload: {len(data)} bytes is not a multiple of 4")
  return constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))


def encode_symbols(model, q: np.ndarray, channels: int, quality: int | None = None) -> bytes:
  """Range-code a model's integer codes q [n_tiles, N_channels] (values in ``[-M, M]``) under
  its entropy model at ``quality`` -> the coder's words as little-endian uint32 bytes.
  ``model``: a :class:`~collage.codec.neural_models.LoadedModel`."""
  import constriction  # pylint: disable=import-outside-toplevel
  coder = constriction.stream.queue.RangeEncoder()
  model.encode_into(coder, q, channels, quality)
  return coder.get_compressed().astype("<u4").tobytes()


def decode_symbols(model, data: bytes, n_tiles: int, channels: int,
                   quality: int | None = None) -> np.ndarray:
  """Inverse of :func:`encode_symbols` -> int64 [n_tiles, N]. Raises CodecError on bad data."""
  coder = range_decoder(data)
  try:
    return model.decode_from(coder, n_tiles, channels, quality)
  except Exception as e:  # constriction reports bad data as various errors  # noqa: BLE001
    raise CodecError(f"corrupt neural payload: {e}") from None


def encode_per_tile(models, qualities, choice: np.ndarray, codes, channels: int) -> bytes:
  """The bytes of a code that gives each tile one of K entries (a model, at a quality for a
  variable-rate one): ``choice`` int [n_tiles] (the entry of every tile, uniform over the K
  entries), then entry k's codes ``codes[k]`` [its tiles, N_k] under ``models[k]`` at
  ``qualities[k]``, in one range coder."""
  import constriction  # pylint: disable=import-outside-toplevel
  coder = constriction.stream.queue.RangeEncoder()
  coder.encode(choice.astype(np.int32), categorical(np.ones(len(models))))
  for m, quality, q in zip(models, qualities, codes):
    m.encode_into(coder, q, channels, quality)
  return coder.get_compressed().astype("<u4").tobytes()


def decode_per_tile(models, qualities, data: bytes, n_tiles: int,
                    channels: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
  """Inverse of :func:`encode_per_tile` -> (choice int64 [n_tiles], the K entries' codes).
  Raises CodecError on bad data."""
  coder = range_decoder(data)
  try:
    choice = np.asarray(coder.decode(categorical(np.ones(len(models))), n_tiles), np.int64)
    codes = tuple(m.decode_from(coder, int(np.sum(choice == i)), channels, qualities[i])
                  for i, m in enumerate(models))
  except Exception as e:  # constriction reports bad data as various errors  # noqa: BLE001
    raise CodecError(f"corrupt neural payload: {e}") from None
  return choice, codes
