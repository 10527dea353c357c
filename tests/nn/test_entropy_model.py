"""The learned entropy models (factorized prior, context model): likelihoods, integer tables,
real coded bits."""

import constriction
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.codec import neural_coding, neural_models
from collage.nn import neural_collage_io
from collage.nn.neural_collage import CONTEXT_GAIN, ModelConfig
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
  coder = constriction.stream.queue.RangeEncoder()
  neural_coding.encode_slots(coder, q, slots, tables)
  data = coder.get_compressed().astype("<u4").tobytes()
  ideal = em.table_bits(q, slots, tables)
  assert abs(8 * len(data) - ideal) / ideal < 0.02
  relaxed = float(np.asarray(p.bits(jnp.asarray(q, jnp.float32), jnp.asarray(slots))).sum())
  assert abs(relaxed - ideal) / ideal < 0.01
  decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4"))
  np.testing.assert_array_equal(neural_coding.decode_slots(decoder, n_tiles, slots, tables), q)


def test_straight_through_rounding_and_noise():
  y = jnp.asarray([-1.4, 0.2, 0.6, 2.5])
  np.testing.assert_array_equal(np.asarray(em.round_ste(y)), np.round(np.asarray(y)))
  np.testing.assert_array_equal(np.asarray(jax.grad(lambda v: em.round_ste(v).sum())(y)), 1.0)
  n = em.uniform_noise(jax.random.PRNGKey(0), jnp.zeros(1000))
  assert float(jnp.abs(n).max()) <= 0.5 and abs(float(n.mean())) < 0.05


# -- the context model ----------------------------------------------------------------------
def _sparse_sig(rng, shape, density=0.15):
  return (rng.random(shape) < density).astype(np.int32)


def test_contexts_are_causal_and_the_same_in_numpy_and_jax():
  """A weight's context depends only on flags decoded before it (ranges earlier in raster
  order, earlier candidates of its range): zeroing everything from it on changes nothing."""
  rng = np.random.default_rng(0)
  sig = _sparse_sig(rng, (6, 4, 5, 7), 0.3)
  ctx = em.weight_contexts(sig)
  assert ctx.min() >= 0 and ctx.max() < em.CONTEXTS and len(np.unique(ctx)) > 20
  np.testing.assert_array_equal(np.asarray(em.weight_contexts(jnp.asarray(sig), jnp)), ctx)
  for i, j, k in [(0, 0, 0), (0, 3, 2), (2, 0, 6), (3, 4, 3), (1, 2, 0)]:
    cut = sig.reshape(6, 20, 7).copy()
    r = i * 5 + j
    cut[:, r, k:] = 0
    cut[:, r + 1:] = 0
    np.testing.assert_array_equal(em.weight_contexts(cut.reshape(sig.shape))[:, i, j, k],
                                  ctx[:, i, j, k])
  # ...and it does depend on them: the left neighbour's same candidate and the activity.
  one = np.zeros((1, 2, 2, 3), np.int32)
  one[0, 0, 0, 1] = 1
  c = em.weight_contexts(one)[0]
  assert c[0, 1, 1] != c[0, 1, 0] and c[1, 0, 1] != c[1, 1, 1] and c[1, 1, 1] == c[0, 0, 0]


def _context_model(seed=0, rate_lams=()):
  cfg = ModelConfig(luma_range=8, luma_aux=4, chroma_aux=2, rate_lams=rate_lams)
  base = neural_collage_io.random_model(cfg, seed=seed)
  rng = np.random.default_rng(seed)
  base.prior.logits[...] = base.prior.logits[...] + jnp.asarray(
      rng.normal(size=base.prior.logits.shape), jnp.float32)
  return base, neural_collage_io.to_context_model(base)


def _sparse_code(rng, layout, n_tiles, channels=3, density=0.2):
  n = layout.num_values(channels)
  q = rng.integers(-6, 7, size=(n_tiles, n)) * (rng.random((n_tiles, n)) < density)
  return q.astype(np.int64)


