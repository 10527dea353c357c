"""SSIM and multi-scale SSIM (Wang, Simoncelli & Bovik 2003) in numpy.

Conventions (those of the reference implementation and of ``pytorch_msssim`` /
``tf.image.ssim_multiscale``, which CompressAI's published figures use):

* an 11-tap Gaussian window with sigma 1.5, applied separably and only where it fits
  ("valid": no padding); K1 = 0.01, K2 = 0.03; population (not sample) statistics;
* five scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); between scales a 2x2
  average pool (an odd side is first extended by repeating its last row / column);
* MS-SSIM = prod_{j<5} relu(cs_j) ** w_j * relu(ssim_5) ** w_5 per channel, then averaged
  over channels. Hence the smallest image side is 176 pixels (11 at the coarsest scale).

Images are ``[H, W]`` or ``[H, W, C]``; uint8 images have data range 255, float images 1.0,
unless ``data_range`` says otherwise.
"""

from __future__ import annotations

import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def _gaussian_window(size: int = WINDOW_SIZE, sigma: float = SIGMA) -> np.ndarray:
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-x**2 / (2 * sigma**2))
  return g / g.sum()


def _filter(x: np.ndarray, g: np.ndarray) -> np.ndarray:
  """x: [H, W, C] -> [H-10, W-10, C], separable valid correlation with g."""
  n = g.size
  x = np.lib.stride_tricks.sliding_window_view(x, n, axis=0) @ g   # [H-n+1, W, C]
  return np.lib.stride_tricks.sliding_window_view(x, n, axis=1) @ g


def _as_hwc(a, data_range) -> tuple[np.ndarray, float]:
  arr = np.asarray(a)
  if data_range is None:
    data_range = 255.0 if arr.dtype == np.uint8 else 1.0
  arr = arr.astype(np.float64)
  if arr.ndim == 2:
    arr = arr[..., None]
  if arr.ndim != 3:
    raise ValueError(f"expected an image [H, W] or [H, W, C], got shape {arr.shape}")
  return arr, float(data_range)


def _ssim_cs(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
  """[H, W, C] pair -> per-channel (mean SSIM, mean contrast-structure), each [C]."""
  g = _gaussian_window()
  c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
  mx, my = _filter(x, g), _filter(y, g)
  sxx = _filter(x * x, g) - mx * mx
  syy = _filter(y * y, g) - my * my
  sxy = _filter(x * y, g) - mx * my
  cs = (2 * sxy + c2) / (sxx + syy + c2)
  ssim = (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs
  return ssim.mean(axis=(0, 1)), cs.mean(axis=(0, 1))


def _check_pair(a, b, data_range):
  x, r = _as_hwc(a, data_range)
  y, _ = _as_hwc(b, r)
  if x.shape != y.shape:
    raise ValueError(f"shapes differ: {np.shape(a)} vs {np.shape(b)}")
  return x, y, r


def ssim(a, b, data_range: float | None = None) -> float:
  """Mean single-scale SSIM over the valid window positions, averaged over channels."""
  x, y, r = _check_pair(a, b, data_range)
  if min(x.shape[:2]) < WINDOW_SIZE:
    raise ValueError(f"SSIM needs images of at least {WINDOW_SIZE}x{WINDOW_SIZE}, got "
                     f"{x.shape[:2]}")
  return float(_ssim_cs(x, y, r)[0].mean())


def _downsample(x: np.ndarray) -> np.ndarray:
  h, w = x.shape[:2]
  if h % 2:
    x = np.concatenate([x, x[-1:]], axis=0)
  if w % 2:
    x = np.concatenate([x, x[:, -1:]], axis=1)
  return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def min_side(scales: int = len(MS_SSIM_WEIGHTS)) -> int:
  """The smallest image side MS-SSIM accepts with ``scales`` scales."""
  return WINDOW_SIZE * 2 ** (scales - 1)


def ms_ssim(a, b, data_range: float | None = None,
            weights: tuple[float, ...] = MS_SSIM_WEIGHTS) -> float:
  """Multi-scale SSIM in [0, 1] (1 for identical images).

  Args:
    a, b: images [H, W] or [H, W, C] of the same shape; uint8 or float.
    data_range: the value range (default 255 for uint8, else 1.0).
    weights: per-scale exponents, finest first.

  Raises:
    ValueError: shapes differ or a side is below ``min_side(len(weights))``.
  """
  x, y, r = _check_pair(a, b, data_range)
  need = min_side(len(weights))
  if min(x.shape[:2]) < need:
    raise ValueError(f"MS-SSIM with {len(weights)} scales needs images of at least "
                     f"{need}x{need}, got {x.shape[0]}x{x.shape[1]}")
  w = np.asarray(weights, np.float64)
  factors = []
  for j in range(len(w)):
    s, cs = _ssim_cs(x, y, r)
    last = j == len(w) - 1
    factors.append(np.maximum(s if last else cs, 0.0) ** w[j])
    if not last:
      x, y = _downsample(x), _downsample(y)
  return float(np.prod(np.stack(factors), axis=0).mean())
