"""The DCT matrix: orthonormal, DC row constant, cosine rows."""

import numpy as np

from collage.ops import dct


def test_dct_matrix_is_orthonormal():
  for n in (1, 2, 4, 7):
    d = dct.dct_matrix(n)
    assert d.shape == (n, n) and d.dtype == np.float32
    np.testing.assert_allclose(d @ d.T, np.eye(n), atol=1e-6)


def test_dct_matrix_rows_are_frequencies():
  d = dct.dct_matrix(4)
  np.testing.assert_allclose(d[0], np.full(4, 0.5), atol=1e-7)   # DC: 1 / sqrt(n)
  np.testing.assert_allclose(d[2], np.cos(np.pi * (2 * np.arange(4) + 1) * 2 / 8) / np.sqrt(2),
                             atol=1e-7)
