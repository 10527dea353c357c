import jax.numpy as jnp
import numpy as np

from collage.ops import color


def test_ycbcr_round_trip():
  x = jnp.asarray(np.random.default_rng(0).random((5, 7, 3), np.float32))
  np.testing.assert_allclose(color.ycbcr_to_rgb(color.rgb_to_ycbcr(x)), x, atol=1e-5)


def test_ycbcr_known_values():
  """JFIF: white -> (1, .5, .5), black -> (0, .5, .5), pure red -> (.299, .331, 1)."""
  rgb = jnp.asarray([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
  np.testing.assert_allclose(color.rgb_to_ycbcr(rgb),
                             [[1.0, 0.5, 0.5], [0.0, 0.5, 0.5], [0.299, 0.331264108, 1.0]],
                             atol=1e-6)
