"""Point-cloud IFS: contractive parametrization, chaos game, and recovery of the Sierpinski IFS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.ops import ifs


def test_maps_are_contractive_for_any_raw_values():
  raw = 10.0 * jax.random.normal(jax.random.PRNGKey(0), (50, 6))
  maps = ifs.maps_from_raw(raw, s_max=0.8)
  assert maps.A.shape == (50, 2, 2) and maps.t.shape == (50, 2)
  sv = jnp.linalg.svd(maps.A, compute_uv=False)
  assert float(jnp.max(sv)) <= 0.8 + 1e-6  # tanh saturates to 1 in float32
  with pytest.raises(ValueError, match=r"\[k, 6\]"):
    ifs.maps_from_raw(raw[:, :5])


def test_chamfer_basics():
  a = jnp.array([[0.0, 0.0], [1.0, 0.0]])
  assert float(ifs.chamfer(a, a)) == 0.0
  b = a + jnp.array([0.0, 0.5])
  np.testing.assert_allclose(ifs.chamfer(a, b), 0.5, rtol=1e-6)  # 0.25 each way


def test_chaos_game_stays_on_the_sierpinski_triangle():
  pts = np.asarray(ifs.chaos_game(ifs.SIERPINSKI, jax.random.PRNGKey(0), 2000))
  assert pts.shape == (2000, 2)
  x, y = pts[:, 0], pts[:, 1]
  # The triangle (0,0), (1,0), (0.5,1): y >= 0, y <= 2x, y <= 2(1 - x).
  assert np.all(y >= -1e-5) and np.all(y <= 2 * x + 1e-5) and np.all(y <= 2 * (1 - x) + 1e-5)
  # The attractor is invariant: the collage loss of the true maps is tiny.
  assert float(ifs.chamfer(pts, ifs.hutchinson(ifs.SIERPINSKI, pts))) < 1e-4
  img = ifs.rasterize(jnp.asarray(pts), 32)
  assert img.shape == (32, 32) and 0.0 <= float(img.min()) and float(img.max()) == 1.0
  assert float(img[0, 0]) == 0.0  # top-left corner is outside the triangle


def test_fit_recovers_sierpinski():
  target = ifs.chaos_game(ifs.SIERPINSKI, jax.random.PRNGKey(0), 256)
  res = jax.jit(lambda p, k: ifs.fit(p, k, 3, steps=600, restarts=4))(
      target, jax.random.PRNGKey(1))
  assert res.losses.shape == (4, 600)
  assert float(res.loss) < 2e-3
  maps = ifs.maps_from_raw(res.raw)
  attractor = ifs.chaos_game(maps, jax.random.PRNGKey(2), 2048)
  reference = ifs.chaos_game(ifs.SIERPINSKI, jax.random.PRNGKey(3), 2048)
  assert float(ifs.chamfer(attractor, reference)) < 1e-3


def test_fit_in_pieces_equals_one_fit():
  """start / advance (twice) / finish: the same numbers as one fit call."""
  pts = ifs.chaos_game(ifs.SIERPINSKI, jax.random.PRNGKey(0), 256)
  key = jax.random.PRNGKey(1)
  whole = ifs.fit(pts, key, 3, steps=40, restarts=2)
  state = ifs.fit_start(pts, key, 3, 2)
  state, a = ifs.fit_advance(state, pts, 25)
  state, b = ifs.fit_advance(state, pts, 15)
  pieces = ifs.fit_finish(state, pts, jnp.concatenate([a, b], axis=1))
  np.testing.assert_allclose(pieces.raw, whole.raw, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(pieces.losses, whole.losses, rtol=1e-5, atol=1e-7)
