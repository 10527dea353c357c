"""Set Transformer layers (Lee et al., ICML 2019): attention blocks over an unordered set.

Every layer maps a set ``x: [..., n, d]`` (any leading batch axes, ``n`` elements of width
``d``) to a set of the same shape and is permutation-equivariant in ``n``: permuting the input
elements permutes the output elements the same way. An optional ``mask: [..., n]`` (1 for real
elements, 0 for padding) lets sets of different sizes share one array shape: padded elements
are never attended to, so the real elements' outputs do not depend on them.

    MAB(x, y) = LN(h + rFF(h)),  h = LN(x + Multihead(x, y, y))   (multihead attention block)
    SAB(x)    = MAB(x, x)                                         O(n^2) per set
    ISAB(x)   = MAB(x, MAB(I, x)),  I: m learned inducing points  O(n m) per set, for large n

Precision: the linear layers run in ``dtype`` on float32 parameters; the attention goes through
:func:`collage.nn.attention.attention` (logits and softmax in float32); LayerNorm statistics
are float32 (flax computes them in at least float32). :func:`apply_in_chunks` runs a layer on
many independent sets a chunk at a time, so that only one chunk's attention scores and
activations live at once (in the backward pass too, with a remat policy).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from collage.nn import precision
from collage.nn.attention import attention

LN_EPS = 1e-5  # LayerNorm variance floor (PyTorch's default, which Lee et al.'s code used)


class MultiheadAttention(nnx.Module):
  """Scaled dot-product attention with ``heads`` heads.

  q: [..., n, d] (or [n, d], shared by every set), kv: [..., m, d], mask: [..., m] or None
  -> [..., n, d]. ``chunk``: sets per chunk of :func:`collage.nn.attention.attention` (0: all).
  """

  def __init__(self, dim: int, heads: int, *, chunk: int = 0, dtype=jnp.float32,
               rngs: nnx.Rngs):
    if dim % heads:
      raise ValueError(f"set-transformer width {dim} is not divisible by its {heads} heads")
    self.heads, self.chunk = heads, chunk
    linear = lambda: nnx.Linear(dim, dim, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
    self.q, self.k, self.v, self.out = linear(), linear(), linear(), linear()

  def _split(self, x: jax.Array) -> jax.Array:
    return x.reshape(*x.shape[:-1], self.heads, x.shape[-1] // self.heads)

  def __call__(self, q: jax.Array, kv: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    qh, kh, vh = self._split(self.q(q)), self._split(self.k(kv)), self._split(self.v(kv))
    qh = jnp.broadcast_to(qh, (*kh.shape[:-3], *qh.shape[-3:]))  # shared queries: every set
    if mask is not None:
      mask = jnp.broadcast_to(mask, kh.shape[:-2])
    out = attention(qh, kh, vh, key_mask=mask, chunk=self.chunk)
    return self.out(out.reshape(*out.shape[:-2], -1))


class MAB(nnx.Module):
  """Multihead attention block. x: [..., n, d], y: [..., m, d], mask over y -> [..., n, d]."""

  def __init__(self, dim: int, heads: int, *, chunk: int = 0, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.attention = MultiheadAttention(dim, heads, chunk=chunk, dtype=dtype, rngs=rngs)
    norm = lambda: nnx.LayerNorm(dim, epsilon=LN_EPS, dtype=dtype, param_dtype=jnp.float32,
                                 rngs=rngs)
    linear = lambda: nnx.Linear(dim, dim, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
    self.norm1, self.norm2 = norm(), norm()
    self.ff1, self.ff2 = linear(), linear()

  def __call__(self, x: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    h = self.norm1(x + self.attention(x, y, mask))
    return self.norm2(h + self.ff2(jax.nn.relu(self.ff1(h))))


class SAB(nnx.Module):
  """Set attention block: self-attention among the elements. x: [..., n, d] -> [..., n, d]."""

  def __init__(self, dim: int, heads: int, *, chunk: int = 0, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.mab = MAB(dim, heads, chunk=chunk, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    return self.mab(x, x, mask)


class ISAB(nnx.Module):
  """Induced set attention block: ``inducing`` learned points summarise the set, the elements
  attend to the summary; linear in n. x: [..., n, d] -> [..., n, d]."""

  def __init__(self, dim: int, heads: int, inducing: int, *, chunk: int = 0, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.points = nnx.Param(jax.random.normal(rngs.params(), (inducing, dim)) / jnp.sqrt(dim))
    self.summarise = MAB(dim, heads, chunk=chunk, dtype=dtype, rngs=rngs)
    self.broadcast = MAB(dim, heads, chunk=chunk, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    # The points' query projection is computed once and shared by every set (not per set).
    summary = self.summarise(self.points[...].astype(x.dtype), x, mask)
    return self.broadcast(x, summary)


def set_layer(dim: int, heads: int, inducing: int, *, chunk: int = 0, dtype=jnp.float32,
              rngs: nnx.Rngs) -> SAB | ISAB:
  """An SAB (``inducing`` = 0) or an ISAB with ``inducing`` points; ``chunk`` and ``dtype`` as
  in :class:`MultiheadAttention`."""
  if inducing < 0:
    raise ValueError(f"inducing points must be >= 0 (0: SAB), got {inducing}")
  if inducing:
    return ISAB(dim, heads, inducing, chunk=chunk, dtype=dtype, rngs=rngs)
  return SAB(dim, heads, chunk=chunk, dtype=dtype, rngs=rngs)


def apply_in_chunks(layer: nnx.Module, x: jax.Array, mask: jax.Array | None, chunk: int,
                    remat: str = "none") -> jax.Array:
  """``layer(x, mask)`` for many independent sets, ``chunk`` sets of every example at a time.

  x: [batch, rows, n, d], mask: [batch, rows, n] or None -> [batch, rows, n, d]. The chunks cut
  the ``rows`` of every example (a pixel's set, for MAGIC) and keep the batch axis whole inside
  each chunk: the batch is the axis a data-parallel mesh splits, so every device works on its
  own examples' chunk at every step (chunks of the flattened batch x rows would put whole
  chunks on single devices, and the partitioner replicates the loop). ``chunk`` 0 (or >=
  rows): all at once. Each chunk is recomputed in the backward pass as ``remat`` (a
  :data:`collage.nn.precision.REMAT` name) says: with a policy only one chunk's activations
  (attention scores included) live at once, forward and backward; with ``none`` the forward
  pass is chunked but the backward pass keeps every chunk's activations. The values are those
  of ``layer(x, mask)`` (the sets do not interact).
  """
  b, rows, n, d = x.shape
  flat = lambda a: None if a is None else a.reshape(-1, *a.shape[2:])
  if chunk <= 0 or chunk >= rows:
    out = precision.remat(lambda l, xs, ms: l(xs, ms), remat)(layer, flat(x), flat(mask))
    return out.reshape(b, rows, n, -1)
  graphdef, state = nnx.split(layer)  # inside the loop: a pure function of arrays
  leaves, treedef = jax.tree.flatten(state)
  run = precision.remat(
      lambda ls, xs, ms: nnx.merge(graphdef, jax.tree.unflatten(treedef, ls))(xs, ms), remat)
  pad = -rows % chunk
  # [batch, rows, ...] -> [chunks, batch, chunk, ...]: the loop runs over the chunks.
  split = lambda a: jnp.swapaxes(a.reshape(b, -1, chunk, *a.shape[2:]), 0, 1)
  xs = split(jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))))
  ms = None
  if mask is not None:  # padded sets attend to something: their keys are valid
    ms = split(jnp.pad(mask, ((0, 0), (0, pad), (0, 0)), constant_values=1))
  out = jax.lax.map(
      lambda a: run(leaves, flat(a[0]), flat(a[1])).reshape(b, chunk, n, -1), (xs, ms))
  return jnp.swapaxes(out, 0, 1).reshape(b, rows + pad, n, -1)[:, :rows]
