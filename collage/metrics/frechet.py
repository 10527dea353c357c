"""The Fréchet distance between Gaussian fits of two feature sets: FID and sFID.

    d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))

(Dowson & Landau 1982, the distance between two Gaussians; Heusel et al. 2017 named it FID on
Inception features.) The reference code (TTUR's ``fid.py``, guided-diffusion's evaluator) takes
``scipy.linalg.sqrtm(S_1 S_2)`` of a non-symmetric product, and when that fails on a singular
product retries with ``1e-6`` added to both diagonals. Here the trace term is computed without
a square root of a non-symmetric matrix and without an offset:

    tr((S_1 S_2)^(1/2)) = sum_i sqrt(lambda_i(A S_2 A)),  A = S_1^(1/2)  (symmetric, by eigh)

because ``S_1 S_2 = A (A S_2)`` and ``(A S_2) A`` have the same eigenvalues, and ``A S_2 A`` is
symmetric positive semi-definite: two symmetric eigen-decompositions in float64; eigenvalues within
rounding of zero (or below it) count as zero. It holds for rank-deficient covariances (fewer
samples than dimensions), where ``sqrtm`` of the product is ill-conditioned.
"""

from __future__ import annotations

import numpy as np


def gaussian_fit(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """features: [N, D] -> (mean [D], covariance [D, D]), float64; the covariance is unbiased
  (``np.cov``, divisor N - 1), as the reference evaluators compute it.

  Raises:
    ValueError: not a 2-D array of at least two finite rows.
  """
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"a Gaussian fit needs features [N >= 2, D], got shape {x.shape}")
  if not np.all(np.isfinite(x)):
    raise ValueError("features contain NaN or infinity")
  mu = x.mean(axis=0)
  centered = x - mu
  return mu, centered.T @ centered / (x.shape[0] - 1)


def _clip_rounding(w: np.ndarray) -> np.ndarray:
  """Eigenvalues of a PSD matrix with the ones rounding alone can make (below
  ``D * eps * max``, as ``numpy.linalg.matrix_rank`` judges) set to zero: a null direction's
  ``1e-16`` would otherwise add ``1e-8`` to the trace of square roots, per direction."""
  tol = max(float(w.max(initial=0.0)), 0.0) * len(w) * np.finfo(np.float64).eps
  return np.where(w > tol, w, 0.0)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric positive semi-definite matrix."""
  w, v = np.linalg.eigh((s + s.T) / 2)
  return (v * np.sqrt(_clip_rounding(w))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """tr((S_1 S_2)^(1/2)) for symmetric positive semi-definite S_1, S_2 [D, D]."""
  a = _psd_sqrt(np.asarray(sigma1, np.float64))
  m = a @ np.asarray(sigma2, np.float64) @ a
  w = np.linalg.eigvalsh((m + m.T) / 2)
  return float(np.sum(np.sqrt(_clip_rounding(w))))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
  """The squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID's number).

  mu: [D], sigma: [D, D]. A result that rounding makes slightly negative is returned as 0.

  Raises:
    ValueError: mismatched shapes or non-finite statistics.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  d = mu1.shape[0]
  if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(f"statistics of different shapes: mean {mu1.shape} / {mu2.shape}, "
                     f"covariance {sigma1.shape} / {sigma2.shape}; both must be [D] and [D, D]")
  for name, v in (("mean", mu1), ("mean", mu2), ("covariance", sigma1), ("covariance", sigma2)):
    if not np.all(np.isfinite(v)):
      raise ValueError(f"a {name} contains NaN or infinity")
  diff = mu1 - mu2
  value = (diff @ diff + np.trace(sigma1) + np.trace(sigma2)
           - 2.0 * trace_sqrt_product(sigma1, sigma2))
  return max(float(value), 0.0)


def frechet_distance_from_features(features: np.ndarray, mu: np.ndarray,
                                   sigma: np.ndarray) -> float:
  """The squared Fréchet distance between the Gaussian fit of ``features`` [N, D] and
  N(mu, sigma): :func:`frechet_distance` of :func:`gaussian_fit`, computed in the smaller space.

  With fewer samples than dimensions (N - 1 < D) the fit's covariance is ``S = X^T X / (N - 1)``
  of rank < N for the centred features X, and ``sigma S = (sigma X^T)(X / (N - 1))`` has the
  nonzero eigenvalues of the symmetric ``X sigma X^T / (N - 1)`` [N, N]: its eigenvalues replace
  two [D, D] decompositions (a 10-sample evaluation in 2048-D: milliseconds, not seconds).
  """
  x = np.asarray(features, np.float64)
  mu_x, sigma_x = gaussian_fit(x)
  n, d = x.shape
  if n - 1 >= d:
    return frechet_distance(mu_x, sigma_x, mu, sigma)
  mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
  if mu.shape != (d,) or sigma.shape != (d, d):
    raise ValueError(f"features of dimension {d} and statistics of shapes {mu.shape}, "
                     f"{sigma.shape}; the statistics must be [D] and [D, D]")
  centered = x - mu_x
  m = centered @ sigma @ centered.T / (n - 1)
  w = np.linalg.eigvalsh((m + m.T) / 2)
  diff = mu_x - mu
  value = (diff @ diff + np.trace(sigma_x) + np.trace(sigma)
           - 2.0 * float(np.sum(np.sqrt(_clip_rounding(w)))))
  return max(float(value), 0.0)
