"""Gradients through collage decoding: finite, equal to finite differences, implicit == unrolled."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.ops import collage as co
from collage.ops import fixed_point as fp

SPEC = co.CollageSpec(image_size=8, range_size=2, domain_size=4, domain_stride=2,
                      isometries=(0, 1, 4), num_aux=1, channels=2, s_max=0.6)


def _setup(dtype):
  key = jax.random.PRNGKey(0)
  rw, rb = co.init_raw(SPEC, key, 2, stddev=0.5)
  aux = jax.random.uniform(jax.random.fold_in(key, 1), SPEC.aux_shape())
  target = jax.random.uniform(jax.random.fold_in(key, 2), (2, 8, 8, 2))
  return tuple(a.astype(dtype) for a in (rw, rb, aux, target))


def _loss(rw, rb, aux, target, **decode_kw):
  x = co.decode(SPEC, co.params_from_raw(SPEC, rw, rb), aux, **decode_kw)
  return jnp.mean((x - target) ** 2)


def test_gradients_match_finite_differences():
  with jax.enable_x64(True):
    rw, rb, aux, target = _setup(jnp.float64)
    loss = jax.jit(lambda *a: _loss(*a, steps=30))
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(rw, rb, aux, target)
    for g in grads:
      assert g.dtype == jnp.float64 and bool(jnp.all(jnp.isfinite(g)))
    # Directional derivatives along random directions, central differences.
    eps = 1e-6
    for i, (arg, g) in enumerate(zip((rw, rb, aux), grads)):
      v = jax.random.normal(jax.random.PRNGKey(10 + i), arg.shape, jnp.float64)
      args_p = [rw, rb, aux]
      args_m = [rw, rb, aux]
      args_p[i] = arg + eps * v
      args_m[i] = arg - eps * v
      fd = (loss(*args_p, target) - loss(*args_m, target)) / (2 * eps)
      np.testing.assert_allclose(float(jnp.vdot(g, v)), float(fd), rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("mode", ["implicit_steps", "implicit_tol"])
def test_implicit_gradient_equals_unrolled(mode):
  rw, rb, aux, target = _setup(jnp.float32)
  unrolled = jax.jit(jax.grad(lambda *a: _loss(*a, steps=60), argnums=(0, 1, 2)))(
      rw, rb, aux, target)
  kw = dict(steps=60, implicit=True) if mode == "implicit_steps" else dict(tol=1e-7)
  implicit = jax.jit(jax.grad(lambda *a: _loss(*a, **kw), argnums=(0, 1, 2)))(
      rw, rb, aux, target)
  for u, i in zip(unrolled, implicit):
    scale = float(jnp.max(jnp.abs(u)))
    assert scale > 0
    np.testing.assert_allclose(i, u, atol=1e-4 * scale)


def test_implicit_gradient_of_a_scalar_contraction():
  """x* = a x* + b  =>  x* = b / (1 - a): d/da = b / (1 - a)^2, d/db = 1 / (1 - a)."""
  f = lambda th, x: th[0] * x + th[1]
  a, b = 0.5, 2.0
  g = jax.grad(lambda th: fp.fixed_point(f, th, jnp.zeros(()), tol=1e-7)[()])((a, b))
  np.testing.assert_allclose(g, (b / (1 - a) ** 2, 1 / (1 - a)), rtol=1e-5)


def test_schedule_validation():
  with pytest.raises(ValueError, match="exactly one"):
    fp.check_schedule(3, 1e-3, 10)
  with pytest.raises(ValueError, match="tol must be > 0"):
    fp.check_schedule(None, 0.0, 10)
