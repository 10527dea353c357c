"""The learned factorized entropy model: likelihoods, integer tables, real coded bits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.codec import neural, neural_models
from collage.nn import entropy_model as em


def _prior(num_slots=5, support=7, seed=0):
  p = em.FactorizedPrior(num_slots, support, init_scale=np.linspace(0.5, 3.0, num_slots))
  # Perturb so the pmfs are not symmetric Laplaces.
  noise = jax.random.normal(jax.random.PRNGKey(seed), p.logits.shape)
  p.logits[...] = p.logits[...] + 0.5 * noise
  return p


def test_pmf_sums_to_one_and_relaxed_bits_match_pmf_at_integers():
  p = _prior()
  pmf = np.exp(np.asarray(p.log_pmf(), np.float64))
  np.testing.assert_allclose(pmf.sum(-1), 1.0, atol=1e-6)
  m = p.support
  slots = jnp.arange(p.num_slots)
  y = jnp.broadcast_to(jnp.arange(-m, m + 1, dtype=jnp.float32)[:, None], (2 * m + 1, p.num_slots))
  bits = np.asarray(p.bits(y, slots))                                   # [2M+1, S]
  np.testing.assert_allclose(bits, -np.log2(pmf.T), rtol=1e-5)


def test_relaxed_likelihood_is_a_density_over_the_noise():
  """Integrating the interpolated pmf over a unit of y covers the mass of each bin: the
  relaxed likelihood is the pmf convolved with the unit box, so it integrates to 1."""
  p = _prior(num_slots=3)
  m = p.support
  ys = np.linspace(-m, m, 20001)
  slots = jnp.zeros(1, jnp.int32)
  dens = 2.0 ** -np.asarray(p.bits(jnp.asarray(ys)[:, None], slots))[:, 0]
  integral = np.trapezoid(dens, ys)
  pmf = np.exp(np.asarray(p.log_pmf(), np.float64))[0]
  # The interpolation loses half of the two outermost bins' mass.
  np.testing.assert_allclose(integral, 1.0 - 0.5 * (pmf[0] + pmf[-1]), atol=1e-4)


def test_relaxed_bits_are_differentiable():
  p = _prior()
  slots = jnp.arange(p.num_slots)
  g = jax.grad(lambda y: p.bits(y, slots).sum())(jnp.full((2, p.num_slots), 0.3))
  assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0


def test_integer_tables_are_exact_and_deterministic():
  p = _prior(num_slots=6, support=20)
  logits = np.asarray(p.logits[...])
  t1 = em.integer_tables(logits, 16)
  t2 = em.integer_tables(logits.copy(), 16)
  np.testing.assert_array_equal(t1, t2)
  assert t1.dtype == np.int64 and t1.min() >= 1
  np.testing.assert_array_equal(t1.sum(-1), 1 << 16)
  pmf = np.exp(np.asarray(p.log_pmf(), np.float64))
  np.testing.assert_allclose(t1 / 65536.0, pmf, atol=t1.shape[1] / 65536.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_coded_bits_match_the_model_rate(seed):
  """Symbols drawn from the model: the range coder's real output is within 2% of the ideal
  code length, and the relaxed training rate at integers agrees with the tables."""
  rng = np.random.default_rng(seed)
  num_slots, support, n_tiles = 6, 15, 400
  p = _prior(num_slots, support, seed)
  tables = em.integer_tables(np.asarray(p.logits[...]), neural_models.TABLE_PRECISION)
  slots = np.tile(np.arange(num_slots), 5).astype(np.int32)  # N = 30
  probs = tables / tables.sum(-1, keepdims=True)
  q = np.stack([rng.choice(2 * support + 1, size=n_tiles, p=probs[s]) for s in slots], 1)
  q = q - support
  data = neural.encode_symbols(q, slots, tables)
  ideal = em.table_bits(q, slots, tables)
  assert abs(8 * len(data) - ideal) / ideal < 0.02
  relaxed = float(np.asarray(p.bits(jnp.asarray(q, jnp.float32), jnp.asarray(slots))).sum())
  assert abs(relaxed - ideal) / ideal < 0.01
  np.testing.assert_array_equal(neural.decode_symbols(data, n_tiles, slots, tables), q)


def test_straight_through_rounding_and_noise():
  y = jnp.asarray([-1.4, 0.2, 0.6, 2.5])
  np.testing.assert_array_equal(np.asarray(em.round_ste(y)), np.round(np.asarray(y)))
  np.testing.assert_array_equal(np.asarray(jax.grad(lambda v: em.round_ste(v).sum())(y)), 1.0)
  n = em.uniform_noise(jax.random.PRNGKey(0), jnp.zeros(1000))
  assert float(jnp.abs(n).max()) <= 0.5 and abs(float(n.mean())) < 0.05
