"""Transformer layers (Vaswani et al. 2017, pre-LayerNorm) with a functional key/value cache.

Every attention layer can run on a whole sequence or on one new token against a cache of the
keys and values of the tokens before it. The cache is a pair of plain arrays [B, T, H, D_h]
passed in and returned (no hidden module state), so a jitted sampling loop carries it; a step
attends over all T slots with the slots after the current one masked, which gives the same
numbers as the full causal pass up to float rounding.

    block = DecoderBlock(dim, heads, rngs=rngs)
    ctx = block.cross_kv(encoder_out)                       # once per context
    y = block(x, ctx, causal_mask(T))                       # x: [B, T, D] teacher-forced
    cache = empty_cache(B, T, heads, dim // heads)
    y_t, cache = block.step(x_t, t, cache, ctx)             # x_t: [B, 1, D]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

NEG_INF = -1e9  # added to masked attention logits


def causal_mask(length: int) -> jax.Array:
  """bool [T, T]: query i may attend key j <= i."""
  return jnp.tril(jnp.ones((length, length), bool))


def empty_cache(batch: int, length: int, heads: int, head_dim: int,
                dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """Zeroed (keys, values) [B, T, H, D_h] for :meth:`Attention.step`."""
  z = jnp.zeros((batch, length, heads, head_dim), dtype)
  return z, z


class Attention(nnx.Module):
  """Multi-head dot-product attention. x: [B, T, D] -> [B, T, D]."""

  def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
    if dim % heads:
      raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
    self.heads, self.head_dim = heads, dim // heads
    self.q = nnx.Linear(dim, dim, rngs=rngs)
    self.k = nnx.Linear(dim, dim, rngs=rngs)
    self.v = nnx.Linear(dim, dim, rngs=rngs)
    self.o = nnx.Linear(dim, dim, rngs=rngs)

  def _split(self, x: jax.Array) -> jax.Array:
    return x.reshape(*x.shape[:-1], self.heads, self.head_dim)

  def kv(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Keys and values of a context [B, S, D] -> two [B, S, H, D_h]."""
    return self._split(self.k(context)), self._split(self.v(context))

  def attend(self, x: jax.Array, keys: jax.Array, values: jax.Array,
             mask: jax.Array | None = None) -> jax.Array:
    """x: [B, T, D] attends keys/values [B, S, H, D_h]; mask: bool broadcastable to [B, T, S]."""
    q = self._split(self.q(x)) / jnp.sqrt(jnp.float32(self.head_dim))
    logits = jnp.einsum("bthd,bshd->bhts", q, keys)
    if mask is not None:
      logits = jnp.where(jnp.broadcast_to(mask, (x.shape[0],) + mask.shape[-2:])[:, None],
                         logits, NEG_INF)
    weights = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bhts,bshd->bthd", weights, values)
    return self.o(out.reshape(*x.shape[:-1], -1))

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Self-attention over x: [B, T, D]."""
    k, v = self.kv(x)
    return self.attend(x, k, v, mask)

  def step(self, x: jax.Array, index: jax.Array, cache: tuple[jax.Array, jax.Array]
           ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Causal self-attention of one token x: [B, 1, D] at ``index`` (scalar int) against the
    cache of the earlier tokens; returns the output [B, 1, D] and the cache with this token."""
    k, v = self.kv(x)
    keys = jax.lax.dynamic_update_slice_in_dim(cache[0], k, index, axis=1)
    values = jax.lax.dynamic_update_slice_in_dim(cache[1], v, index, axis=1)
    mask = (jnp.arange(keys.shape[1]) <= index)[None, :]
    return self.attend(x, keys, values, mask), (keys, values)


class Mlp(nnx.Module):
  """Two linear layers with a GELU between: [..., D] -> [..., D]."""

  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
    self.up = nnx.Linear(dim, hidden, rngs=rngs)
    self.down = nnx.Linear(hidden, dim, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down(jax.nn.gelu(self.up(x)))


class EncoderBlock(nnx.Module):
  """Bidirectional self-attention and an MLP, pre-LayerNorm: [B, S, D] -> [B, S, D]."""

  def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, *, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
    self.attn = Attention(dim, heads, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
    self.mlp = Mlp(dim, mlp_ratio * dim, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class DecoderBlock(nnx.Module):
  """Causal self-attention, cross-attention to a context, an MLP; pre-LayerNorm."""

  def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, *, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
    self.self_attn = Attention(dim, heads, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
    self.cross_attn = Attention(dim, heads, rngs=rngs)
    self.norm3 = nnx.LayerNorm(dim, rngs=rngs)
    self.mlp = Mlp(dim, mlp_ratio * dim, rngs=rngs)

  def cross_kv(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The cross-attention keys and values of a context [B, S, D] (computed once per context)."""
    return self.cross_attn.kv(context)

  def __call__(self, x: jax.Array, context_kv: tuple[jax.Array, jax.Array],
               mask: jax.Array) -> jax.Array:
    """Teacher-forced pass. x: [B, T, D]; mask: bool [T, T] (e.g. :func:`causal_mask`)."""
    x = x + self.self_attn(self.norm1(x), mask)
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
