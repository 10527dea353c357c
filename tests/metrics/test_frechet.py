"""FID's Fréchet distance: zero on itself, the closed form on Gaussians, stable when the
covariances are rank-deficient."""

import numpy as np
import pytest
import scipy.linalg

from collage.metrics import frechet


def _random_cov(rng, d, rank=None):
  a = rng.normal(size=(d, rank or d))
  return a @ a.T / (rank or d)


def test_a_set_against_itself_is_zero():
  x = np.random.default_rng(0).normal(size=(500, 64)) * 3 + 1
  mu, sigma = frechet.gaussian_fit(x)
  assert frechet.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
  np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)


def test_closed_form_of_diagonal_gaussians():
  """Diagonal covariances commute: d^2 = |mu1 - mu2|^2 + sum (s1 - s2)^2 (standard deviations)."""
  rng = np.random.default_rng(1)
  mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
  s1, s2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)
  got = frechet.frechet_distance(mu1, np.diag(s1 ** 2), mu2, np.diag(s2 ** 2))
  assert got == pytest.approx(want, rel=1e-10)


def test_full_covariances_match_the_reference_sqrtm():
  rng = np.random.default_rng(2)
  mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
  c1, c2 = _random_cov(rng, 32), _random_cov(rng, 32)
  covmean = scipy.linalg.sqrtm(c1 @ c2).real
  want = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * covmean)
  assert frechet.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(want, rel=1e-8)
  assert frechet.frechet_distance(mu2, c2, mu1, c1) == pytest.approx(want, rel=1e-8)


def test_samples_of_two_gaussians_approach_the_closed_form():
  """20000 samples each of N(mu1, C1), N(mu2, C2) in 6-D: the FID of the samples is within
  sampling error (about 1%) of the closed form of the true parameters."""
  rng = np.random.default_rng(3)
  mu1, mu2 = np.zeros(6), np.full(6, 0.5)
  c1, c2 = _random_cov(rng, 6), _random_cov(rng, 6) * 2
  x1 = rng.multivariate_normal(mu1, c1, size=20000)
  x2 = rng.multivariate_normal(mu2, c2, size=20000)
  closed = frechet.frechet_distance(mu1, c1, mu2, c2)
  sampled = frechet.frechet_distance(*frechet.gaussian_fit(x1), *frechet.gaussian_fit(x2))
  assert sampled == pytest.approx(closed, rel=0.03)
  assert closed == pytest.approx(np.sum((mu1 - mu2) ** 2) + np.trace(
      c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real), rel=1e-8)


def test_rank_deficient_covariances_fewer_samples_than_dimensions():
  """n = 10 and 12 samples in 64-D: covariances of rank 9 and 11. The trace term equals the
  nuclear norm of X1 X2^T / sqrt((n1 - 1)(n2 - 1)) for the centred samples (same nonzero
  eigenvalues), an answer that needs no matrix square root."""
  rng = np.random.default_rng(4)
  x1, x2 = rng.normal(size=(10, 64)), rng.normal(size=(12, 64)) + 0.3
  (mu1, c1), (mu2, c2) = frechet.gaussian_fit(x1), frechet.gaussian_fit(x2)
  assert np.linalg.matrix_rank(c1) == 9 and np.linalg.matrix_rank(c2) == 11
  a, b = x1 - x1.mean(0), x2 - x2.mean(0)
  nuclear = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(9 * 11)
  assert frechet.trace_sqrt_product(c1, c2) == pytest.approx(nuclear, rel=1e-9)
  d = frechet.frechet_distance(mu1, c1, mu2, c2)
  want = np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * nuclear
  assert np.isfinite(d) and d == pytest.approx(want, rel=1e-9)
  assert frechet.frechet_distance(mu2, c2, mu1, c1) == pytest.approx(d, rel=1e-9)
  assert frechet.frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)


def test_mismatched_or_bad_statistics_are_refused():
  with pytest.raises(ValueError, match="different shapes"):
    frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
  with pytest.raises(ValueError, match="NaN"):
    frechet.frechet_distance(np.zeros(2), np.eye(2), np.array([0, np.nan]), np.eye(2))
  with pytest.raises(ValueError, match=r"\[N >= 2, D\]"):
    frechet.gaussian_fit(np.zeros((1, 5)))


def test_from_features_in_the_small_space_equals_the_full_computation():
  rng = np.random.default_rng(5)
  ref = rng.normal(size=(40, 24)) * 2
  mu, sigma = frechet.gaussian_fit(ref)
  for n in (5, 24, 60):  # fewer samples than dimensions, then not
    x = rng.normal(size=(n, 24)) + 0.2
    want = frechet.frechet_distance(*frechet.gaussian_fit(x), mu, sigma)
    assert frechet.frechet_distance_from_features(x, mu, sigma) == pytest.approx(want, rel=1e-9)
  assert frechet.frechet_distance_from_features(ref[:10], *frechet.gaussian_fit(ref[:10])) == (
      pytest.approx(0.0, abs=1e-9))
