"""The neural codec's file format (:mod:`collage.codec.neural_format`): per-tile
(versions 2 and 4), variable-rate (3) and downscaled (5 and 6) parameters are written,
read back, and checked."""

import types
from fractions import Fraction

import numpy as np
import pytest

from collage.codec import base, container, neural, neural_format, neural_tiles
from collage.codec.entropy import ByteWriter
from tests.codec.neural_helpers import make_image


def test_mixed_code_round_trips_bit_exactly(codec):
  """A code that mixes models per tile is written as a version-2 file and decoded exactly."""
  img = make_image(40, 56, 3, seed=6)
  lo, hi = codec.models
  n = 3 * 4
  choice = np.arange(n) % 2                       # alternate the models tile by tile
  tiles = neural_tiles.image_tiles(img, lo.cfg.tile)
  codes = tuple(m.analyse(tiles[choice == k]) for k, m in enumerate((lo, hi)))
  code = neural_format.TileCode((lo, hi), choice, codes)
  data = codec.write_code(code, 40, 56, 3)
  assert container.unpack(data)[1][0] == neural_format.MIXED_VERSION
  dec, header = codec.decode_code(data)
  assert dec.models == (lo, hi) and (header.height, header.width) == (40, 56)
  np.testing.assert_array_equal(dec.choice, choice)
  for a, b in zip(dec.codes, codes):
    np.testing.assert_array_equal(a, b)
  out = codec.decompress(data)
  np.testing.assert_array_equal(out, codec.reconstruct(code, 40, 56, 3))
  # Every tile is the one its own model decodes.
  for k, m in enumerate((lo, hi)):
    alone = neural.NeuralCollageCodec(model=m.directory)
    ref = alone.reconstruct(neural_format.TileCode.single(m, m.analyse(tiles)), 40, 56, 3)
    mask = np.kron(choice.reshape(3, 4) == k, np.ones((16, 16), bool))[:40, :56]
    np.testing.assert_array_equal(out[mask], ref[mask])
  assert codec.decompress(data, scale=2).shape == (80, 112, 3)


def test_corrupt_mixed_files_are_rejected(codec):
  lo, hi = codec.models

  def params(k, prints, tile=16, coding=0):
    w = ByteWriter().u8(neural_format.MIXED_VERSION).varint(k)
    for p in prints:
      w.raw(p)
    return w.varint(tile).u8(coding).getvalue()

  good = codec.compress(make_image(16, 32, 3), 50)
  payload = container.unpack(good)[2]
  cases = [
      (params(1, [lo.fingerprint]), "needs 2"),
      (params(2, [lo.fingerprint, b"\x01" * 8]), "not among the models"),
      (params(2, [lo.fingerprint, hi.fingerprint], tile=8), "do not match model"),
      (params(2, [lo.fingerprint, hi.fingerprint], coding=1), "do not match model"),
      (params(2, [lo.fingerprint, hi.fingerprint]) + b"\x00", "neural codec parameters"),
      (params(2, [lo.fingerprint, hi.fingerprint]), None),  # payload cut below
  ]
  for p, match in cases:
    body = payload if match else payload[:5]
    with pytest.raises(base.CodecError, match=match or "corrupt neural payload"):
      codec.decompress(container.pack(2, 16, 32, 3, p, body))


def test_version_4_files_are_written_and_checked(vmodel, models):
  """A hand-made two-quality code round-trips as version 4; bad qualities and fixed-rate
  models in a version-4 header are rejected."""
  codec = neural.NeuralCollageCodec(model=vmodel)
  (m,) = codec.models
  tiles = neural_tiles.image_tiles(make_image(16, 32, 3), 16)
  qa, qb = m.analyse(tiles[:1], quality=10), m.analyse(tiles[1:], quality=90)
  code = neural_format.TileCode((m, m), np.array([0, 1]), (qa, qb), (10, 90))
  data = codec.write_code(code, 16, 32, 3)
  params, payload = container.unpack(data)[1:]
  assert params[0] == neural_format.RATE_MIXED_VERSION
  dec, _ = codec.decode_code(data)
  assert dec.qualities == (10, 90)
  np.testing.assert_array_equal(dec.codes[1], qb)
  assert codec.describe(data)["quality"] == "per tile among 10, 90"

  def header(q1, fp2=m.fingerprint):
    return (ByteWriter().u8(neural_format.RATE_MIXED_VERSION).varint(2).raw(m.fingerprint).u8(q1)
            .raw(fp2).u8(90).varint(16).u8(0).getvalue())

  with pytest.raises(base.CodecError, match="quality 0 is not in 1..100"):
    codec.decompress(container.pack(2, 16, 32, 3, header(0), payload))
  fixed = neural.NeuralCollageCodec(model=models).models[0]
  with pytest.raises(base.CodecError, match="not among the models"):
    codec.decompress(container.pack(2, 16, 32, 3, header(10, fixed.fingerprint), payload))
  with pytest.raises(base.CodecError, match="not both"):
    codec.write_code(neural_format.TileCode((m, fixed), np.array([0, 1]), (qa, qb), (10, None)),
                     16, 32, 3)


