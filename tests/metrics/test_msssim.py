"""SSIM against scikit-image, and MS-SSIM's basic properties."""

import numpy as np
import pytest
import skimage.data
from skimage.metrics import structural_similarity

from collage.metrics import msssim


def _noisy(img, sigma, seed=0):
  rng = np.random.default_rng(seed)
  return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def test_single_scale_matches_skimage():
  img = skimage.data.camera()[:200, :240]
  noisy = _noisy(img, 20)
  expected = structural_similarity(img, noisy, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, data_range=255)
  assert msssim.ssim(img, noisy) == pytest.approx(expected, abs=1e-6)


def test_ms_ssim_properties():
  img = skimage.data.astronaut()[:256, :200]
  assert msssim.ms_ssim(img, img) == pytest.approx(1.0)
  scores = [msssim.ms_ssim(img, _noisy(img, s)) for s in (5, 15, 40)]
  assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0
  # uint8 and the same image in [0, 1] agree.
  noisy = _noisy(img, 15)
  assert msssim.ms_ssim(img / 255.0, noisy / 255.0) == pytest.approx(scores[1], abs=1e-9)
  # Symmetric; a gray image as [H, W] or [H, W, 1] is the same.
  assert msssim.ms_ssim(noisy, img) == pytest.approx(scores[1], abs=1e-12)
  gray = img[..., 0]
  assert msssim.ms_ssim(gray, gray[..., None] // 2 * 2) == pytest.approx(
      msssim.ms_ssim(gray[..., None], gray[..., None] // 2 * 2))


def test_ms_ssim_errors():
  with pytest.raises(ValueError, match="at least 176x176"):
    msssim.ms_ssim(np.zeros((100, 300)), np.zeros((100, 300)))
  with pytest.raises(ValueError, match="shapes differ"):
    msssim.ms_ssim(np.zeros((200, 200)), np.zeros((200, 201)))


def test_ms_ssim_matches_tensorflow():
  """Values from tf.image.ssim_multiscale (TF 2.21, max_val=255) on the same arrays."""
  img = skimage.data.astronaut()[:256, :320]
  rng = np.random.default_rng(0)
  for sigma, expected in [(5, 0.98249197), (20, 0.8645079)]:
    noisy = np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)
    assert msssim.ms_ssim(img, noisy) == pytest.approx(expected, abs=2e-6)
