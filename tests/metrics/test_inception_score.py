"""The Inception score on class distributions whose score is known."""

import numpy as np
import pytest

from collage.metrics.inception_score import inception_score


def test_identical_predictions_score_one():
  logits = np.tile(np.random.default_rng(0).normal(size=(1, 10)), (50, 1))
  assert inception_score(logits)[0] == pytest.approx(1.0, abs=1e-12)


def test_confident_predictions_spread_over_k_classes_score_k():
  """Each sample certain of one class, the 8 classes equally often: IS = 8 in every split."""
  logits = np.full((64, 1008), -1e4)
  logits[np.arange(64), np.arange(64) % 8] = 0.0
  mean, std = inception_score(logits, split_size=16)
  assert mean == pytest.approx(8.0, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_splits_are_consecutive_and_the_last_may_be_short():
  logits = np.full((30, 4), -1e4)
  logits[np.arange(30), np.r_[np.zeros(20, int), np.arange(10) % 2]] = 0.0
  mean, std = inception_score(logits, split_size=20)  # splits: 20 of one class, 10 of two
  assert mean == pytest.approx(1.5) and std == pytest.approx(0.5)
