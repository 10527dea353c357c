"""Test-time refinement of a Neural Collage code (:func:`refine_code`): the codec
(``collage.codec.neural``, ``refine``) runs it between the encoder's forward pass and the
rounding, so it changes what is written, never how it is decoded.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from collage.metrics.rd import rd_cost
from collage.nn import entropy_model as em
from collage.nn.neural_collage import NeuralCollage


def refine_code(model: NeuralCollage, rgb: jax.Array, y: jax.Array, lam: float, steps: int,
                lr: float = 0.2, seed: int = 0, level: jax.Array | None = None) -> jax.Array:
  """Test-time refinement: ``steps`` Adam steps on the code ``y`` of these tiles.

  The encoder's one-pass code is a starting point; Adam minimises the training objective
  (:func:`collage.metrics.rd.rd_cost` per tile: the relaxed rate in bpp under the model's
  prior + ``lam * 255^2 * MSE`` of the straight-through rounded decode) over ``y`` itself, with the model fixed (Campos et al. 2019, "Content
  adaptive optimization for neural image compression"). The relaxed objective is only a
  proxy, so every iterate is also scored by the TRUE cost of its rounded code (its bits
  under the prior at the integers + the distortion of the very decode the forward pass
  computed), and each tile keeps its best iterate, the encoder's code included: a tile's
  true cost never gets worse. The decoder is unchanged. Deterministic for a given seed.

  rgb: [B, T, T, 3] in [0, 1]; y: [B, N] continuous code (quantization units) -> [B, N];
  ``level`` [B]: the rows' rate levels (variable-rate models only).
  """
  lo, hi = model.clip_range()
  pixels = rgb.shape[1] * rgb.shape[2]
  entropy = model.cfg.coding == "entropy"

  def loss(v, key):
    vc = jnp.clip(v, lo, hi)
    q = em.round_ste(vc)
    mse = jnp.mean((model.synthesise(q, 3, level=level) - rgb) ** 2, axis=(1, 2, 3))  # [B]
    if entropy:
      # A context model's contexts come from the code that would be written, as in training.
      relaxed = jnp.sum(model.bits(em.uniform_noise(key, vc), level,
                                   jax.lax.stop_gradient(q)), -1) / pixels
      exact = jnp.sum(model.bits(jax.lax.stop_gradient(q), level), -1) / pixels
    else:
      relaxed = exact = jnp.zeros_like(mse)
    true_cost = jax.lax.stop_gradient(rd_cost(exact, mse, lam))
    return jnp.mean(rd_cost(relaxed, mse, lam)), true_cost

  opt = optax.adam(lr)
  key0 = jax.random.PRNGKey(seed)
  grad = jax.grad(loss, has_aux=True)

  def keep_best(v, cost, best, best_cost):
    better = cost < best_cost
    return jnp.where(better[:, None], v, best), jnp.where(better, cost, best_cost)

  def body(i, carry):
    v, state, best, best_cost = carry
    g, cost = grad(v, jax.random.fold_in(key0, i))
    best, best_cost = keep_best(v, cost, best, best_cost)
    updates, state = opt.update(g, state, v)
    return optax.apply_updates(v, updates), state, best, best_cost

  inf = jnp.full((y.shape[0],), jnp.inf, y.dtype)
  v, _, best, best_cost = jax.lax.fori_loop(0, steps, body, (y, opt.init(y), y, inf))
  _, cost = loss(v, key0)
  best, _ = keep_best(v, cost, best, best_cost)
  return best
