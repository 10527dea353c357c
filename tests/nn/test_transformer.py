"""Transformer layers: one token at a time against the key/value cache = the causal pass."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from collage.nn import precision
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


def _old_attend(attn, x, keys, values, mask=None):
  """The formula the layers used before the shared helper (scaled q, -1e9 masking)."""
  q = attn._split(attn.q(x)) / jnp.sqrt(jnp.float32(attn.head_dim))
  logits = jnp.einsum("bthd,bshd->bhts", q, keys)
  if mask is not None:
    logits = jnp.where(jnp.broadcast_to(mask, (x.shape[0],) + mask.shape[-2:])[:, None],
                       logits, -1e9)
  out = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(logits, axis=-1), values)
  return attn.o(out.reshape(*x.shape[:-1], -1))


def test_the_shared_attention_helper_equals_the_old_formula():
  attn = tf.Attention(16, 2, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 16))
  ctx = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 16))

  @jax.jit
  def pairs(x, ctx):
    """(new, old) outputs: masked and is_causal self-attention, cross-attention, a cached step
    at index 3 of a 7-slot cache whose later slots hold other tokens."""
    k, v = attn.kv(x)
    old = _old_attend(attn, x, k, v, tf.causal_mask(7))
    kc, vc = attn.kv(ctx)
    cache = (k.at[:, 3:].set(5.0), v.at[:, 3:].set(-5.0))
    y, _ = attn.step(x[:, 3:4], jnp.int32(3), cache)
    keys, values = cache[0].at[:, 3].set(k[:, 3]), cache[1].at[:, 3].set(v[:, 3])
    return [(attn(x, tf.causal_mask(7)), old), (attn(x, is_causal=True), old),
            (attn.attend(x, kc, vc), _old_attend(attn, x, kc, vc)),
            (y, _old_attend(attn, x[:, 3:4], keys, values, (jnp.arange(7) <= 3)[None, :])),
            (y, old[:, 3:4])]  # the cached step = the causal pass

  for new, old in pairs(x, ctx):
    np.testing.assert_allclose(new, old, rtol=1e-5, atol=1e-6)


def test_bfloat16_layers_keep_float32_parameters_and_track_float32():
  f32 = tf.DecoderBlock(16, 2, rngs=nnx.Rngs(0))
  bf16 = tf.DecoderBlock(16, 2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  for leaf in jax.tree.leaves(nnx.state(bf16, nnx.Param)):
    assert leaf.dtype == jnp.float32
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 16))
  c = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 16))
  y32, y16 = jax.jit(lambda x, c: (
      f32(x, f32.cross_kv(c), is_causal=True),
      bf16(x.astype(jnp.bfloat16), bf16.cross_kv(c.astype(jnp.bfloat16)), is_causal=True)))(x, c)
  assert y16.dtype == jnp.bfloat16
  # bfloat16 keeps 8 bits of mantissa: outputs of size ~1-3 agree to a few hundredths.
  np.testing.assert_allclose(np.asarray(y16, np.float32), y32, atol=0.1, rtol=0.05)


def test_every_remat_setting_of_a_layer_stack_gives_the_same_value_and_gradient():
  blocks = [tf.DecoderBlock(8, 2, rngs=nnx.Rngs(i)) for i in range(2)]
  graphdef, params = nnx.split(blocks)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 8))
  c = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 8))

  def loss(p, x, name):
    layer = precision.remat(lambda blk, h: blk(h, blk.cross_kv(c), is_causal=True), name)
    h = x
    for blk in nnx.merge(graphdef, p):
      h = layer(blk, h)
    return jnp.sum(jnp.sin(h))

  # One compiled function for every setting: {name: (value, (d params, d x))}.
  out = jax.jit(lambda p, x: {name: jax.value_and_grad(loss, argnums=(0, 1))(p, x, name)
                              for name in precision.REMAT})(params, x)
  ref, ref_grads = out["none"]
  for name in precision.REMAT[1:]:
    value, grads = out[name]
    np.testing.assert_allclose(value, ref, rtol=1e-6, err_msg=name)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
      np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6, err_msg=name)
