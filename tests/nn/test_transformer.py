"""Transformer layers: one token at a time against the key/value cache = the causal pass."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from collage.nn import transformer as tf


def test_decoder_block_steps_with_a_cache_equal_the_causal_pass():
  block = tf.DecoderBlock(16, 2, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 6, 16))
  ctx = block.cross_kv(jax.random.normal(jax.random.PRNGKey(2), (3, 5, 16)))
  full = block(x, ctx, tf.causal_mask(6))
  cache = tf.empty_cache(3, 6, 2, 8)
  steps = []
  for t in range(6):
    y, cache = block.step(x[:, t:t + 1], jnp.int32(t), cache, ctx)
    steps.append(y)
  np.testing.assert_allclose(jnp.concatenate(steps, 1), full, rtol=1e-5, atol=1e-5)


def test_causal_attention_ignores_the_future():
  attn = tf.Attention(8, 2, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 4, 8))
  y = attn(x, tf.causal_mask(4))
  changed = x.at[:, 3].set(100.0)
  np.testing.assert_allclose(attn(changed, tf.causal_mask(4))[:, :3], y[:, :3], rtol=1e-6)
