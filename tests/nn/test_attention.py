"""The shared attention: jax.nn.dot_product_attention over any leading axes, in chunks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.nn.attention import attention, reference_attention


def _qkv(lead=(3, 5), n=7, m=6, heads=4, c=8, seed=0):
  kq, kk, kv, km = jax.random.split(jax.random.PRNGKey(seed), 4)
  q = jax.random.normal(kq, (*lead, n, heads, c))
  k = jax.random.normal(kk, (*lead, m, heads, c))
  v = jax.random.normal(kv, (*lead, m, heads, c))
  mask = (jax.random.uniform(km, (*lead, m)) > 0.3).astype(jnp.float32).at[..., 0].set(1)
  return q, k, v, mask


@pytest.mark.parametrize("chunk", [0, 4, 15, 100])
def test_equals_the_textbook_formula_with_and_without_chunks_and_masks(chunk):
  q, k, v, mask = _qkv()
  np.testing.assert_allclose(attention(q, k, v, key_mask=mask, chunk=chunk),
                             reference_attention(q, k, v, mask), atol=2e-6)
  np.testing.assert_allclose(attention(q, k, v, chunk=chunk), reference_attention(q, k, v),
                             atol=2e-6)


def test_causal_and_fixed_masks():
  q, k, v, _ = _qkv(lead=(2,), n=6, m=6)
  causal = jnp.tril(jnp.ones((6, 6), bool))
  want = jnp.einsum("...hnm,...mhc->...nhc", jax.nn.softmax(jnp.where(
      causal, jnp.einsum("...nhc,...mhc->...hnm", q, k) / jnp.sqrt(8.0), -jnp.inf), -1), v)
  np.testing.assert_allclose(attention(q, k, v, is_causal=True), want, atol=2e-6)
  np.testing.assert_allclose(attention(q, k, v, mask=causal[None]), want, atol=2e-6)


def test_gradients_through_chunks_equal_the_whole():
  q, k, v, mask = _qkv()
  loss = lambda chunk: lambda q, k, v: jnp.sum(attention(q, k, v, key_mask=mask,
                                                         chunk=chunk) ** 2)
  whole = jax.grad(loss(0), argnums=(0, 1, 2))(q, k, v)
  parts = jax.grad(loss(4), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(whole, parts):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bfloat16_inputs_keep_a_float32_softmax():
  q, k, v, mask = _qkv()
  out = attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), key_mask=mask)
  assert out.dtype == jnp.bfloat16
  # bfloat16 inputs carry ~3 significant digits; the softmax itself is float32.
  np.testing.assert_allclose(out.astype(jnp.float32), reference_attention(q, k, v, mask),
                             atol=5e-2)


def test_chunks_bound_the_memory_of_a_training_step():
  q, k, v, mask = _qkv(lead=(4096,), n=8, m=8, heads=2, c=4)

  def temp_bytes(chunk):
    f = jax.jit(jax.grad(lambda q: jnp.sum(attention(q, k, v, key_mask=mask, chunk=chunk))))
    return f.lower(q).compile().memory_analysis().temp_size_in_bytes

  # The whole: [4096, 2, 8, 8] float32 scores and probabilities kept for the backward pass;
  # in chunks of 256 rows only one chunk's are alive at a time.
  assert temp_bytes(256) < 0.5 * temp_bytes(0)
