"""One precision and recomputation policy for every model, read from ``config.model``.

    c.model.dtype = "bfloat16"        # compute: matmuls, convolutions, attention
    c.model.param_dtype = "float32"   # parameters, optimizer state, EMA, checkpoints
    c.model.remat = "blocks"          # none | blocks | a jax.checkpoint_policies name

Parameters stay float32 whatever the compute dtype: a layer casts its float32 parameters to
the compute dtype when it runs (``nnx.Conv(..., dtype=compute, param_dtype=float32)``), so
the optimizer and the checkpoint never see a reduced-precision array. What must stay float32
whatever the policy (likelihoods, log-sum-exps, softmax normalizers, KL terms, losses and
their reductions, normalization statistics, anything decoded bit-exactly) is cast up with
:func:`f32` at the point where it starts.

``remat``: ``none`` keeps every activation for the backward pass; ``blocks`` recomputes each
block (a residual block, a U-Net level, a transformer layer) from its input, keeping nothing
inside it; a ``jax.checkpoint_policies`` name (``dots_with_no_batch_dims_saveable``,
``nothing_saveable``, ...) recomputes each block but keeps what that policy saves.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
PARAM_DTYPES = {"float32": jnp.float32}
# The policies of jax.checkpoint_policies that take no arguments, by name.
_POLICIES = ("dots_saveable", "dots_with_no_batch_dims_saveable", "checkpoint_dots",
             "checkpoint_dots_with_no_batch_dims", "nothing_saveable", "everything_saveable")
REMAT = ("none", "blocks", *_POLICIES)

F = TypeVar("F", bound=Callable[..., Any])


def compute_dtype(name: str) -> Any:
  """``config.model.dtype`` -> the jnp dtype matmuls and convolutions run in.

  Raises:
    ValueError: an unknown name, listing the valid ones.
  """
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"model.dtype={name!r} is not a compute dtype; valid: "
                     f"{', '.join(COMPUTE_DTYPES)} (float16 would need loss scaling, which "
                     "this codebase does not do)")
  return COMPUTE_DTYPES[name]


def param_dtype(name: str) -> Any:
  """``config.model.param_dtype`` -> the parameters' dtype (float32 only).

  Raises:
    ValueError: any other name: parameters, optimizer state, EMA and checkpoints stay float32.
  """
  if name not in PARAM_DTYPES:
    raise ValueError(f"model.param_dtype={name!r}: parameters, optimizer state, EMA and "
                     f"checkpoints stay float32; valid: {', '.join(PARAM_DTYPES)}. Set "
                     "model.dtype=bfloat16 to compute in bfloat16.")
  return PARAM_DTYPES[name]


def check_remat(name: str) -> str:
  """``config.model.remat``, checked.

  Raises:
    ValueError: an unknown name, listing the valid ones.
  """
  if name not in REMAT:
    raise ValueError(f"model.remat={name!r} is unknown; valid: {', '.join(REMAT)}")
  return name


def remat(fn: F, name: str, *, static_argnums: int | tuple[int, ...] = ()) -> F:
  """``fn`` recomputed in the backward pass as ``config.model.remat`` says (``none``: as is).

  ``fn`` may be a function of arrays or of NNX modules and arrays (``nnx.remat`` handles
  both). The value and the gradient are those of ``fn`` (tested); only what is kept differs.
  """
  if check_remat(name) == "none":
    return fn
  policy = None if name == "blocks" else getattr(jax.checkpoint_policies, name)
  return nnx.remat(fn, policy=policy, static_argnums=static_argnums)


def f32(x: jax.Array) -> jax.Array:
  """``x`` as float32: where a likelihood, a normalizer, a loss or a statistic starts."""
  return jnp.asarray(x, jnp.float32)


def cast(tree: Any, dtype: Any) -> Any:
  """Every floating array of ``tree`` as ``dtype`` (integers and keys untouched)."""
  def one(x):
    if isinstance(x, (jax.Array, jnp.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating):
      return x.astype(dtype)
    return x
  return jax.tree.map(one, tree)
