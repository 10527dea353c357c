"""KID: the unbiased MMD^2 under the cubic polynomial kernel, against a term-by-term sum."""

import numpy as np
import pytest

from collage.metrics import kid


def _mmd2_by_loops(x, y):
  """The estimator written out pair by pair (Bińkowski et al. 2018, eq. 3)."""
  d, m = x.shape[1], len(x)
  k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
  return xx + yy - 2 * xy


def test_one_subset_equals_the_pairwise_sum():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(7, 3)), rng.normal(1.0, 1.0, size=(7, 3))
  assert kid.polynomial_mmd2(x, y) == pytest.approx(_mmd2_by_loops(x, y), rel=1e-10)


def test_subsets_cover_the_whole_set_when_it_is_small():
  """subset_size >= both sets: every subset is the whole set (in some order): no spread."""
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(9, 4)), rng.normal(size=(9, 4)) + 0.5
  mean, std = kid.kernel_distance(x, y, num_subsets=5, subset_size=100)
  assert mean == pytest.approx(_mmd2_by_loops(y, x), rel=1e-9) and std < 1e-9


def test_same_distribution_near_zero_shifted_clearly_positive():
  rng = np.random.default_rng(2)
  real = rng.normal(size=(1500, 16))
  same = rng.normal(size=(1500, 16))
  shifted = rng.normal(size=(1500, 16)) + 0.3
  m_same, s_same = kid.kernel_distance(real, same, num_subsets=20, subset_size=500)
  m_shift, _ = kid.kernel_distance(real, shifted, num_subsets=20, subset_size=500)
  assert abs(m_same) < 3 * s_same + 1e-3  # unbiased: may be slightly negative
  assert m_shift > 20 * max(s_same, 1e-4)


def test_bad_features_are_refused():
  with pytest.raises(ValueError, match="dimension 3, generated 4"):
    kid.kernel_distance(np.zeros((5, 3)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match="NaN"):
    kid.kernel_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))
  with pytest.raises(ValueError, match=r"\[N >= 2, D\]"):
    kid.kernel_distance(np.zeros((1, 3)), np.zeros((5, 3)))
