import jax
import numpy as np

from collage.metrics import distortion


def test_psnr_from_mse_matches_psnr_and_is_jittable():
  rng = np.random.default_rng(0)
  a, b = rng.random((8, 8, 3)), rng.random((8, 8, 3))
  mse = distortion.mse(a, b)
  got = jax.jit(distortion.psnr_from_mse)(np.float32(mse))
  np.testing.assert_allclose(float(got), distortion.psnr(a, b), rtol=1e-5)


def test_psnr_from_mse_is_bounded_for_a_perfect_fit():
  assert float(distortion.psnr_from_mse(0.0)) == 100.0
  assert float(distortion.psnr_from_mse(0.0, min_mse=1e-12)) == 120.0
  assert distortion.psnr(np.ones(3), np.ones(3)) == float("inf")
