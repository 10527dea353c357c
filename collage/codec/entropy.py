"""Entropy coding and bit packing for codec payloads: bytes that describe themselves.

* :func:`encode_categorical` / :func:`decode_categorical`: i.i.d. symbols from
  ``{0, ..., alphabet_size-1}`` with a static model fitted to the data, stored in the stream
  (an ANS coder from the ``constriction`` library). The encoder also tries plain bit packing
  and a constant stream and keeps whichever is shortest, so it never costs more than
  ``pack_bits`` plus one byte.
* :func:`pack_bits` / :func:`unpack_bits`: fixed-width unsigned integers, MSB first.
* :class:`ByteWriter` / :class:`ByteReader`: varints, bytes and length-prefixed sections to lay
  out a payload; every read past the end raises :class:`CodecError`.

Categorical stream layout (first byte = mode)::

  0 EMPTY   nothing follows (count must be 0)
  1 CONST   varint symbol; every symbol equals it
  2 RAW     pack_bits(symbols, bits_for(alphabet_size))
  3 SPARSE  varint shift, varint K, K x (varint symbol delta, varint q), ANS words
  4 DENSE   varint shift, alphabet_size x varint q, ANS words

In SPARSE/DENSE the model's frequencies are ``q[s] = ceil(count[s] / 2**shift)`` (0 for an
unused symbol); ANS words are little-endian uint32. The decoder rebuilds the same model,
decodes, and checks that the stream is exactly consumed and that the decoded histogram
maps to the stored ``q``, so a damaged stream raises instead of returning wrong symbols.
"""

from __future__ import annotations

import numpy as np

from collage.codec.base import CodecError

_EMPTY, _CONST, _RAW, _SPARSE, _DENSE = range(5)
MAX_COUNT = 1 << 28   # the most symbols one stream may hold (split larger data into streams)
_MODE_NAMES = ("empty", "const", "raw", "sparse", "dense")


# ----------------------------------------------------------------------------- varints & layout

def encode_varint(value: int) -> bytes:
  """Unsigned LEB128."""
  value = int(value)
  if value < 0:
    raise CodecError(f"varint must be non-negative, got {value}")
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


class ByteWriter:
  """Builds a payload from varints, fixed bytes and length-prefixed sections."""

  def __init__(self):
    self._parts: list[bytes] = []

  def varint(self, value: int) -> "ByteWriter":
    self._parts.append(encode_varint(value))
    return self

  def svarint(self, value: int) -> "ByteWriter":
    """Signed varint (zigzag)."""
    value = int(value)
    return self.varint(2 * value if value >= 0 else -2 * value - 1)

  def u8(self, value: int) -> "ByteWriter":
    if not 0 <= int(value) <= 255:
      raise CodecError(f"u8 out of range: {value}")
    self._parts.append(bytes([int(value)]))
    return self

  def raw(self, data: bytes) -> "ByteWriter":
    """Bytes without a length (the reader must know how many)."""
    self._parts.append(bytes(data))
    return self

  def section(self, data: bytes) -> "ByteWriter":
    """Bytes preceded by their length as a varint."""
    return self.varint(len(data)).raw(data)

  def getvalue(self) -> bytes:
    return b"".join(self._parts)

  def __len__(self) -> int:
    return sum(len(p) for p in self._parts)


class ByteReader:
  """Reads what :class:`ByteWriter` wrote; raises CodecError on truncation or leftovers."""

  def __init__(self, data: bytes, what: str = "payload"):
    self._data = bytes(data)
    self._pos = 0
    self._what = what

  @property
  def remaining(self) -> int:
    return len(self._data) - self._pos

  def varint(self, max_value: int | None = None) -> int:
    value = shift = 0
    for _ in range(10):
      if self._pos >= len(self._data):
        raise CodecError(f"truncated {self._what}: ends inside a varint")
      byte = self._data[self._pos]
      self._pos += 1
      value |= (byte & 0x7F) << shift
      shift += 7
      if not byte & 0x80:
        if max_value is not None and value > max_value:
          raise CodecError(f"corrupt {self._what}: value {value} exceeds its limit {max_value}")
        return value
    raise CodecError(f"corrupt {self._what}: varint longer than 10 bytes")

  def svarint(self) -> int:
    z = self.varint()
    return z >> 1 if not z & 1 else -((z + 1) >> 1)

  def u8(self) -> int:
    return self.raw(1)[0]

  def raw(self, n: int) -> bytes:
    if n < 0 or self._pos + n > len(self._data):
      raise CodecError(f"truncated {self._what}: needs {n} more bytes, {self.remaining} left")
    out = self._data[self._pos:self._pos + n]
    self._pos += n
    return out

  def section(self) -> bytes:
    return self.raw(self.varint())

  def rest(self) -> bytes:
    return self.raw(self.remaining)

  def expect_end(self, after: str = "") -> None:
    """Raises unless every byte was read; ``after`` names what should have filled them
    (e.g. "the 3 channels that the header declares")."""
    if self.remaining:
      where = f"left over after {after}" if after else "at the end"
      raise CodecError(f"corrupt {self._what}: {self.remaining} unexpected bytes {where}")


