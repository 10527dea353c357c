"""Fixed points of contractions by iteration, with an unrolled or an implicit gradient.

For a map ``x -> f(theta, x)`` that is a contraction in ``x`` the iteration
``x_{n+1} = f(theta, x_n)`` converges to the unique fixed point ``x*(theta)`` (Banach).
Two ways to differentiate ``x*`` with respect to ``theta``:

* unrolled: backpropagate through every iteration (``lax.scan``); memory grows with the
  number of steps, and the gradient is exactly that of the truncated iteration.
* implicit: ``x* = f(theta, x*)`` gives ``dx*/dtheta = (I - df/dx)^{-1} df/dtheta``, so
  the vector-Jacobian product with a cotangent ``g`` is ``(df/dtheta)^T u`` where ``u``
  solves the adjoint fixed point ``u = g + (df/dx)^T u``. That equation is solved by the
  same iteration (it converges because ``(df/dx)^T`` has the same spectral radius as
  ``df/dx``); memory does not depend on the number of steps. See e.g. Bai et al. 2019,
  "Deep Equilibrium Models", and the JAX custom-VJP docs (implicit fixed points).

Pure ``jax`` functions; ``f`` must be a pure function of ``(theta, x)`` with ``theta``
any pytree of arrays.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Theta = Any
StepFn = Callable[[Theta, jax.Array], jax.Array]


class Schedule(NamedTuple):
  """When to stop iterating: ``steps`` fixed iterations, or until the largest absolute
  change of one iteration is ``<= tol`` (at most ``max_steps`` iterations)."""
  steps: int | None = None
  tol: float | None = None
  max_steps: int = 1000


def check_schedule(steps: int | None, tol: float | None, max_steps: int) -> Schedule:
  """Validate and bundle a stopping rule; exactly one of ``steps`` / ``tol`` is given."""
  if (steps is None) == (tol is None):
    raise ValueError(f"give exactly one of steps (fixed iterations) or tol (tolerance), "
                     f"got steps={steps}, tol={tol}")
  if steps is not None and int(steps) < 0:
    raise ValueError(f"steps must be >= 0, got {steps}")
  if tol is not None and not float(tol) > 0:
    raise ValueError(f"tol must be > 0, got {tol}")
  if int(max_steps) < 1:
    raise ValueError(f"max_steps must be >= 1, got {max_steps}")
  return Schedule(None if steps is None else int(steps),
                  None if tol is None else float(tol), int(max_steps))


def _max_abs(x: jax.Array) -> jax.Array:
  return jnp.max(jnp.abs(x)) if x.size else jnp.zeros((), x.dtype)


def iterate(f: StepFn, theta: Theta, x0: jax.Array, schedule: Schedule) -> jax.Array:
  """Run the iteration under ``schedule`` (forward only; see :func:`fixed_point` for
  gradients). With ``steps`` it is a ``lax.scan`` (reverse-differentiable), with ``tol``
  a ``lax.while_loop`` (not reverse-differentiable: use the implicit gradient)."""
  if schedule.steps is not None:
    def body(x, _):
      return f(theta, x), None
    x, _ = lax.scan(body, x0, None, length=schedule.steps)
    return x

  def cond(carry):
    _, delta, n = carry
    return (n < schedule.max_steps) & (delta > schedule.tol)

  def body(carry):
    x, _, n = carry
    y = f(theta, x)
    return y, _max_abs(y - x).astype(jnp.float32), n + 1

  init = (x0, jnp.asarray(jnp.inf, jnp.float32), jnp.asarray(0, jnp.int32))
  x, _, _ = lax.while_loop(cond, body, init)
  return x


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def _implicit(f: StepFn, theta: Theta, x0: jax.Array, schedule: Schedule) -> jax.Array:
  return iterate(f, theta, x0, schedule)


def _implicit_fwd(f, theta, x0, schedule):
  x = iterate(f, theta, x0, schedule)
  return x, (theta, x)


def _implicit_bwd(f, schedule, residuals, g):
  theta, x = residuals
  _, vjp = jax.vjp(f, theta, x)
  # Adjoint fixed point u = g + (df/dx)^T u, iterated from u = g.
  u = iterate(lambda _, v: g + vjp(v)[1], None, g, schedule)
  theta_bar = vjp(u)[0]
  # The fixed point does not depend on the start.
  return theta_bar, jnp.zeros_like(x)


_implicit.defvjp(_implicit_fwd, _implicit_bwd)


def fixed_point(f: StepFn, theta: Theta, x0: jax.Array, *, steps: int | None = None,
                tol: float | None = None, max_steps: int = 1000,
                implicit: bool | None = None) -> jax.Array:
  """Iterate ``x <- f(theta, x)`` from ``x0``; differentiable in ``theta``.

  Args:
    f: the step, a pure function ``(theta, x) -> x`` (a contraction in ``x``).
    theta: pytree of parameters.
    x0: the start, any array shape that ``f`` maps to itself.
    steps: run exactly this many iterations, or
    tol: stop when one iteration changes no entry by more than ``tol`` (at most
      ``max_steps`` iterations).
    max_steps: the cap for ``tol``.
    implicit: gradient by the implicit function theorem (memory independent of the
      number of steps) instead of by backpropagating through the iterations. Default:
      implicit when ``tol`` is given (a while loop cannot be unrolled backwards),
      unrolled when ``steps`` is.

  Returns:
    The last iterate, same shape as ``x0``.
  """
  schedule = check_schedule(steps, tol, max_steps)
  if implicit is None:
    implicit = schedule.tol is not None
  if not implicit:  # with tol: evaluation works, reverse-mode differentiation raises in JAX
    return iterate(f, theta, x0, schedule)
  return _implicit(f, theta, x0, schedule)
