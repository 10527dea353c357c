"""Rate–distortion helpers: the Lagrangian cost and reading a curve at a rate."""

import jax.numpy as jnp
import numpy as np
import pytest

from collage.metrics.rd import curve_at_rate, rd_cost, value_at_rate


def test_rd_cost_per_pixel_and_per_region_agree():
  # 0.5 bpp and an MSE of 1e-4 on [0, 1] images (6.5025 on the 8-bit scale), lam 0.01.
  assert rd_cost(0.5, 1e-4, 0.01) == pytest.approx(0.5 + 0.01 * 6.5025)
  # The same image of 64 pixels and 3 channels, counted per region: 64x the per-pixel cost.
  sse = 1e-4 * 64 * 3
  assert rd_cost(0.5 * 64, sse, 0.01, 3) == pytest.approx(64 * rd_cost(0.5, 1e-4, 0.01))
  # Arrays broadcast, numpy and jax alike.
  got = rd_cost(jnp.array([1.0, 2.0]), jnp.array([0.0, 1e-4]), 0.01)
  np.testing.assert_allclose(got, [1.0, 2.0 + 0.01 * 6.5025], rtol=1e-6)


def test_value_at_rate_interpolates_curve_of_averages():
  averages = [{"codec": "a", "bpp": 0.2, "psnr": 20.0}, {"codec": "a", "bpp": 0.6, "psnr": 30.0},
              {"codec": "b", "bpp": 1.0, "psnr": 40.0}]
  assert value_at_rate(averages, "a", 0.5) == pytest.approx(27.5)
  assert np.isnan(value_at_rate(averages, "a", 1.0))   # never extrapolated
  assert np.isnan(value_at_rate(averages, "b", 0.5))
  assert np.isnan(value_at_rate(averages, "c", 0.5))   # no such curve


def test_curve_at_rate_takes_points_in_any_order():
  assert curve_at_rate([(0.6, 30.0), (0.2, 20.0)], 0.2) == 20.0
  assert curve_at_rate([(0.6, 30.0), (0.2, 20.0)], 0.4) == pytest.approx(25.0)
  assert np.isnan(curve_at_rate([(0.6, 30.0), (0.2, 20.0)], 0.1))
  assert np.isnan(curve_at_rate([], 0.5))
