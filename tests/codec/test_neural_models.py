"""The neural codec's models (:mod:`collage.codec.neural_models`): tiles run in chunks of
few shapes, every tile kept in place."""

import numpy as np

from collage.codec import neural_models, neural_tiles
from tests.codec.neural_helpers import make_image


def test_tile_subsets_of_any_size_compile_a_bounded_number_of_shapes(codec):
  """The per-tile choice runs the models on tile subsets of every size; the jitted passes
  must see few batch shapes (one per size compiled without end and ran out of memory)."""
  m = codec.models[0]
  tiles = neural_tiles.image_tiles(make_image(16, 16 * 40, 3, seed=9), 16)
  before = m._synthesise._cache_size()  # pylint: disable=protected-access
  for n in range(1, 41):
    q = m.analyse(tiles[:n])
    assert m.synthesise(q, 3).shape == (n, 16, 16, 3)
  assert m._synthesise._cache_size() - before <= 7  # pylint: disable=protected-access
  assert m._analyse._cache_size() <= 8  # pylint: disable=protected-access


def test_chunks_pad_little_and_keep_every_tile_in_place(codec):
  """Tiles run ENCODE_BATCH at a time, the rest in power-of-two chunks (few shapes, at most 7
  padded rows); a chunked synthesis returns every tile where it belongs."""
  assert neural_models.ENCODE_BATCH == 64
  assert neural_models.chunk_sizes(96) == [64, 32]
  assert neural_models.chunk_sizes(176) == [64, 64, 32, 16]
  assert neural_models.chunk_sizes(100) == [64, 32, 8]   # 36 rounded up to 40
  assert neural_models.chunk_sizes(6) == [8] and neural_models.chunk_sizes(1) == [1]
  assert neural_models.chunk_sizes(0) == []
  shapes = set()
  for n in range(1, 400):
    sizes = neural_models.chunk_sizes(n)
    assert n <= sum(sizes) <= n + 7 and sizes == sorted(sizes, reverse=True)
    shapes.update(sizes)
  assert shapes == {1, 2, 4, 8, 16, 32, 64}
  m = codec.models[0]
  tiles = neural_tiles.image_tiles(make_image(16 * 10, 16 * 10, 3, seed=4), 16)  # 100 tiles
  q = m.analyse(tiles)
  out = m.synthesise(q, 3)
  assert out.shape == (100, 16, 16, 3)
  for i in (0, 63, 64, 95, 96, 99):  # first / last of each chunk
    np.testing.assert_array_equal(q[i], m.analyse(tiles[i:i + 1])[0])
    np.testing.assert_allclose(out[i], m.synthesise(q[i:i + 1], 3)[0], atol=1e-6)