# ----------------------------------------------------------------------------- bit packing

def bits_for(alphabet_size: int) -> int:
  """Bits needed for a symbol in ``{0, ..., alphabet_size-1}`` (0 for a 1-symbol alphabet)."""
  if alphabet_size < 1:
    raise CodecError(f"alphabet_size must be >= 1, got {alphabet_size}")
  return int(alphabet_size - 1).bit_length()


def pack_bits(values: np.ndarray, bits: int) -> bytes:
  """values: int [N] in ``[0, 2**bits)`` -> ceil(N * bits / 8) bytes, MSB first, zero padded.

  Raises:
    CodecError: bits outside 0..32 or a value that does not fit.
  """
  if not 0 <= bits <= 32:
    raise CodecError(f"bits must be in 0..32, got {bits}")
  v = np.asarray(values).reshape(-1)
  if v.size and (not np.issubdtype(v.dtype, np.integer) or v.min() < 0 or
                 int(v.max()) >= (1 << bits)):
    raise CodecError(f"values must be integers in [0, 2**{bits}); got range "
                     f"[{v.min()}, {v.max()}] of dtype {v.dtype}")
  if bits == 0 or v.size == 0:
    return b""
  v = v.astype(np.uint64)
  shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
  bit_matrix = ((v[:, None] >> shifts[None, :]) & np.uint64(1)).astype(np.uint8)
  return np.packbits(bit_matrix.reshape(-1)).tobytes()


def unpack_bits(data: bytes, count: int, bits: int) -> np.ndarray:
  """The inverse of :func:`pack_bits` -> int64 [count].

  Raises:
    CodecError: the byte length is not exactly ceil(count * bits / 8) or padding bits are set.
  """
  if not 0 <= bits <= 32:
    raise CodecError(f"bits must be in 0..32, got {bits}")
  if count < 0:
    raise CodecError(f"count must be >= 0, got {count}")
  need = (count * bits + 7) // 8
  if len(data) != need:
    raise CodecError(f"corrupt bit-packed data: {len(data)} bytes for {count} values of "
                     f"{bits} bits (expected {need})")
  if bits == 0 or count == 0:
    return np.zeros(count, np.int64)
  flat = np.unpackbits(np.frombuffer(data, np.uint8))
  if flat[count * bits:].any():
    raise CodecError("corrupt bit-packed data: padding bits are not zero")
  bit_matrix = flat[:count * bits].reshape(count, bits).astype(np.int64)
  weights = (np.int64(1) << np.arange(bits - 1, -1, -1, dtype=np.int64))
  return bit_matrix @ weights


# ----------------------------------------------------------------------------- categorical

def _model(q: np.ndarray):
  import constriction  # pylint: disable=import-outside-toplevel
  return constriction.stream.model.Categorical(q.astype(np.float64), perfect=False)


def _quantize(hist: np.ndarray, shift: int) -> np.ndarray:
  return (hist + (1 << shift) - 1) >> shift


def _table_bytes(q: np.ndarray, shift: int, mode: int) -> bytes:
  w = ByteWriter().u8(mode).varint(shift)
  if mode == _SPARSE:
    used = np.flatnonzero(q)
    w.varint(used.size)
    prev = -1
    for s in used:
      w.varint(int(s) - prev - 1).varint(int(q[s]))
      prev = int(s)
  else:
    for value in q:
      w.varint(int(value))
  return w.getvalue()


def _estimated_bits(hist: np.ndarray, q: np.ndarray) -> float:
  used = hist > 0
  p = q[used] / q.sum()
  return float(-(hist[used] * np.log2(p)).sum())


