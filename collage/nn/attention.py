"""Scaled dot-product attention for every model: ``jax.nn.dot_product_attention``, optionally
in chunks of the batch so the score tensor of all rows is never held at once.

On a GPU, ``jax.nn.dot_product_attention(implementation=None)`` runs cuDNN's fused kernel where
its shapes and dtype allow (bfloat16/float16, supported head sizes) and XLA's path elsewhere
(the CPU); either way the logits and the softmax are float32 (XLA's path computes the logits
with a float32 accumulator and the softmax in float32), so a bfloat16 model keeps its softmax
normalizers exact to float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *, key_mask: jax.Array | None = None,
              mask: jax.Array | None = None, is_causal: bool = False,
              chunk: int = 0) -> jax.Array:
  """Multi-head attention over any leading batch axes.

  Args:
    q: [..., n, heads, c] queries.
    k, v: [..., m, heads, c] keys and values (the same leading axes as ``q``).
    key_mask: [..., m], 1 for keys that may be attended to (padding: 0), or None.
    mask: a boolean mask broadcastable to [..., heads, n, m] (True: attend), or None; it must
      not vary over the leading axes when ``chunk`` is set.
    is_causal: query t attends to keys <= t.
    chunk: 0 for all rows at once; else the flattened leading axes are processed this many rows
      at a time (``lax.map``, each chunk recomputed in the backward pass), so only
      [chunk, heads, n, m] scores live at once, in training too.

  Returns:
    [..., n, heads, c] in ``q``'s dtype.
  """
  lead, (n, h, c) = q.shape[:-3], q.shape[-3:]
  rows = math.prod(lead)
  qf, kf, vf = (x.reshape(rows, *x.shape[-3:]) for x in (q, k, v))
  km = None if key_mask is None else key_mask.reshape(rows, key_mask.shape[-1])
  fixed = None if mask is None else jnp.asarray(mask, bool)
  if fixed is not None and fixed.ndim > 3:  # [..., heads, n, m] with size-1 leading axes
    fixed = fixed.reshape(fixed.shape[-3:])

  def run(qb, kb, vb, kmb):
    full = fixed
    if kmb is not None:
      keep = (kmb > 0)[:, None, None, :]
      full = keep if full is None else jnp.logical_and(keep, full)
    return jax.nn.dot_product_attention(qb, kb, vb, mask=full, is_causal=is_causal)

  if chunk <= 0 or chunk >= rows:
    out = run(qf, kf, vf, km)
  else:
    pad = -rows % chunk
    padded = [jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1)) if x is not None else None
              for x in (qf, kf, vf, km)]
    if km is not None:  # padded rows attend to something: keep their keys valid
      padded[3] = padded[3].at[rows:].set(1)
    blocks = [None if x is None else x.reshape(-1, chunk, *x.shape[1:]) for x in padded]
    # Each chunk is recomputed in the backward pass: only its inputs are kept, never the
    # scores of all rows (lax.map alone would save every chunk's scores for the gradient).
    step = jax.checkpoint(run)
    if blocks[3] is None:
      out = jax.lax.map(lambda a: step(a[0], a[1], a[2], None), tuple(blocks[:3]))
    else:
      out = jax.lax.map(lambda a: step(*a), tuple(blocks))
    out = out.reshape(-1, n, h, c)[:rows]
  return out.reshape(*lead, n, h, c)


def reference_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                        key_mask: jax.Array | None = None) -> jax.Array:
  """The textbook formula in float32 (tests compare :func:`attention` with it).
  q: [..., n, heads, c], k, v: [..., m, heads, c], key_mask: [..., m] -> [..., n, heads, c]."""
  q, k, v = (x.astype(jnp.float32) for x in (q, k, v))
  logits = jnp.einsum("...nhc,...mhc->...hnm", q, k) / jnp.sqrt(q.shape[-1])
  if key_mask is not None:
    logits = jnp.where(key_mask[..., None, None, :] > 0, logits, -jnp.inf)
  return jnp.einsum("...hnm,...mhc->...nhc", jax.nn.softmax(logits, axis=-1), v)
