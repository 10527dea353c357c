"""The sparse (rank, position, value) form of DCT images: round trip, order, end, capacity."""

import numpy as np
import pytest

from collage.ops import sparse_dct


def _random_image(layout, density=0.05, seed=0):
  rng = np.random.default_rng(seed)
  shape = (*layout.grid, layout.channels)
  nz = rng.random(shape) < density
  return np.where(nz, rng.integers(1, 40, shape) * rng.choice([-1, 1], shape), 0).astype(np.int32)


@pytest.mark.parametrize("color,order", [(False, "interleaved"), (True, "interleaved"),
                                         (True, "luma_first")])
def test_decode_of_encode_is_the_identity(color, order):
  layout = sparse_dct.layout_for(64, 32, color, 8, order)
  for seed in range(3):
    image = _random_image(layout, seed=seed)
    seq = sparse_dct.encode(image, layout, capacity=2048)
    assert int(seq["length"]) == np.count_nonzero(image) + 1 and not seq["truncated"]
    np.testing.assert_array_equal(np.asarray(sparse_dct.decode(seq, layout)), image)
  empty = np.zeros_like(image)
  seq = sparse_dct.encode(empty, layout, capacity=4)
  assert int(seq["length"]) == 1 and seq["ranks"][0] == layout.channels
  np.testing.assert_array_equal(np.asarray(sparse_dct.decode(seq, layout)), empty)


def test_components_round_trip_through_the_dct_image():
  rng = np.random.default_rng(1)
  y, cb, cr = (rng.integers(-5, 5, s) for s in ((4, 6, 64), (2, 3, 64), (2, 3, 64)))
  image = np.asarray(sparse_dct.dct_image((y, cb, cr)))
  assert image.shape == (2, 3, 384)
  # Grid cell (0, 1) holds luma blocks (0, 2), (0, 3), (1, 2), (1, 3) and chroma block (0, 1).
  np.testing.assert_array_equal(image[0, 1, 64:128], y[0, 3])
  np.testing.assert_array_equal(image[0, 1, 128:192], y[1, 2])
  np.testing.assert_array_equal(image[0, 1, 320:], cr[0, 1])
  for a, b in zip(sparse_dct.components_of(image, True), (y, cb, cr)):
    np.testing.assert_array_equal(np.asarray(a), b)


def test_the_order_is_channel_major_low_frequency_first_positions_in_raster_order():
  layout = sparse_dct.layout_for(32, 32, True, 8, "interleaved")
  ranks = layout.channel_of_rank()
  assert ranks[:6].tolist() == [0, 64, 128, 192, 256, 320]  # the DC of every component first
  assert ranks[6:8].tolist() == [1, 65]
  luma = sparse_dct.layout_for(32, 32, True, 8, "luma_first").channel_of_rank()
  assert set(luma[:256].tolist()) == set(range(256)) and luma[256:258].tolist() == [256, 320]
  seq = sparse_dct.encode(_random_image(layout, 0.2), layout, capacity=1024)
  n = int(seq["length"]) - 1
  key = seq["ranks"][:n].astype(np.int64) * layout.positions + seq["positions"][:n]
  assert np.all(np.diff(key) > 0)  # by rank, then by position; each (rank, position) once
  image = _random_image(layout, 0.2)
  seq = sparse_dct.encode(image, layout, capacity=1024)
  r, p = seq["ranks"][0], seq["positions"][0]
  assert image.reshape(-1, layout.channels)[p, ranks[r]] == seq["values"][0]


def test_end_of_sequence_and_padding():
  layout = sparse_dct.layout_for(16, 16, False)
  image = _random_image(layout, 0.1)
  n = np.count_nonzero(image)
  seq = sparse_dct.encode(image, layout, capacity=n + 5)
  assert seq["ranks"][n] == layout.channels  # end-of-sequence
  assert np.all(seq["ranks"][n:] == layout.channels)
  assert np.all(seq["positions"][n:] == 0) and np.all(seq["values"][n:] == 0)
  assert np.all(seq["values"][:n] != 0)


def test_a_sequence_longer_than_the_cap_is_an_error_or_an_explicit_truncation():
  layout = sparse_dct.layout_for(16, 16, False)
  image = _random_image(layout, 0.1)
  n = np.count_nonzero(image)
  with pytest.raises(ValueError, match=f"{n} non-zero coefficients.*truncate=True"):
    sparse_dct.encode(image, layout, capacity=n)  # no room for end-of-sequence
  seq = sparse_dct.encode(image, layout, capacity=n - 3, truncate=True)
  assert seq["truncated"] and int(seq["length"]) == n - 3
  assert np.all(seq["ranks"] < layout.channels)  # no end-of-sequence: it was cut
  full = sparse_dct.encode(image, layout, capacity=n + 1)
  np.testing.assert_array_equal(seq["values"], full["values"][:n - 3])


def test_values_beyond_the_vocabulary_are_an_error_or_explicitly_clipped():
  layout = sparse_dct.layout_for(8, 8, False)
  image = np.zeros((1, 1, 64), np.int32)
  image[0, 0, 0] = 300
  with pytest.raises(ValueError, match="exceeds the vocabulary's max_value 255"):
    sparse_dct.encode(image, layout, 8, max_value=255)
  seq = sparse_dct.encode(image, layout, 8, max_value=255, clip_values=True)
  assert seq["values"][0] == 255
  with pytest.raises(ValueError, match="does not match the layout"):
    sparse_dct.encode(np.zeros((2, 1, 64)), layout, 8)
  with pytest.raises(ValueError, match="valid: interleaved, luma_first"):
    sparse_dct.layout_for(8, 8, False, order="zigzag")
