"""The PIFS codec: real bytes, bit-exact round trips, monotone rate, clear errors."""

import numpy as np
import pytest

from collage.codec import container
from collage.codec.base import CodecError, get_codec
from collage.codec.pifs import PIFSCodec, quality_to_threshold


def make_image(h=48, w=64, c=1, seed=0):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w] / 7.0
  chans = [0.5 + 0.3 * np.sin(x * (1 + k / 3) + np.cos(y / 2)) + 0.03 * rng.standard_normal((h, w))
           for k in range(c)]
  return np.round(np.clip(np.stack(chans, -1), 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def codec():
  return PIFSCodec()


def test_registered():
  assert isinstance(get_codec("pifs"), PIFSCodec)
  assert PIFSCodec.codec_id == 1


def test_round_trip_bit_exact_and_deterministic(codec):
  img = make_image()
  data = codec.compress(img, 60)
  assert codec.compress(img, 60) == data
  own = codec.reconstruct(codec.encode(img, 60))
  out = codec.decompress(data)
  assert out.dtype == np.uint8 and out.shape == img.shape
  np.testing.assert_array_equal(out, own)


def test_colour_odd_size_and_scale(codec):
  img = make_image(37, 53, 3)
  data = codec.compress(img, 50)
  assert codec.decompress(data).shape == (37, 53, 3)
  assert codec.decompress(data, scale=2).shape == (74, 106, 3)


def test_quality_monotone_in_rate(codec):
  img = make_image()
  assert all(quality_to_threshold(q) > quality_to_threshold(q + 1) for q in range(1, 100))
  sizes = [len(codec.compress(img, q)) for q in (10, 50, 90)]
  assert sizes[0] < sizes[1] < sizes[2], sizes


def test_files_without_domain_cap_still_decode(codec):
  # Files written before the domain cap (params byte 6 = 0, stride = range / stride_div).
  img = make_image()
  # (On this small image the cap does not bind, so the shapes, and compiles, are shared.)
  old = PIFSCodec(domain_cap_log2=0)
  data = old.compress(img, 60)
  _, params, _ = container.unpack(data)
  assert params[6] == 0
  np.testing.assert_array_equal(codec.decompress(data), old.reconstruct(old.encode(img, 60)))


def test_plain_bit_packing_option_decodes_the_same(codec):
  img = make_image()
  raw = PIFSCodec(entropy_coding=False)
  np.testing.assert_array_equal(raw.decompress(raw.compress(img, 60)),
                                codec.decompress(codec.compress(img, 60)))


def test_bad_inputs_raise_codec_error(codec):
  with pytest.raises(CodecError):
    codec.compress(make_image().astype(np.float32), 50)
  with pytest.raises(CodecError):
    codec.compress(make_image(), 0)
  with pytest.raises(CodecError):
    codec.decompress(b"not a file at all")
  other = container.pack(7, 48, 64, 1, b"", b"")
  with pytest.raises(CodecError, match="codec"):
    codec.decompress(other)


def test_corrupted_files_raise_codec_error(codec):
  img = make_image()
  data = codec.compress(img, 60)
  header, params, payload = container.unpack(data)
  rng = np.random.default_rng(0)
  # Any damage to the file itself is caught (truncation, flips: checksum).
  for _ in range(50):
    bad = bytearray(data)
    bad[rng.integers(len(bad))] ^= 1 << int(rng.integers(8))
    with pytest.raises(CodecError):
      codec.decompress(bytes(bad))
  for n in (0, 5, len(data) // 2, len(data) - 1):
    with pytest.raises(CodecError):
      codec.decompress(data[:n])
  # Damaged params / payload behind a valid checksum: CodecError or a well-formed image.
  bad_params = [b"", params[:-1], bytes([3]) + params[1:], params[:6] + b"\xff" + params[7:],
                params[:7] + b"\x00\x00\x80\x3f"]
  for p in bad_params:
    with pytest.raises(CodecError):
      codec.decompress(container.pack(1, header.height, header.width, 1, p, payload))
  for cut in (0, 1, len(payload) // 2, len(payload) - 1):
    with pytest.raises(CodecError):
      codec.decompress(container.pack(1, header.height, header.width, 1, params, payload[:cut]))
  with pytest.raises(CodecError):
    codec.decompress(container.pack(1, header.height, header.width, 3, params, payload))
  for _ in range(40):
    bad = bytearray(payload)
    for _ in range(int(rng.integers(1, 4))):
      bad[rng.integers(len(bad))] = int(rng.integers(256))
    try:
      out = codec.decompress(container.pack(1, header.height, header.width, 1, params,
                                            bytes(bad)))
    except CodecError:
      continue
    assert out.shape == img.shape and out.dtype == np.uint8
