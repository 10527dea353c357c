"""The container format: round trip, every documented error, and a corruption fuzz test."""

import zlib

import numpy as np
import pytest

from collage.codec import container, entropy
from collage.codec.base import CodecError


def _file(codec_id=7, h=32, w=48, c=3, params=b"\x01\x02", payload=b"hello payload"):
  return container.pack(codec_id, h, w, c, params, payload)


def test_round_trip_and_describe():
  data = _file()
  header, params, payload = container.unpack(data, expected_codec_id=7)
  assert header == container.Header(version=1, codec_id=7, height=32, width=48, channels=3)
  assert (params, payload) == (b"\x01\x02", b"hello payload")
  info = container.describe(data)
  assert info["file_bytes"] == len(data)
  assert info["payload_bytes"] == 13 and info["params_bytes"] == 2
  assert info["bpp"] == pytest.approx(8 * len(data) / (32 * 48))
  assert info["overhead_bytes"] == len(data) - 15


def test_empty_sections_and_large_geometry():
  data = container.pack(0, 65536, 1, 1, b"", b"")
  header, params, payload = container.unpack(data)
  assert (header.height, header.width, params, payload) == (65536, 1, b"", b"")


def _with_crc(body: bytes) -> bytes:
  return body + zlib.crc32(body).to_bytes(4, "little")


@pytest.mark.parametrize("data, message", [
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "not a collage codec file"),
    (b"", "truncated"),
    (b"CL", "truncated"),
    (b"CLG\x1a", "truncated"),
    (_with_crc(b"CLG\x1a\x09\x01\x01\x01\x01\x00\x00"), "unsupported format version 9; "
     r"this build reads version\(s\) 1"),
])
def test_header_errors(data, message):
  with pytest.raises(CodecError, match=message):
    container.unpack(data)


def test_truncation_trailing_checksum_and_codec_id():
  data = _file()
  for cut in range(1, len(data)):
    with pytest.raises(CodecError, match="truncated|checksum"):
      container.unpack(data[:cut])
  with pytest.raises(CodecError, match="trailing"):
    container.unpack(data + b"\0")
  flipped = bytearray(data)
  flipped[-6] ^= 0x10
  with pytest.raises(CodecError, match="checksum mismatch"):
    container.unpack(bytes(flipped))
  with pytest.raises(CodecError, match="wrong codec: .*codec id 7 .* expected codec id 3"):
    container.unpack(data, expected_codec_id=3)


def _flip(data: bytes, i: int, mask: int = 0x01) -> bytes:
  d = bytearray(data)
  d[i] ^= mask
  return bytes(d)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: _flip(d, 2), r"signature \(the first 4 bytes\) is damaged; the rest of the file "
     "is intact"),
    (lambda d: _flip(d, 4, 0x08), r"format version byte is damaged \(reads 9; the checksum "
     r"shows it was written as version 1\)"),
    (lambda d: _flip(d, 5), r"^corrupt file: checksum mismatch \(the file was damaged"),  # id
    (lambda d: _flip(d, 8, 0x04), "checksum mismatch, and the header is damaged: unsupported "
     "channel count 7; valid: 1, 3"),
    (lambda d: _flip(d, 9, 0x02), r"checksum mismatch, and the header is damaged: its section "
     r"lengths \(params 0, payload 1 bytes\) do not add up to the file's 30 bytes"),
    (lambda d: _flip(d, 9, 0x10), "truncated file, or a damaged header: the params section "
     "declares 18 bytes"),
    (lambda d: d + b"\0\0", r"2 unexpected trailing bytes after the checksum \(the file before "
     r"them is intact\)"),
    (lambda d: d[:-1], "truncated file, or a damaged header: the payload section"),
])
def test_each_kind_of_damage_is_named(mutate, message):
  data = _file()  # magic 0-3, version 4, codec id 5, height 6, width 7, channels 8, params 9..
  with pytest.raises(CodecError, match=message):
    container.unpack(mutate(data))


def test_a_faulty_writer_is_told_from_damage():
  """A file whose checksum matches but whose section lengths do not fit was written so."""
  body = b"CLG\x1a\x01\x07\x02\x02\x01\x00\x01"  # the payload's 1 byte is missing
  with pytest.raises(CodecError, match="file ends 1 bytes early .*faulty writer"):
    container.unpack(_with_crc(body))
  body = b"CLG\x1a\x01\x07\x02\x02\x01\x00\x00\x00"  # a byte the lengths do not cover
  with pytest.raises(CodecError, match="cover 15 of its 16 bytes .*faulty writer"):
    container.unpack(_with_crc(body))


def test_implausible_geometry():
  with pytest.raises(CodecError, match="implausible image size 0x5"):
    container.pack(1, 0, 5, 3, b"", b"")
  with pytest.raises(CodecError, match="unsupported channel count 2; valid: 1, 3"):
    container.pack(1, 5, 5, 2, b"", b"")
  # A file that declares zero height but has a valid checksum is still rejected.
  body = b"CLG\x1a\x01\x01\x00\x05\x03\x00\x00"
  with pytest.raises(CodecError, match="implausible image size 0x5"):
    container.unpack(_with_crc(body))


def _corrupt(data: bytes, rng: np.random.Generator) -> bytes:
  d = bytearray(data)
  kind = rng.integers(6)
  if kind == 0:                       # flip 1..3 random bits
    for _ in range(rng.integers(1, 4)):
      i = rng.integers(len(d))
      d[i] ^= 1 << int(rng.integers(8))
  elif kind == 1:                     # truncate
    d = d[:rng.integers(len(d))]
  elif kind == 2:                     # insert random bytes
    i = rng.integers(len(d) + 1)
    d[i:i] = rng.integers(0, 256, rng.integers(1, 5), dtype=np.uint8).tobytes()
  elif kind == 3:                     # overwrite a run with random bytes
    i = rng.integers(len(d))
    n = int(rng.integers(1, 9))
    d[i:i + n] = rng.integers(0, 256, min(n, len(d) - i), dtype=np.uint8).tobytes()
  elif kind == 4:                     # delete a run
    i = rng.integers(len(d))
    del d[i:i + int(rng.integers(1, 5))]
  else:                               # append garbage
    d += rng.integers(0, 256, rng.integers(1, 5), dtype=np.uint8).tobytes()
  return bytes(d)


def _decode_file(data: bytes):
  header, params, payload = container.unpack(data, expected_codec_id=5)
  r = entropy.ByteReader(params, "params")
  n, a = r.varint(), r.varint()
  r.expect_end()
  return entropy.decode_categorical(payload, n, a)


def test_fuzz_corruptions_raise_only_codec_error():
  rng = np.random.default_rng(1234)
  originals = []
  for n, a in [(300, 64), (50, 4), (1, 9), (0, 3), (2000, 1024)]:
    symbols = np.minimum(rng.geometric(0.2, n) - 1, a - 1)
    params = entropy.ByteWriter().varint(n).varint(a).getvalue()
    data = container.pack(5, 17, 23, 1, params, entropy.encode_categorical(symbols, a))
    assert np.array_equal(_decode_file(data), symbols)
    originals.append(data)
  trials = 0
  for _ in range(10000):
    data = originals[rng.integers(len(originals))]
    bad = _corrupt(data, rng)
    if bad == data:
      continue
    trials += 1
    with pytest.raises(CodecError):
      _decode_file(bad)
  assert trials > 9900
