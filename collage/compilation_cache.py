"""JAX's persistent compilation cache for the commands a person runs (``collage-codec``,
``experiments.main``): the second run of a command on shapes it has seen loads its compiled
programs from disk instead of compiling them again.

The cache lives in ``$COLLAGE_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/collage/jax`` (by
default ``~/.cache/collage/jax``); ``COLLAGE_CACHE_DIR=off`` disables it. Every compiled program
is kept, however fast it compiled: the codec's are many and short (benchmarks/cold_start.md).
"""

from __future__ import annotations

import os

import jax

ENV = "COLLAGE_CACHE_DIR"
OFF = ("", "0", "off", "none", "false")


def cache_dir() -> str | None:
  """Where the cache lives, or None when ``COLLAGE_CACHE_DIR`` turns it off."""
  path = os.environ.get(ENV)
  if path is not None:
    return None if path.strip().lower() in OFF else os.path.abspath(os.path.expanduser(path))
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "collage", "jax")


def enable() -> str | None:
  """Turns the persistent cache on for this process (before anything compiles); returns its
  directory, or None when it is off or cannot be created (then nothing changes)."""
  path = cache_dir()
  if path is None:
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path
