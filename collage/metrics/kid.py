"""Kernel Inception Distance (Bińkowski et al., ICLR 2018): the unbiased estimate of the squared
maximum mean discrepancy between two feature sets under the cubic polynomial kernel

    k(x, y) = (x . y / D + 1) ** 3                  (D: the feature dimension)

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / m^2

over ``num_subsets`` random subsets of ``subset_size`` features drawn from each set without
replacement (the paper's protocol, also torch-fidelity's and clean-fid's: 100 subsets of 1,000);
the score is the mean over subsets and its spread their standard deviation. Unlike FID the
estimate is unbiased, so it stays honest at a few thousand samples, and it may be slightly
negative when the two sets come from one distribution. Host numpy in float64.
"""

from __future__ import annotations

import numpy as np

NUM_SUBSETS = 100
SUBSET_SIZE = 1000


def _check(features: np.ndarray, name: str) -> np.ndarray:
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"KID needs {name} features [N >= 2, D], got shape {x.shape}")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"KID: the {name} features hold NaN or infinite values")
  return x


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
  """The unbiased MMD^2 between the rows of ``x`` [m, D] and ``y`` [m, D] (one subset)."""
  d = x.shape[1]
  k_xx = (x @ x.T / d + 1.0) ** 3
  k_yy = (y @ y.T / d + 1.0) ** 3
  k_xy = (x @ y.T / d + 1.0) ** 3
  m = len(x)
  off = lambda k: (k.sum() - np.trace(k)) / (m * (m - 1))
  return float(off(k_xx) + off(k_yy) - 2.0 * k_xy.mean())


def kernel_distance(real: np.ndarray, fake: np.ndarray, num_subsets: int = NUM_SUBSETS,
                    subset_size: int = SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
  """(KID mean, std) over ``num_subsets`` subsets of ``min(subset_size, len(real), len(fake))``.

  Raises:
    ValueError: features that are not [N >= 2, D] of one D, or non-finite.
  """
  real, fake = _check(real, "real"), _check(fake, "generated")
  if real.shape[1] != fake.shape[1]:
    raise ValueError(f"KID: real features have dimension {real.shape[1]}, generated "
                     f"{fake.shape[1]}")
  if num_subsets < 1 or subset_size < 2:
    raise ValueError(f"KID needs num_subsets >= 1 and subset_size >= 2, got {num_subsets}, "
                     f"{subset_size}")
  m = min(int(subset_size), len(real), len(fake))
  rng = np.random.default_rng(seed)
  values = np.array([polynomial_mmd2(fake[rng.choice(len(fake), m, replace=False)],
                                     real[rng.choice(len(real), m, replace=False)])
                     for _ in range(int(num_subsets))])
  return float(values.mean()), float(values.std())
