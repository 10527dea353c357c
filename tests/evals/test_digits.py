"""The digit family: samples brought to 28 x 28 digits, the reference features cached by the
network's fingerprint, and the scores ordered as they must be (held-out digits score better than
blurred ones)."""

import numpy as np
import pytest

from collage.data import digits
from collage.evals import digits as D
from collage.train import mesh


def test_fit_rules():
  rng = np.random.default_rng(0)
  x28 = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
  assert np.array_equal(D.fit_digits(x28), x28)
  padded = np.pad(x28, ((0, 0), (2, 2), (2, 2), (0, 0)))  # the 32 x 32 digit sets' padding
  assert np.array_equal(D.fit_digits(padded), x28)
  big = np.repeat(np.repeat(x28, 2, axis=1), 2, axis=2)  # each pixel as a 2 x 2 block
  assert np.array_equal(D.fit_digits(big), x28)
  rgb = np.repeat(x28, 3, axis=-1)
  assert np.array_equal(D.fit_digits(rgb), x28)
  with pytest.raises(ValueError, match="no automatic fit.*crop or pool"):
    D.fit_digits(np.zeros((1, 30, 30, 1), np.uint8))
  with pytest.raises(ValueError, match="fit='zoom' is unknown; valid: auto, none, crop, pool"):
    D.fit_digits(x28, "zoom")
  with pytest.raises(ValueError, match="fit=none needs 28 x 28"):
    D.fit_digits(padded, "none")


@pytest.fixture(scope="module")
def scorer(eight_devices):
  return D.DigitScorer(mesh=mesh.make_mesh(eight_devices), batch_size=64)


def test_reference_features_are_cached_by_fingerprint(scorer, tmp_path):
  first = scorer.reference("eval", str(tmp_path))
  cached = list(tmp_path.glob("digits-eval-*.npz"))
  assert len(cached) == 1 and scorer.sha256[:16] in cached[0].name
  again = scorer.reference("eval", str(tmp_path))
  np.testing.assert_array_equal(first, again)
  assert first.shape == (500, D.digit_features.FEATURE_DIM)
  with pytest.raises(ValueError, match="valid: train, eval, all"):
    scorer.reference("test")


def test_held_out_digits_score_better_than_damaged_ones(scorer):
  """Noise leaves the samples near real ones (precision stays high: the k-NN balls of the
  real set's outliers are wide) but far from covering them; shifted digits leave the real
  manifold; the held-out digits' KID is zero within its spread (unbiased)."""
  real = scorer.reference("train")
  held, _ = digits.digit_images("eval")
  noisy = np.clip(held.astype(np.float64) + np.random.default_rng(0).normal(0, 64, held.shape),
                  0, 255).astype(np.uint8)
  shifted = np.roll(held, 4, axis=2)
  score = lambda x: D.DigitScorer.scores(real, scorer.features(x), num_subsets=10,
                                         subset_size=400)
  good, bad, off = score(held), score(noisy), score(shifted)
  for worse in (bad, off):
    assert good["fid"] < worse["fid"] / 5 and good["kid"] < worse["kid"] / 5
    assert good["recall"] > 0.7 > 0.2 > worse["recall"]
  assert good["precision"] > 0.7 > 0.4 > off["precision"]
  assert abs(good["kid"]) < 2 * good["kid_std"]
