"""The discrete cosine transform as matrices (pure numpy; used inside jitted code as constants).

The orthonormal DCT-II of a length-n signal ``x`` is ``D @ x`` with ``D = dct_matrix(n)``; its
inverse is ``D.T @ X``. A separable 2-D transform of an ``[h, w]`` array is
``dct_matrix(h) @ x @ dct_matrix(w).T``.
"""

from __future__ import annotations

import numpy as np


def dct_matrix(n: int) -> np.ndarray:
  """Orthonormal DCT-II matrix D: [n, n] (rows are frequencies), D @ D.T = I."""
  k = np.arange(n)[:, None]
  i = np.arange(n)[None, :]
  d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
  d[0] /= np.sqrt(2.0)
  return d.astype(np.float32)
