"""The device mesh and how arrays are placed on it: batch sharded on "data", state replicated."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from collage.train.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over all devices (of all processes), axis ``"data"``.

  The axis is ``Auto``: tasks write ordinary jnp code over the global batch and XLA
  inserts the collectives (e.g. the mean over a sharded batch).
  """
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of an array copied whole to every device."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of an array whose leading (batch) axis is split over ``"data"``."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> int:
  """The per-process batch size; raises if the global batch does not split evenly.

  Args:
    batch_size: the global batch size (all processes, all devices).
    mesh: the mesh the batch is sharded over.

  Returns:
    ``batch_size // jax.process_count()``, the rows each process loads.
  """
  n = mesh.devices.size
  if batch_size <= 0 or batch_size % n:
    raise ConfigError(
        f"config.batch_size={batch_size} is not divisible by the number of devices "
        f"({n}); choose a batch size that is a positive multiple of {n}, e.g. "
        f"--config.batch_size={max(n, (batch_size // n) * n or n)}.")
  return batch_size // jax.process_count()


def global_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Assembles this process's rows into global arrays sharded over ``"data"``.

  Args:
    local_batch: pytree of host arrays ``[B / process_count, ...]`` (this process's share).
    mesh: the mesh.

  Returns:
    The same pytree of global ``jax.Array`` of shape ``[B, ...]``, sharded on the batch axis.
  """
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def to_host(tree: Any) -> Any:
  """Replicated global arrays -> numpy (works when they span several processes)."""
  def fetch(x):
    if isinstance(x, jax.Array):
      if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
      return np.asarray(x.addressable_shards[0].data)
    return x
  return jax.tree.map(fetch, tree)


def gather(tree: Any) -> Any:
  """Batch-sharded global arrays -> whole numpy arrays on every process."""
  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
  return jax.tree.map(fetch, tree)
