"""Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019), k = 3 nearest neighbours.

Each feature set spans a manifold: the union of balls around its points, the ball of point
``phi`` reaching its k-th nearest neighbour in its own set (the point itself not counted).
Precision is the fraction of generated features inside the real manifold, recall the fraction
of real features inside the generated one; a point on a ball's surface is inside.

    precision = mean_{g in G} [ exists r in R: |g - r| <= NN_k(r, R) ]
    recall    = mean_{r in R} [ exists g in G: |r - g| <= NN_k(g, G) ]

Distances are squared Euclidean, ``max(|u|^2 - 2 u.v + |v|^2, 0)``, in float32 at full matmul
precision, in blocks of rows and columns (memory is ``O(block^2)``), on the default JAX device.
guided-diffusion's evaluator computes the same in float16 when no block overflows (float32
otherwise); a point within float16's rounding of a ball's surface may count differently there.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

K = 3  # the paper's neighbourhood size, also guided-diffusion's
BLOCK = 2048  # rows and columns per distance block


@jax.jit
def _sq_distances(u: jax.Array, v: jax.Array) -> jax.Array:
  """u: [A, D], v: [B, D] -> squared Euclidean distances [A, B], float32."""
  hi = jax.lax.Precision.HIGHEST
  nu = jnp.sum(u * u, axis=1)[:, None]
  nv = jnp.sum(v * v, axis=1)[None, :]
  return jnp.maximum(nu - 2.0 * jnp.dot(u, v.T, precision=hi) + nv, 0.0)


@functools.partial(jax.jit, static_argnames="k")
def _merge_smallest(best: jax.Array, u: jax.Array, v: jax.Array, valid: jax.Array,
                    k: int) -> jax.Array:
  """The k + 1 smallest squared distances of each row of u so far, merged with block v."""
  d = jnp.where(valid[None, :], _sq_distances(u, v), jnp.inf)
  both = jnp.concatenate([best, d], axis=1)
  return -jax.lax.top_k(-both, k + 1)[0]


@jax.jit
def _covered(hit: jax.Array, u: jax.Array, v: jax.Array, radii: jax.Array) -> jax.Array:
  """Rows of u inside a ball of block v (radii: squared, -inf for padding rows), OR hit."""
  return hit | jnp.any(_sq_distances(u, v) <= radii[None, :], axis=1)


def _blocks(x: np.ndarray, block: int):
  """(start, padded block [block, D], valid [block]) over the rows of x."""
  for start in range(0, len(x), block):
    part = x[start:start + block]
    valid = np.zeros(block, bool)
    valid[:len(part)] = True
    yield start, np.pad(part, ((0, block - len(part)), (0, 0))), valid


def _check(features: np.ndarray, name: str, k: int) -> np.ndarray:
  x = np.asarray(features, np.float32)
  if x.ndim != 2 or x.shape[0] <= k:
    raise ValueError(f"{name} must be [N > k={k}, D] features, got shape {x.shape}")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} contain NaN or infinity")
  return x


def knn_radii(features: np.ndarray, k: int = K, block: int = BLOCK) -> np.ndarray:
  """features: [N, D] -> [N] squared distance of each point to its k-th nearest neighbour in
  the set, itself not counted (the (k + 1)-th smallest distance, the first being its own 0)."""
  x = _check(features, "features", k)
  block = min(block, len(x))
  out = np.empty(len(x), np.float32)
  for start, rows, _ in _blocks(x, block):
    best = jnp.full((block, k + 1), jnp.inf, jnp.float32)
    for _, cols, valid in _blocks(x, block):
      best = _merge_smallest(best, rows, cols, valid, k)
    n = min(block, len(x) - start)
    out[start:start + n] = np.asarray(best)[:n, k]
  return out


def inside(queries: np.ndarray, points: np.ndarray, radii: np.ndarray,
           block: int = BLOCK) -> np.ndarray:
  """queries: [M, D]; points: [N, D] with squared radii [N] -> bool [M]: inside some ball."""
  q, p = np.asarray(queries, np.float32), np.asarray(points, np.float32)
  r = np.asarray(radii, np.float32)
  if q.ndim != 2 or p.ndim != 2 or q.shape[1] != p.shape[1] or r.shape != (len(p),):
    raise ValueError(f"need queries [M, D], points [N, D], radii [N]; got {q.shape}, {p.shape}, "
                     f"{r.shape}")
  bq, bp = min(block, len(q)), min(block, len(p))
  out = np.empty(len(q), bool)
  for start, rows, _ in _blocks(q, bq):
    hit = jnp.zeros(bq, bool)
    for col, cols, valid in _blocks(p, bp):
      rad = np.where(valid, np.pad(r[col:col + bp], (0, bp - valid.sum())), -np.inf)
      hit = _covered(hit, rows, cols, rad.astype(np.float32))
    n = min(bq, len(q) - start)
    out[start:start + n] = np.asarray(hit)[:n]
  return out


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = K,
                     block: int = BLOCK) -> tuple[float, float]:
  """real: [N, D], fake: [M, D] features -> (precision, recall), each in [0, 1].

  Raises:
    ValueError: a set with k or fewer points, different feature sizes, or non-finite features.
  """
  r, f = _check(real, "real features", k), _check(fake, "generated features", k)
  if r.shape[1] != f.shape[1]:
    raise ValueError(f"real and generated features differ in size: {r.shape[1]} vs {f.shape[1]}")
  precision = inside(f, r, knn_radii(r, k, block), block).mean()
  recall = inside(r, f, knn_radii(f, k, block), block).mean()
  return float(precision), float(recall)