def test_variable_rate_files_are_checked(vmodel, models):
  codec = neural.NeuralCollageCodec(model=vmodel)
  (m,) = codec.models
  data = codec.compress(make_image(16, 16, 3), 50)
  _, params, payload = container.unpack(data)
  for quality in (0, 101):  # out of range
    bad = container.pack(2, 16, 16, 3, params[:-1] + bytes([quality]), payload)
    with pytest.raises(base.CodecError, match="quality .* is not in 1..100"):
      codec.decompress(bad)
  v1 = params[:1].replace(b"\x03", b"\x01") + params[1:-1]  # a fixed-rate header, this model
  with pytest.raises(base.CodecError, match="names variable-rate model"):
    codec.decompress(container.pack(2, 16, 16, 3, v1, payload))
  with pytest.raises(base.CodecError, match="no quality|needs a quality"):
    q = codec.encode_code(make_image(16, 16, 3), 5).q
    codec.write_code(neural_format.TileCode.single(m, q), 16, 16, 3)


def test_downscale_is_checked(codec, models):
  for bad in (0, 5, True, 1.3, 4.25, "2.1", "3/0", "x", None, [2]):
    with pytest.raises(base.CodecError, match=r"downscale must be a number in 1..4 in steps "
                                              r"of 1/4"):
      neural.NeuralCollageCodec(model=models, downscale=bad)
  for good, value in ((1.5, Fraction(3, 2)), ("3/2", Fraction(3, 2)), (" 1.25", Fraction(5, 4)),
                      (np.int64(2), 2), (Fraction(7, 4), Fraction(7, 4)), ("4", 4)):
    assert neural.NeuralCollageCodec(model=models, downscale=good).downscale == value
  small = neural.NeuralCollageCodec(model=models, downscale=2)
  img = make_image(20, 30, 3)
  data = small.compress(img, 50)
  header, params, payload = container.unpack(data)
  for d in (1, 9):
    with pytest.raises(base.CodecError, match=f"downscale {d} is not in 2..4"):
      small.decompress(container.pack(2, 20, 30, 3, params[:1] + bytes([d]) + params[2:],
                                      payload))
  nested = params[:2] + params
  with pytest.raises(base.CodecError, match="unsupported neural codec parameter version 5"):
    small.decompress(container.pack(2, 20, 30, 3, nested, payload))
  # The same payload declared as a full-size code has too few tiles for the image.
  with pytest.raises(base.CodecError, match="corrupt neural payload"):
    small.decompress(container.pack(2, 20, 30, 3, params[2:], payload))
  # A full-size code is not written as a downscaled one.
  code = codec.encode_code(make_image(40, 60, 3), 50)
  with pytest.raises(base.CodecError, match="does not cover"):
    codec.write_code(neural_format.TileCode(code.models, code.choice, code.codes, code.qualities,
                                            2), 40, 60, 3)
  # A downscaled decode's memory counts its tiles at scale * downscale.
  assert small.decode_bytes(100, 100, 3, 4, 2) > small.decode_bytes(100, 100, 3, 4)
  assert small.decode_bytes(100, 100, 3, 4, 1.5) == small.decode_bytes(100, 100, 3, 4, 3)


def test_fractional_downscale_is_checked(models):
  small = neural.NeuralCollageCodec(model=models, downscale=1.5)
  data = small.compress(make_image(40, 60, 3), 50)  # coded at 27 x 40: 2 x 3 tiles of 16
  _, params, payload = container.unpack(data)
  assert params[:3] == bytes([neural_format.FRACTIONAL_VERSION, 3, 2])
  # Not in lowest terms, a whole number (version 5's), a denominator the format does not
  # have, at or under 1, over 4.
  for p, q in ((6, 4), (4, 2), (2, 1), (4, 3), (3, 4), (2, 2), (17, 4), (9, 2), (0, 2)):
    with pytest.raises(base.CodecError, match=f"downscale {p}/{q} is not a fraction"):
      small.decompress(container.pack(2, 40, 60, 3, params[:1] + bytes([p, q]) + params[3:],
                                      payload))
  with pytest.raises(base.CodecError, match="unsupported neural codec parameter version 6; "
                                            "this build reads versions 1, 2, 3, 4 inside 6"):
    small.decompress(container.pack(2, 40, 60, 3, params[:3] + params, payload))
  # Another fraction with the same payload declares another coded size (7/2: 12 x 18, 1 x 2
  # tiles): refused.
  with pytest.raises(base.CodecError, match="corrupt neural payload"):
    small.decompress(container.pack(2, 40, 60, 3, params[:1] + bytes([7, 2]) + params[3:],
                                    payload))
  # The decoder averages q x q blocks of decoded tiles: the model's tile must be a multiple
  # of q.
  odd = types.SimpleNamespace(cfg=types.SimpleNamespace(tile=6), name="odd")
  code = small.encode_code(make_image(40, 60, 3), 50)
  with pytest.raises(base.CodecError, match="downscale 5/4 needs a tile that is a multiple "
                                            "of 4"):
    neural_format.TileCode((odd,), code.choice, code.codes, code.qualities, Fraction(5, 4))

