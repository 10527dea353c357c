"""Variable-rate Neural Collage models (``ModelConfig.rate_lams``): the rate level is an input
of the encoder, the steps and the prior; levels interpolate; a fixed-rate model converts
without changing what it computes; fixed-rate models keep their saved form."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.nn import entropy_model as em
from collage.nn import neural_collage as hn
from collage.nn import neural_collage_io

SMALL = hn.ModelConfig(tile=16, luma_range=4, luma_domain=8, luma_stride=8, luma_aux=3,
                       chroma_range=8, chroma_aux=2, width=8, depth=1, hidden=16, support=15,
                       decode_steps=4)
LAMS = (0.001, 0.004, 0.016)


@pytest.fixture(scope="module")
def fixed():
  m = neural_collage_io.random_model(SMALL, seed=0)
  m.encoder.head_w.bias[...] = jnp.full_like(m.encoder.head_w.bias[...], 2.0)
  m.log_step[...] = m.log_step[...] + 0.3 * jnp.sin(jnp.arange(m.log_step.shape[0]))
  m.prior.logits[...] = m.prior.logits[...] + jax.random.normal(jax.random.PRNGKey(3),
                                                                m.prior.logits.shape)
  return m


@pytest.fixture(scope="module")
def variable(fixed):
  """A converted model whose levels then differ (steps, pmfs and FiLM)."""
  v = neural_collage_io.to_variable_rate(fixed, LAMS)
  levels = jnp.arange(3.0)[:, None]
  v.log_step[...] = v.log_step[...] - 0.5 * levels
  v.prior.logits[...] = v.prior.logits[...] + jax.random.normal(jax.random.PRNGKey(4),
                                                                v.prior.logits.shape)
  v.encoder.film[...] = 0.2 * jax.random.normal(jax.random.PRNGKey(5), v.encoder.film.shape)
  return v


def _x(n=3, seed=1):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, 16, 16, 3))


def test_conversion_from_a_fixed_rate_model_computes_the_same_at_every_level(fixed):
  v = neural_collage_io.to_variable_rate(fixed, LAMS)
  assert v.levels == 3 and v.log_step.shape == (3, fixed.log_step.shape[0])
  x = _x()
  y = fixed.analyse(x)
  q = fixed.quantize(y)
  for t in (0.0, 0.4, 1.0, 2.0):
    lv = jnp.full((3,), t)
    np.testing.assert_allclose(v.analyse(x, lv), y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(v.synthesise(q, level=lv), fixed.synthesise(q), atol=1e-6)
    np.testing.assert_allclose(v.bits(q, lv), fixed.bits(q), rtol=1e-5)
    np.testing.assert_array_equal(em.integer_tables(v.level_logits(t)),
                                  em.integer_tables(fixed.level_logits(0.0)))


def test_levels_interpolate_steps_geometrically_and_pmfs_as_mixtures(variable):
  v = variable
  steps = np.exp(np.asarray(v.log_step[...]))
  q = jnp.ones((1, v.layout.num_values(3)))
  slots = v.layout.slots
  for t in (0.0, 0.3, 1.0, 1.75, 2.0):
    lo = min(int(t), 1)
    f = t - lo
    want = steps[lo] ** (1 - f) * steps[lo + 1] ** f
    np.testing.assert_allclose(v.dequantize(q, 3, jnp.array([t]))[0], want[slots], rtol=1e-5)
  # Bits at integer codes: -log2 of the mixture of the two levels' pmfs, slot by slot.
  logits = np.asarray(v.prior.logits[...], np.float64).reshape(3, v.layout.num_slots, -1)
  pmf = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  codes = np.random.default_rng(0).integers(-15, 16, (2, len(slots)))
  t = 0.6
  mix = 0.4 * pmf[0] + 0.6 * pmf[1]
  want = -np.log2(mix[slots, codes + 15])
  got = v.bits(jnp.asarray(codes, jnp.float32), jnp.full((2,), t))
  np.testing.assert_allclose(got, want, rtol=1e-4)
  # The host logits are the log of the same mixture (the codec's tables).
  np.testing.assert_allclose(np.exp(v.level_logits(t)), mix, rtol=1e-6)  # t in float32
  # The lam is log-linear between the levels.
  np.testing.assert_allclose(v.level_lam(jnp.array([0.0, 0.5, 2.0])),
                             [0.001, 0.002, 0.016], rtol=1e-5)


def test_every_row_has_its_own_level_and_the_level_matters(variable):
  x = _x(4)
  levels = jnp.array([0.0, 0.5, 1.5, 2.0])
  y = variable.analyse(x, levels)
  for i, t in enumerate(levels):
    np.testing.assert_allclose(y[i], variable.analyse(x[i:i + 1], jnp.array([t]))[0],
                               rtol=1e-5, atol=1e-5)
  assert not np.allclose(variable.analyse(x, jnp.zeros(4)), variable.analyse(x, jnp.full(4, 2.)))


def test_losses_take_a_level_per_crop_and_are_differentiable(variable):
  from flax import nnx  # pylint: disable=import-outside-toplevel
  graphdef, state = nnx.split(variable)
  x, lv = _x(2), jnp.array([0.2, 1.8])

  def loss(state):
    m = nnx.merge(graphdef, state).losses(x, jax.random.PRNGKey(2), lv)
    return jnp.mean(m["tile_bpp"] + m["tile_mse"]), m

  (value, m), grads = jax.value_and_grad(loss, has_aux=True)(state)
  assert np.isfinite(float(value)) and m["tile_bpp"].shape == (2,)
  assert float(jnp.abs(grads["encoder"]["film"][...]).sum()) > 0
  assert float(jnp.abs(grads["log_step"][...]).sum()) > 0


def test_levels_are_required_exactly_for_variable_rate_models(fixed, variable):
  x = _x(1)
  with pytest.raises(ValueError, match="needs a rate level"):
    variable.analyse(x)
  with pytest.raises(ValueError, match="takes no rate level"):
    fixed.analyse(x, jnp.zeros(1))
  with pytest.raises(ValueError, match="already a variable-rate"):
    neural_collage_io.to_variable_rate(variable, LAMS)
  for bad in ((0.01,), (0.02, 0.01), (0.0, 0.01)):
    with pytest.raises(ValueError, match="rate_lams"):
      dataclasses.replace(SMALL, rate_lams=bad)
  with pytest.raises(ValueError, match="rate_lams"):
    dataclasses.replace(SMALL, rate_lams=LAMS, coding="bitpack")


def test_save_load_and_the_fixed_rate_config_dict_is_unchanged(variable, tmp_path):
  assert "rate_lams" not in SMALL.to_dict()  # fixed-rate models hash the same dict as before
  neural_collage_io.save_model(variable, str(tmp_path / "v"))
  back, _ = neural_collage_io.load_model(str(tmp_path / "v"))
  assert back.cfg == variable.cfg and back.cfg.rate_lams == LAMS
  x, lv = _x(2), jnp.array([0.7, 1.2])
  np.testing.assert_array_equal(back.analyse(x, lv), variable.analyse(x, lv))