def encode_categorical(symbols: np.ndarray, alphabet_size: int) -> bytes:
  """symbols: int [N] in ``[0, alphabet_size)`` -> a self-describing byte stream.

  The count N is not stored: the caller stores it (or knows it) and passes it to
  :func:`decode_categorical`.

  Raises:
    CodecError: a symbol outside the alphabet or a non-integer array.
  """
  import constriction  # pylint: disable=import-outside-toplevel
  s = np.asarray(symbols).reshape(-1)
  alphabet_size = int(alphabet_size)
  bits = bits_for(alphabet_size)
  if s.size == 0:
    return bytes([_EMPTY])
  if bits == 0:
    return bytes([_RAW])
  if not np.issubdtype(s.dtype, np.integer) or s.min() < 0 or s.max() >= alphabet_size:
    raise CodecError(f"symbols must be integers in [0, {alphabet_size}); got range "
                     f"[{s.min()}, {s.max()}] of dtype {s.dtype}")
  if s.size > MAX_COUNT:
    raise CodecError(f"{s.size} symbols in one stream; at most {MAX_COUNT}")
  hist = np.bincount(s, minlength=alphabet_size).astype(np.int64)
  used = np.count_nonzero(hist)
  if used == 1:
    return bytes([_CONST]) + encode_varint(int(s[0]))
  best = bytes([_RAW]) + pack_bits(s, bits)
  # Pick the table precision by the estimated total size, then encode for real once.
  max_shift = int(hist.max()).bit_length()
  candidates = []
  for shift in range(max_shift + 1):
    q = _quantize(hist, shift)
    for mode in (_SPARSE, _DENSE):
      if mode == _DENSE and alphabet_size > 4096:
        continue
      size = len(_table_bytes(q, shift, mode)) + _estimated_bits(hist, q) / 8 + 4
      candidates.append((size, shift, mode))
  _, shift, mode = min(candidates)
  q = _quantize(hist, shift)
  coder = constriction.stream.stack.AnsCoder()
  coder.encode_reverse(s.astype(np.int32), _model(q))
  words = coder.get_compressed().astype("<u4").tobytes()
  coded = _table_bytes(q, shift, mode) + words
  return coded if len(coded) < len(best) else best


def decode_categorical(data: bytes, count: int, alphabet_size: int) -> np.ndarray:
  """The inverse of :func:`encode_categorical` -> int64 [count].

  Raises:
    CodecError: the stream is truncated, inconsistent with ``count`` / ``alphabet_size``,
      or decodes to symbols its own model says cannot occur.
  """
  import constriction  # pylint: disable=import-outside-toplevel
  count, alphabet_size = int(count), int(alphabet_size)
  if not 0 <= count <= MAX_COUNT:
    raise CodecError(f"implausible symbol count {count}: must be in 0..{MAX_COUNT}")
  bits = bits_for(alphabet_size)
  r = ByteReader(data, "entropy-coded stream")
  if not data:
    raise CodecError("truncated entropy-coded stream: empty")
  mode = r.u8()
  if mode == _EMPTY:
    r.expect_end()
    if count:
      raise CodecError(f"corrupt entropy-coded stream: empty stream but {count} symbols expected")
    return np.zeros(0, np.int64)
  if count == 0:
    raise CodecError(f"corrupt entropy-coded stream: mode {_MODE_NAMES[mode] if mode < 5 else mode}"
                     " for 0 symbols")
  if mode == _CONST:
    symbol = r.varint(max_value=alphabet_size - 1)
    r.expect_end()
    return np.full(count, symbol, np.int64)
  if mode == _RAW:
    out = unpack_bits(r.rest(), count, bits)
    if out.size and out.max() >= alphabet_size:
      raise CodecError(f"corrupt entropy-coded stream: symbol {out.max()} outside the alphabet "
                       f"of {alphabet_size}")
    return out
  if mode not in (_SPARSE, _DENSE):
    raise CodecError(f"corrupt entropy-coded stream: unknown mode {mode}")
  shift = r.varint(max_value=40)
  q = np.zeros(alphabet_size, np.int64)
  if mode == _SPARSE:
    k = r.varint(max_value=alphabet_size)
    prev = -1
    for _ in range(k):
      prev = prev + 1 + r.varint(max_value=alphabet_size)
      if prev >= alphabet_size:
        raise CodecError(f"corrupt entropy-coded stream: model symbol {prev} outside the "
                         f"alphabet of {alphabet_size}")
      q[prev] = r.varint(max_value=count)
  else:
    for i in range(alphabet_size):
      q[i] = r.varint(max_value=count)
  if np.count_nonzero(q) < 2 or q.sum() > count or (q > 0).sum() > count:
    raise CodecError("corrupt entropy-coded stream: its model is inconsistent with "
                     f"{count} symbols")
  tail = r.rest()
  if not tail or len(tail) % 4:
    raise CodecError(f"corrupt entropy-coded stream: {len(tail)} coded bytes is not a positive "
                     "multiple of 4")
  try:
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(tail, "<u4").astype(np.uint32))
    out = np.asarray(coder.decode(_model(q), count), np.int64)
    exhausted = coder.is_empty()
  except Exception as e:  # constriction reports bad data as various errors  # noqa: BLE001
    raise CodecError(f"corrupt entropy-coded stream: {e}") from None
  if not exhausted:
    raise CodecError("corrupt entropy-coded stream: data left over after the last symbol")
  if out.size != count or out.min() < 0 or out.max() >= alphabet_size:
    raise CodecError("corrupt entropy-coded stream: decoded symbols outside the alphabet")
  hist = np.bincount(out, minlength=alphabet_size)
  if not np.array_equal(_quantize(hist, shift), q):
    raise CodecError("corrupt entropy-coded stream: decoded symbols do not match its model")
  return out
