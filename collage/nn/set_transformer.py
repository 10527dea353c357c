"""Set Transformer layers (Lee et al., ICML 2019): attention blocks over an unordered set.

Every layer maps a set ``x: [..., n, d]`` (any leading batch axes, ``n`` elements of width
``d``) to a set of the same shape and is permutation-equivariant in ``n``: permuting the input
elements permutes the output elements the same way. An optional ``mask: [..., n]`` (1 for real
elements, 0 for padding) lets sets of different sizes share one array shape: padded elements
are never attended to, so the real elements' outputs do not depend on them.

    MAB(x, y) = LN(h + rFF(h)),  h = LN(x + Multihead(x, y, y))   (multihead attention block)
    SAB(x)    = MAB(x, x)                                         O(n^2) per set
    ISAB(x)   = MAB(x, MAB(I, x)),  I: m learned inducing points  O(n m) per set, for large n
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

LN_EPS = 1e-5  # LayerNorm variance floor (PyTorch's default, which Lee et al.'s code used)


class MultiheadAttention(nnx.Module):
  """Scaled dot-product attention with ``heads`` heads.

  q: [..., n, d], kv: [..., m, d], mask: [..., m] or None -> [..., n, d].
  """

  def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
    if dim % heads:
      raise ValueError(f"set-transformer width {dim} is not divisible by its {heads} heads")
    self.heads = heads
    self.q = nnx.Linear(dim, dim, rngs=rngs)
    self.k = nnx.Linear(dim, dim, rngs=rngs)
    self.v = nnx.Linear(dim, dim, rngs=rngs)
    self.out = nnx.Linear(dim, dim, rngs=rngs)

  def _split(self, x: jax.Array) -> jax.Array:
    return x.reshape(*x.shape[:-1], self.heads, x.shape[-1] // self.heads)

  def __call__(self, q: jax.Array, kv: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    qh, kh, vh = self._split(self.q(q)), self._split(self.k(kv)), self._split(self.v(kv))
    logits = jnp.einsum("...nhc,...mhc->...hnm", qh, kh) / jnp.sqrt(qh.shape[-1]).astype(q.dtype)
    if mask is not None:
      logits = jnp.where(mask[..., None, None, :] > 0, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("...hnm,...mhc->...nhc", weights, vh)
    return self.out(out.reshape(*out.shape[:-2], -1))


class MAB(nnx.Module):
  """Multihead attention block. x: [..., n, d], y: [..., m, d], mask over y -> [..., n, d]."""

  def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
    self.attention = MultiheadAttention(dim, heads, rngs=rngs)
    self.norm1 = nnx.LayerNorm(dim, epsilon=LN_EPS, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, epsilon=LN_EPS, rngs=rngs)
    self.ff1 = nnx.Linear(dim, dim, rngs=rngs)
    self.ff2 = nnx.Linear(dim, dim, rngs=rngs)

  def __call__(self, x: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    h = self.norm1(x + self.attention(x, y, mask))
    return self.norm2(h + self.ff2(jax.nn.relu(self.ff1(h))))


class SAB(nnx.Module):
  """Set attention block: self-attention among the elements. x: [..., n, d] -> [..., n, d]."""

  def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
    self.mab = MAB(dim, heads, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    return self.mab(x, x, mask)


class ISAB(nnx.Module):
  """Induced set attention block: ``inducing`` learned points summarise the set, the elements
  attend to the summary; linear in n. x: [..., n, d] -> [..., n, d]."""

  def __init__(self, dim: int, heads: int, inducing: int, *, rngs: nnx.Rngs):
    self.points = nnx.Param(jax.random.normal(rngs.params(), (inducing, dim)) / jnp.sqrt(dim))
    self.summarise = MAB(dim, heads, rngs=rngs)
    self.broadcast = MAB(dim, heads, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    points = jnp.broadcast_to(self.points[...], (*x.shape[:-2], *self.points.shape))
    summary = self.summarise(points, x, mask)
    return self.broadcast(x, summary)


def set_layer(dim: int, heads: int, inducing: int, *, rngs: nnx.Rngs) -> SAB | ISAB:
  """An SAB (``inducing`` = 0) or an ISAB with ``inducing`` points."""
  if inducing < 0:
    raise ValueError(f"inducing points must be >= 0 (0: SAB), got {inducing}")
  return ISAB(dim, heads, inducing, rngs=rngs) if inducing else SAB(dim, heads, rngs=rngs)
