"""The one timer of the benchmarks: the best of several calls after a warm-up call."""

from __future__ import annotations

import time
from typing import Any, Callable

import jax


def best_time(fn: Callable[[], Any], reps: int) -> float:
  """Least wall seconds of ``reps`` calls of ``fn`` (its result waited for), after one untimed
  call that compiles and warms up."""
  jax.block_until_ready(fn())
  best = float("inf")
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t)
  return best
