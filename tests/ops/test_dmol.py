"""The discretized mixture of logistics: against the formula written out, and normalisation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.ops import dmol


def _sigmoid(t):
  return 1.0 / (1.0 + np.exp(-t))


def _reference_log_prob(x8, params, num_mix):
  """log p of one pixel's 8-bit values x8 [C] (ints), params [P], float64, by the PixelCNN++
  formula: the mixture of products over channels of logistic masses of the value's bin."""
  c = len(x8)
  logits, rest = params[:num_mix], params[num_mix:].reshape(c, -1, num_mix)
  weights = np.exp(logits - logits.max())
  weights /= weights.sum()
  y = 2.0 * np.asarray(x8, np.float64) / 255.0 - 1.0
  total = 0.0
  for m in range(num_mix):
    p = weights[m]
    for ch in range(c):
      mu, s = rest[ch, 0, m], math.exp(max(rest[ch, 1, m], -7.0))
      if c == 3 and ch == 1:
        mu += math.tanh(rest[0, 2, m]) * y[0]
      if c == 3 and ch == 2:
        mu += math.tanh(rest[1, 2, m]) * y[0] + math.tanh(rest[2, 2, m]) * y[1]
      upper = 1.0 if x8[ch] == 255 else _sigmoid((y[ch] + 1 / 255 - mu) / s)
      lower = 0.0 if x8[ch] == 0 else _sigmoid((y[ch] - 1 / 255 - mu) / s)
      p *= upper - lower
    total += p
  return math.log(total)


@pytest.mark.parametrize("channels", [1, 3])
def test_log_prob_matches_the_formula_including_0_and_255(channels):
  num_mix, n = 3, 64
  rng = np.random.default_rng(channels)
  params = rng.normal(size=(n, dmol.num_params(channels, num_mix)))
  params[:, num_mix:] *= 0.7  # means and log scales in a range where bins keep mass > 1e-5
  x8 = rng.integers(0, 256, size=(n, channels))
  x8[:8] = 0
  x8[8:16] = 255
  x8[16:24, 0] = 0
  x8[24:32, -1] = 255
  got = np.asarray(jax.jit(lambda x, p: dmol.log_prob(x, p, num_mix))(
      jnp.asarray(x8 / 255.0, jnp.float32), jnp.asarray(params, jnp.float32)))
  want = np.array([_reference_log_prob(x8[i], params[i], num_mix) for i in range(n)])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_grey_probabilities_over_the_256_values_sum_to_one():
  num_mix = 4
  params = jax.random.normal(jax.random.PRNGKey(0), (16, dmol.num_params(1, num_mix)))
  values = jnp.arange(256.0)[:, None, None] / 255.0            # [256, 1, 1]
  lp = jax.jit(lambda x, p: dmol.log_prob(x, p, num_mix))(
      jnp.broadcast_to(values, (256, 16, 1)), params[None])
  np.testing.assert_allclose(np.exp(np.asarray(lp)).sum(axis=0), 1.0, rtol=1e-5)


def test_rgb_probabilities_over_the_last_channels_sum_to_one():
  """One component: summing B out, with R and G fixed, leaves p(R) p(G | R), each a grey
  DMoL of its channel's mean (G's shifted by a * R); and G's 256 values sum to 1 given R."""
  rng = np.random.default_rng(0)
  p = rng.normal(size=(dmol.num_params(3, 1),)).astype(np.float32)
  mix = dmol.unpack(jnp.asarray(p), 3, 1)
  v = jnp.arange(256.0) / 255.0
  grey = lambda vals, mean, log_s: dmol.log_prob(vals[:, None], jnp.stack(
      [jnp.zeros(()), mean, log_s]), 1)

  @jax.jit
  def both_sides(r):  # r: [] an 8-bit value of R
    g, b = jnp.meshgrid(v, v, indexing="ij")
    x = jnp.stack([jnp.full_like(g, r / 255.0), g, b], axis=-1)      # [256 g, 256 b, 3]
    summed_b = jnp.exp(jax.nn.logsumexp(dmol.log_prob(x, jnp.asarray(p), 1), axis=1))
    p_r = jnp.exp(grey(r[None] / 255.0, mix.means[0, 0], mix.log_scales[0, 0]))
    y_r = 2.0 * r / 255.0 - 1.0
    p_g = jnp.exp(grey(v, mix.means[1, 0] + mix.coeffs[0, 0] * y_r, mix.log_scales[1, 0]))
    return summed_b, p_r * p_g, jnp.sum(p_g)

  for r in (0, 37, 128, 255):
    summed_b, product, total_g = both_sides(jnp.float32(r))
    np.testing.assert_allclose(summed_b, product, rtol=2e-4, atol=1e-7)
    assert float(total_g) == pytest.approx(1.0, abs=1e-5)


def test_nll_per_dim_is_the_mean_negative_log_prob():
  x = jnp.round(jax.random.uniform(jax.random.PRNGKey(2), (2, 4, 4, 3)) * 255) / 255
  p = jax.random.normal(jax.random.PRNGKey(3), (2, 4, 4, dmol.num_params(3, 2)))
  got, lp = jax.jit(lambda x, p: (dmol.nll_per_dim(x, p, 2), dmol.log_prob(x, p, 2)))(x, p)
  np.testing.assert_allclose(got, -np.sum(np.asarray(lp), axis=(1, 2)) / 48, rtol=1e-5)


def test_sampling_a_sharp_component_gives_its_mean_on_the_8_bit_grid():
  num_mix = 2
  p = np.zeros((5, dmol.num_params(3, num_mix)), np.float32)
  p[:, 0], p[:, 1] = 50.0, -50.0                         # component 0 only
  means = np.array([-0.5, 0.0, 0.5])
  for ch in range(3):
    p[:, num_mix + ch * 3 * num_mix] = means[ch]          # mean of channel ch, component 0
    p[:, num_mix + ch * 3 * num_mix + num_mix] = -12.0    # log scale (clamped at -7)
  x = np.asarray(jax.jit(lambda k, p: dmol.sample(k, p, 3, num_mix))(jax.random.PRNGKey(0),
                                                                     jnp.asarray(p)))
  assert x.shape == (5, 3)
  np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)
  np.testing.assert_allclose(x, np.broadcast_to((means + 1) / 2, x.shape), atol=1.5 / 255)


def test_wrong_parameter_count_is_a_clear_error():
  with pytest.raises(ValueError, match="last axis of 30"):
    dmol.log_prob(jnp.zeros((2, 1)), jnp.zeros((2, 31)), 10)
  with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(RGB\\)"):
    dmol.num_params(2, 10)
