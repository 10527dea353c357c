"""Entropy coding, bit packing and the payload layout helpers."""

import numpy as np
import pytest

from collage.codec import entropy
from collage.codec.base import CodecError


@pytest.mark.parametrize("bits", [0, 1, 3, 7, 8, 13, 32])
def test_pack_bits_round_trip(bits):
  rng = np.random.default_rng(bits)
  values = rng.integers(0, 1 << bits, 101, dtype=np.int64) if bits else np.zeros(101, np.int64)
  data = entropy.pack_bits(values, bits)
  assert len(data) == (101 * bits + 7) // 8
  np.testing.assert_array_equal(entropy.unpack_bits(data, 101, bits), values)


def test_pack_bits_errors():
  with pytest.raises(CodecError, match=r"\[0, 2\*\*3\)"):
    entropy.pack_bits(np.array([8]), 3)
  with pytest.raises(CodecError, match="expected 2"):
    entropy.unpack_bits(b"\0", 3, 5)
  with pytest.raises(CodecError, match="padding"):
    entropy.unpack_bits(b"\x01", 1, 3)


@pytest.mark.parametrize("n, alphabet, p", [
    (0, 5, 0.5), (1, 5, 0.5), (7, 1, 0.5), (1000, 2, 0.9), (5000, 16, 0.3), (4000, 4096, 0.01),
    (3000, 100000, 0.001), (20, 256, 0.01)])
def test_categorical_round_trip(n, alphabet, p):
  rng = np.random.default_rng(n)
  symbols = np.minimum(rng.geometric(p, n) - 1, alphabet - 1)
  data = entropy.encode_categorical(symbols, alphabet)
  np.testing.assert_array_equal(entropy.decode_categorical(data, n, alphabet), symbols)
  # Never more than one byte over plain bit packing.
  assert len(data) <= len(entropy.pack_bits(symbols, entropy.bits_for(alphabet))) + 1


def test_categorical_single_symbol_is_tiny():
  data = entropy.encode_categorical(np.full(10000, 42), 128)
  assert len(data) == 2
  np.testing.assert_array_equal(entropy.decode_categorical(data, 10000, 128), 42)


def test_categorical_errors():
  with pytest.raises(CodecError, match=r"\[0, 4\)"):
    entropy.encode_categorical(np.array([0, 4]), 4)
  data = entropy.encode_categorical(np.array([0, 1, 1, 2] * 50), 4)
  with pytest.raises(CodecError):
    entropy.decode_categorical(data, 201, 4)     # wrong count
  with pytest.raises(CodecError):
    entropy.decode_categorical(data[:-4], 200, 4)
  with pytest.raises(CodecError):
    entropy.decode_categorical(b"", 3, 4)
  with pytest.raises(CodecError, match="unknown mode"):
    entropy.decode_categorical(b"\x09", 3, 4)


def test_categorical_corruptions_are_detected_or_valid():
  """Without the container's checksum, corruption raises CodecError or yields valid symbols."""
  rng = np.random.default_rng(0)
  symbols = np.minimum(rng.geometric(0.2, 400) - 1, 31)
  data = entropy.encode_categorical(symbols, 32)
  detected = 0
  for _ in range(500):
    bad = bytearray(data)
    bad[rng.integers(len(bad))] ^= 1 << int(rng.integers(8))
    try:
      out = entropy.decode_categorical(bytes(bad), 400, 32)
    except CodecError:
      detected += 1
      continue
    assert out.shape == (400,) and out.min() >= 0 and out.max() < 32
  assert detected > 450


def test_entropy_coding_beats_bit_packing_on_skewed_data():
  """Bench note (sizes in bytes, 16384 symbols, 5 bits raw = 10240 bytes):
  geometric p=0.5 over 32 symbols -> ~4100 bytes; p=0.2 -> ~7850 (entropy ~3.6 bits)."""
  rng = np.random.default_rng(0)
  raw = len(entropy.pack_bits(np.zeros(16384, np.int64), 5))
  for p, ratio in [(0.5, 0.45), (0.2, 0.8)]:
    symbols = np.minimum(rng.geometric(p, 16384) - 1, 31)
    coded = len(entropy.encode_categorical(symbols, 32))
    hist = np.bincount(symbols, minlength=32) / symbols.size
    entropy_bytes = -(hist[hist > 0] * np.log2(hist[hist > 0])).sum() * symbols.size / 8
    assert coded < ratio * raw
    assert coded < entropy_bytes * 1.02 + 40


def test_byte_reader_writer():
  w = entropy.ByteWriter().varint(0).varint(300).svarint(-5).u8(7).section(b"abc").raw(b"xy")
  r = entropy.ByteReader(w.getvalue())
  assert (r.varint(), r.varint(), r.svarint(), r.u8(), r.section(), r.raw(2)) == (
      0, 300, -5, 7, b"abc", b"xy")
  r.expect_end()
  with pytest.raises(CodecError, match="truncated"):
    entropy.ByteReader(b"\x80").varint()
  with pytest.raises(CodecError, match="truncated"):
    entropy.ByteReader(b"\x05ab").section()
  with pytest.raises(CodecError, match="exceeds its limit"):
    entropy.ByteReader(b"\x05").varint(max_value=4)
  with pytest.raises(CodecError, match="unexpected bytes"):
    entropy.ByteReader(b"\x05").expect_end()
