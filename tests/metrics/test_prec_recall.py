"""Improved precision and recall on sets whose answer is known, and against brute force."""

import numpy as np
import pytest

from collage.metrics import prec_recall


def _cloud(seed, n, d=16, center=0.0):
  return (np.random.default_rng(seed).normal(size=(n, d)) + center).astype(np.float32)


def test_identical_sets_are_one_one():
  x = _cloud(0, 100)
  assert prec_recall.precision_recall(x, x.copy(), block=32) == (1.0, 1.0)


def test_disjoint_far_apart_sets_are_zero_zero():
  assert prec_recall.precision_recall(_cloud(0, 80), _cloud(1, 70, center=100.0),
                                       block=32) == (0.0, 0.0)


def test_generated_set_covering_one_of_two_real_modes():
  """Real: modes A (60 points) and B (40, far away); generated: exactly A. Every generated point
  is a real one (precision 1); the real points of A are covered, those of B not (recall 0.6)."""
  a, b = _cloud(0, 60), _cloud(1, 40, center=50.0)
  real = np.concatenate([a, b])
  assert prec_recall.precision_recall(real, a, block=32) == (1.0, 0.6)
  # The other way round: half the generated points are outside the real manifold.
  assert prec_recall.precision_recall(a, real, block=32) == (0.6, 1.0)


def test_matches_brute_force_with_uneven_blocks():
  real, fake = _cloud(2, 130, d=8), _cloud(3, 90, d=8, center=0.7) * 0.8
  d_rr = ((real[:, None] - real[None]) ** 2).sum(-1)
  d_ff = ((fake[:, None] - fake[None]) ** 2).sum(-1)
  d_fr = ((fake[:, None] - real[None]) ** 2).sum(-1)
  r_real, r_fake = np.sort(d_rr, 1)[:, 3], np.sort(d_ff, 1)[:, 3]
  np.testing.assert_allclose(prec_recall.knn_radii(real, block=48), r_real, rtol=1e-5)
  want = ((d_fr <= r_real[None]).any(1).mean(), (d_fr.T <= r_fake[None]).any(1).mean())
  assert prec_recall.precision_recall(real, fake, block=48) == pytest.approx(want)
  assert 0 < want[0] < 1 and 0 < want[1] < 1


def test_too_few_points_or_mismatched_features_are_refused():
  with pytest.raises(ValueError, match="N > k=3"):
    prec_recall.precision_recall(_cloud(0, 3), _cloud(1, 10))
  with pytest.raises(ValueError, match="differ in size"):
    prec_recall.precision_recall(_cloud(0, 10, d=4), _cloud(1, 10, d=5))
