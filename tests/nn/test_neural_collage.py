"""The Neural Collage compression model: layout, shapes, gradients, save/load, scale decode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from collage.nn import neural_collage as hn
from collage.nn import neural_collage_io

SMALL = hn.ModelConfig(tile=16, luma_range=4, luma_domain=8, luma_stride=8, luma_aux=3,
                       chroma_range=8, chroma_aux=2, width=8, depth=1, hidden=16, support=15,
                       decode_steps=4)


@pytest.fixture(scope="module")
def model():
  m = neural_collage_io.random_model(SMALL, seed=0)
  # Push the code away from 0 so every part of the decoder is active.
  m.encoder.head_w.bias[...] = jnp.full_like(m.encoder.head_w.bias[...], 2.0)
  m.encoder.head_g2.bias[...] = jnp.full_like(m.encoder.head_g2.bias[...], 2.0)
  return m


def test_layout_counts_every_value_once(model):
  lay = model.layout
  # luma: 16 ranges x (4 domains x 2 isometries + 3 aux) weights + 16 bias coefficients
  assert (lay.ry, lay.ky) == (16, 11) and lay.n_y == 16 * 11 + 16
  # chroma per channel: 4 ranges x (1 domain x 2 isometries + 2 aux) + 4 coefficients
  assert (lay.rc, lay.kc) == (4, 4) and lay.n_c == 4 * 4 + 4
  assert lay.num_values(3) == lay.n_y + 2 * lay.n_c == len(lay.slots)
  assert lay.slots.max() + 1 == lay.num_slots == 11 + 16 + 2 * (4 + 4)
  assert set(np.unique(lay.slots)) == set(range(lay.num_slots))


def test_losses_are_finite_and_differentiable(model):
  graphdef, state = nnx.split(model)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 16, 16, 3))

  def loss(state):
    m = nnx.merge(graphdef, state).losses(x, jax.random.PRNGKey(2))
    return m["bpp"] + 100.0 * m["mse"], m

  (value, m), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(state)
  assert np.isfinite(float(value)) and float(m["bpp"]) > 0
  leaves = jax.tree.leaves(grads)
  assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
  # The hypernetwork, the aux patches, the steps and the prior all receive gradient.
  g = nnx.to_pure_dict(grads)
  for key in ("aux_y", "aux_c", "log_step"):
    assert np.abs(np.asarray(g[key])).sum() > 0, key
  assert np.abs(np.asarray(g["prior"]["logits"])).sum() > 0


def test_decode_shapes_gray_and_scale(model):
  x = jax.random.uniform(jax.random.PRNGKey(3), (3, 16, 16, 3))

  @nnx.jit
  def run(m, x):
    q = m.quantize(m.analyse(x))
    return (q, m.synthesise(q, 3), m.synthesise(q[:, :m.layout.n_y], 1),
            m.synthesise(q, 3, scale=2))

  q, rgb, gray, big = run(model, x)
  assert q.shape == (3, model.layout.num_values(3))
  assert np.abs(np.asarray(q)).sum() > 0
  assert rgb.shape == (3, 16, 16, 3) and gray.shape == (3, 16, 16, 1)
  assert big.shape == (3, 32, 32, 3)


def test_scale_decode_pools_back_when_converged():
  """With enough iterations, the scale-2 decode mean-pooled by 2 equals the scale-1 decode
  (the collage operator's resolution consistency, through the whole model)."""
  cfg = hn.ModelConfig(**{**SMALL.to_dict(), "decode_steps": 60})
  m = neural_collage_io.random_model(cfg, seed=1)
  q = jnp.round(3 * jax.random.normal(jax.random.PRNGKey(4), (2, m.layout.num_values(3))))
  one, two = nnx.jit(lambda m, q: (m.synthesise(q, 3), m.synthesise(q, 3, scale=2)))(m, q)
  pooled = two.reshape(2, 16, 2, 16, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(pooled, one, atol=1e-4)


def test_save_load_round_trip(model, tmp_path):
  neural_collage_io.save_model(model, str(tmp_path / "m"), {"lam": 0.5})
  loaded, meta = neural_collage_io.load_model(str(tmp_path / "m"))
  assert meta == {"lam": 0.5} and loaded.cfg == model.cfg
  a, b = neural_collage_io.flat_params(model), neural_collage_io.flat_params(loaded)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  with pytest.raises(ValueError, match="model.json"):
    neural_collage_io.load_model(str(tmp_path / "nothing"))


def test_bad_config_is_rejected():
  with pytest.raises(ValueError, match="coding"):
    hn.ModelConfig(coding="zip")
  with pytest.raises(ValueError, match="unknown model config keys"):
    hn.ModelConfig.from_dict({"tile": 32, "colour": 1})


@pytest.mark.parametrize("cin,kernel,stride,size", [(3, 4, 2, 32), (3, 3, 1, 17), (2, 5, 3, 20),
                                                     (3, 4, 2, 33)])
def test_conv_as_matmul_is_the_conv(cin, kernel, stride, size):
  """The RGB stem's patches-times-kernel form equals nnx.Conv with SAME padding (odd sizes
  and strides that do not divide them included)."""
  from collage.nn import layers  # pylint: disable=import-outside-toplevel
  conv = nnx.Conv(cin, 8, (kernel, kernel), strides=(stride, stride), padding="SAME",
                  rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (2, size, size + 3, cin))
  np.testing.assert_allclose(np.asarray(layers.conv_as_matmul(conv, x)), np.asarray(conv(x)),
                             rtol=1e-5, atol=1e-5)
