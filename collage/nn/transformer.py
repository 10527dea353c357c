"""Transformer layers (Vaswani et al. 2017, pre-LayerNorm) with a functional key/value cache.

Attention runs through :func:`collage.nn.attention.attention` (``jax.nn.dot_product_attention``:
cuDNN's fused kernel on a GPU, XLA's path on a CPU; logits and softmax in float32). Every layer
takes ``dtype`` (the compute dtype of its matmuls and its outputs) and ``param_dtype`` (float32:
parameters stay float32 and are cast when used); LayerNorm statistics are float32 whatever the
compute dtype (flax computes them in at least float32 and normalizes in float32 before casting).

Every attention layer can run on a whole sequence or on one new token against a cache of the
keys and values of the tokens before it. The cache is a pair of plain arrays [B, T, H, D_h]
passed in and returned (no hidden module state), so a jitted sampling loop carries it; a step
attends over all T slots with the slots after the current one masked, which gives the same
numbers as the full causal pass up to float rounding.

    block = DecoderBlock(dim, heads, dtype=jnp.bfloat16, rngs=rngs)  # float32 parameters
    ctx = block.cross_kv(encoder_out)                       # once per context
    y = block(x, ctx, is_causal=True)                       # x: [B, T, D] teacher-forced
    cache = empty_cache(B, T, heads, dim // heads, jnp.bfloat16)
    y_t, cache = block.step(x_t, t, cache, ctx)             # x_t: [B, 1, D]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from collage.nn.attention import attention


def causal_mask(length: int) -> jax.Array:
  """bool [T, T]: query i may attend key j <= i."""
  return jnp.tril(jnp.ones((length, length), bool))


def empty_cache(batch: int, length: int, heads: int, head_dim: int,
                dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """Zeroed (keys, values) [B, T, H, D_h] for :meth:`Attention.step`."""
  z = jnp.zeros((batch, length, heads, head_dim), dtype)
  return z, z


class Attention(nnx.Module):
  """Multi-head dot-product attention. x: [B, T, D] -> [B, T, D] in ``dtype``."""

  def __init__(self, dim: int, heads: int, *, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if dim % heads:
      raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
    self.heads, self.head_dim = heads, dim // heads
    lin = lambda: nnx.Linear(dim, dim, dtype=dtype, param_dtype=param_dtype,  # noqa: E731
                             rngs=rngs)
    self.q, self.k, self.v, self.o = lin(), lin(), lin(), lin()

  def _split(self, x: jax.Array) -> jax.Array:
    return x.reshape(*x.shape[:-1], self.heads, self.head_dim)

  def kv(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Keys and values of a context [B, S, D] -> two [B, S, H, D_h]."""
    return self._split(self.k(context)), self._split(self.v(context))

  def attend(self, x: jax.Array, keys: jax.Array, values: jax.Array,
             mask: jax.Array | None = None, *, is_causal: bool = False) -> jax.Array:
    """x: [B, T, D] attends keys/values [B, S, H, D_h]; mask: bool [T, S] (the same for every
    row; True: attend) or None; is_causal: query t attends keys <= t. -> [B, T, D]."""
    q = self._split(self.q(x))
    out = attention(q, keys.astype(q.dtype), values.astype(q.dtype), mask=mask,
                    is_causal=is_causal)
    return self.o(out.reshape(*x.shape[:-1], -1))

  def __call__(self, x: jax.Array, mask: jax.Array | None = None, *,
               is_causal: bool = False) -> jax.Array:
    """Self-attention over x: [B, T, D]; mask / is_causal as in :meth:`attend`."""
    k, v = self.kv(x)
    return self.attend(x, k, v, mask, is_causal=is_causal)

  def step(self, x: jax.Array, index: jax.Array, cache: tuple[jax.Array, jax.Array]
           ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Causal self-attention of one token x: [B, 1, D] at ``index`` (scalar int) against the
    cache of the earlier tokens; returns the output [B, 1, D] and the cache with this token."""
    k, v = self.kv(x)
    keys = jax.lax.dynamic_update_slice_in_dim(cache[0], k, index, axis=1)
    values = jax.lax.dynamic_update_slice_in_dim(cache[1], v, index, axis=1)
    mask = (jnp.arange(keys.shape[1]) <= index)[None, :]        # [1, T]: the slots so far
    return self.attend(x, keys, values, mask), (keys, values)


class Mlp(nnx.Module):
  """Two linear layers with a GELU between: [..., D] -> [..., D]."""

  def __init__(self, dim: int, hidden: int, *, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.up = nnx.Linear(dim, hidden, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.down = nnx.Linear(hidden, dim, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down(jax.nn.gelu(self.up(x)))


class EncoderBlock(nnx.Module):
  """Bidirectional self-attention and an MLP, pre-LayerNorm: [B, S, D] -> [B, S, D]."""

  def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, *, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1 = nnx.LayerNorm(dim, **kw)
    self.attn = Attention(dim, heads, **kw)
    self.norm2 = nnx.LayerNorm(dim, **kw)
    self.mlp = Mlp(dim, mlp_ratio * dim, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class DecoderBlock(nnx.Module):
  """Causal self-attention, cross-attention to a context, an MLP; pre-LayerNorm."""

  def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, *, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1 = nnx.LayerNorm(dim, **kw)
    self.self_attn = Attention(dim, heads, **kw)
    self.norm2 = nnx.LayerNorm(dim, **kw)
    self.cross_attn = Attention(dim, heads, **kw)
    self.norm3 = nnx.LayerNorm(dim, **kw)
    self.mlp = Mlp(dim, mlp_ratio * dim, **kw)

  def cross_kv(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The cross-attention keys and values of a context [B, S, D] (computed once per context)."""
    return self.cross_attn.kv(context)

  def __call__(self, x: jax.Array, context_kv: tuple[jax.Array, jax.Array],
               mask: jax.Array | None = None, *, is_causal: bool = False) -> jax.Array:
    """Teacher-forced pass. x: [B, T, D]; the self-attention's mask: bool [T, T] (e.g.
    :func:`causal_mask`) and/or ``is_causal`` (the same numbers; lets a GPU kernel skip the
    masked half)."""
    x = x + self.self_attn(self.norm1(x), mask, is_causal=is_causal)
    x = x + self.cross_attn.attend(self.norm2(x), *context_kv)
    return x + self.mlp(self.norm3(x))

  def step(self, x: jax.Array, index: jax.Array, cache: tuple[jax.Array, jax.Array],
           context_kv: tuple[jax.Array, jax.Array]
           ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """One token x: [B, 1, D] at ``index``; returns [B, 1, D] and the updated cache."""
    h, cache = self.self_attn.step(self.norm1(x), index, cache)
    x = x + h
    x = x + self.cross_attn.attend(self.norm2(x), *context_kv)
    return x + self.mlp(self.norm3(x)), cache
