import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from collage.ops import blocks


def _img(b=2, h=8, w=12, c=3, seed=0):
  return jnp.asarray(np.random.default_rng(seed).random((b, h, w, c), np.float32))


def test_blocks_roundtrip():
  z = _img()
  bl = blocks.to_blocks(z, 4, 3)
  assert bl.shape == (2, 2, 4, 4, 3, 3)
  np.testing.assert_array_equal(blocks.from_blocks(bl), z)
  np.testing.assert_array_equal(bl[1, 1, 2], z[1, 4:8, 6:9])


def test_non_tiling_raises_with_valid_choices():
  with pytest.raises(ValueError, match="does not tile"):
    blocks.to_blocks(_img(), 5, 4)


def test_strided_blocks_match_slices():
  z = _img(h=8, w=8)
  bl = blocks.strided_blocks(z, 4, 4, 2, 2)
  assert bl.shape == (2, 3, 3, 4, 4, 3)
  np.testing.assert_array_equal(bl[0, 1, 2], z[0, 2:6, 4:8])


def test_mean_pool_and_upsample_are_adjoint_like():
  z = _img()
  np.testing.assert_allclose(blocks.mean_pool(blocks.upsample_nearest(z, 2), 2), z, rtol=1e-6)
  np.testing.assert_allclose(blocks.mean_pool(z, (2, 3))[0, 0, 0], z[0, :2, :3].mean((0, 1)),
                             rtol=1e-6)


def test_upsample_smooth_pools_back_and_beats_nearest_on_smooth_images():
  z = _img()
  for k in (2, 3):
    up = blocks.upsample_smooth(z, k)
    assert up.shape == (z.shape[0], z.shape[1] * k, z.shape[2] * k, z.shape[3])
    np.testing.assert_allclose(blocks.mean_pool(up, k), z, atol=1e-6)
  # On a smooth image it recovers the high resolution better than nearest does.
  yy, xx = jnp.meshgrid(jnp.linspace(0, 3, 48), jnp.linspace(0, 2, 48), indexing="ij")
  hi = (jnp.sin(yy) * jnp.cos(xx))[None, :, :, None]
  lo = blocks.mean_pool(hi, 4)
  err = lambda a: float(jnp.mean((a - hi) ** 2))
  assert err(blocks.upsample_smooth(lo, 4)) < 0.5 * err(blocks.upsample_nearest(lo, 4))
  # A linear ramp stays a ramp away from the edges (bilinear is exact there).
  ramp = jnp.arange(8.0)[None, None, :, None] * jnp.ones((1, 8, 1, 1))
  up = np.asarray(blocks.upsample_smooth(ramp, 2))[0, 4, 2:-2, 0]
  np.testing.assert_allclose(np.diff(up), 0.5, atol=1e-5)
  assert blocks.upsample_smooth(z, 1) is z


def test_isometries_are_eight_distinct_bijections():
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  outs = [np.asarray(blocks.isometry(x, k)) for k in range(8)]
  for o in outs:  # a permutation of the pixels
    np.testing.assert_array_equal(np.sort(o.ravel()), np.arange(16.0))
  for a, b in itertools.combinations(range(8), 2):
    assert not np.array_equal(outs[a], outs[b]), (a, b)
  # a group: composing any two gives one of the eight
  for a, b in itertools.product(range(8), repeat=2):
    comp = np.asarray(blocks.isometry(blocks.isometry(x, a), b))
    assert any(np.array_equal(comp, o) for o in outs)


def test_rotation_of_non_square_block_is_rejected():
  with pytest.raises(ValueError, match="square"):
    blocks.isometry(jnp.zeros((4, 2, 1)), 1)
  assert blocks.isometries(jnp.zeros((4, 2, 1)), blocks.SHAPE_PRESERVING).shape == (4, 4, 2, 1)
