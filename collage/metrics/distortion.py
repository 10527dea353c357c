"""Pixel-space distortion metrics. Images in [0, 1] (float) unless ``peak`` says otherwise."""

import jax.numpy as jnp
import numpy as np


def mse(a, b) -> float:
  """Mean squared error over all elements (as float64)."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
  return float(np.mean((a - b) ** 2))


def psnr(a, b, peak: float = 1.0) -> float:
  """Peak signal-to-noise ratio in dB; ``peak`` = 1.0 for [0, 1] floats, 255 for uint8."""
  m = mse(a, b)
  return float("inf") if m == 0 else float(10.0 * np.log10(peak * peak / m))


def psnr_from_mse(mse, min_mse: float = 1e-10):
  """PSNR in dB of images in [0, 1] from their MSE, jit-safe (traced arrays in and out).

  ``min_mse`` bounds the result (100 dB at 1e-10) so a perfect fit logs a number, not inf.
  """
  return -10.0 * jnp.log10(jnp.maximum(mse, min_mse))