@pytest.mark.parametrize("rate_lams", [(), (0.001, 0.004, 0.02)])
def test_context_model_starts_at_the_factorized_rates(rate_lams):
  """to_context_model: every context's significance is the pmf's mass at zero, so at every
  (integer) level the relaxed rates are the factorized prior's."""
  base, ctx_model = _context_model(1, rate_lams)
  rng = np.random.default_rng(1)
  q = _sparse_code(rng, base.layout, 5)
  y = jnp.asarray(q, jnp.float32) + jnp.asarray(rng.uniform(-0.5, 0.5, q.shape), jnp.float32)
  for level in ([None] if not rate_lams else [0.0, 1.0, 2.0]):
    lv = None if level is None else jnp.full((5,), level)
    a = np.asarray(base.bits(y, lv))
    b = np.asarray(ctx_model.bits(y, lv, jnp.asarray(q, jnp.float32)))
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_context_coding_round_trips_and_costs_its_ideal_length():
  _, m = _context_model(2, (0.001, 0.01))
  m.zero_logits[...] = m.zero_logits[...] + jnp.asarray(   # N(0, 1) on the effective logits
      np.random.default_rng(2).normal(size=m.zero_logits.shape) / CONTEXT_GAIN, jnp.float32)
  tables = m.context_tables(0.3, neural_models.TABLE_PRECISION)
  rng = np.random.default_rng(3)
  for channels in (3, 1):
    q = _sparse_code(rng, m.layout, 40, channels)
    q[0] = 0                                            # an all-zero tile
    coder = constriction.stream.queue.RangeEncoder()
    neural_coding.encode_context(coder, q, m.layout, tables)
    words = coder.get_compressed()
    decoder = constriction.stream.queue.RangeDecoder(words)
    out = neural_coding.decode_context(decoder, 40, q.shape[1], m.layout, tables)
    np.testing.assert_array_equal(out, q)
    n = q.shape[1]
    ctx = m.layout.code_contexts(q)
    ideal = em.context_row_bits(q, m.layout.slots[:n], m.layout.is_weight[:n], ctx,
                                tables).sum()
    assert abs(32 * len(words) - ideal) / ideal < 0.01
    # The relaxed training rate at integer codes is the ideal length (tables' rounding aside).
    relaxed = float(np.asarray(m.bits(jnp.asarray(q, jnp.float32), jnp.full((40,), 0.3))).sum())
    assert abs(relaxed - ideal) / ideal < 0.01


@pytest.mark.parametrize("density", [0.0, 0.02, 0.3, 1.0])
def test_the_coders_flag_contexts_are_the_models(density):
  """The range coder computes the flags' contexts its own way (tiles last, 8-bit integers, in
  decoding order); they are weight_contexts' and the probabilities are the tables' rows."""
  _, m = _context_model(4, (0.001, 0.01))
  rng = np.random.default_rng(5)
  m.zero_logits[...] = m.zero_logits[...] + jnp.asarray(   # every context its own odds
      rng.normal(size=m.zero_logits.shape) / CONTEXT_GAIN, jnp.float32)
  tables = m.context_tables(0.7, neural_models.TABLE_PRECISION)
  q = _sparse_code(rng, m.layout, 9, density=density)
  slots = m.layout.slots
  for off, gh, gw, k, _ in m.layout.weight_blocks(q.shape[1]):
    sig = (q[:, off:off + gh * gw * k] != 0).reshape(9, gh, gw, k)
    flags, rows = neural_coding._block_flags(sig, slots[off:off + k])
    probs = neural_coding._prob_table(tables["zero"])[rows]
    ctx = em.weight_contexts(sig).reshape(9, gh * gw, k).transpose(1, 2, 0)
    slot = np.broadcast_to(slots[off:off + k][None, :, None], ctx.shape)
    zero = tables["zero"][slot, ctx, 0] / 2.0 ** neural_models.TABLE_PRECISION
    np.testing.assert_array_equal(flags, sig.reshape(9, gh * gw, k).transpose(1, 2, 0).reshape(-1))
    np.testing.assert_array_equal(probs[:, 0], zero.reshape(-1))
    np.testing.assert_array_equal(probs[:, 1], 1.0 - zero.reshape(-1))
