"""Joining a multi-process JAX job (``jax.distributed.initialize``) when launched as one."""

from __future__ import annotations

import os

import jax
from absl import logging


def launched_multiprocess(env: dict[str, str] | None = None) -> str | None:
  """Which launcher started this process as part of a multi-process job, or None.

  Recognises SLURM (``SLURM_NTASKS`` > 1 inside a job step), Open MPI
  (``OMPI_COMM_WORLD_SIZE`` > 1) and Cloud TPU pods (several ``TPU_WORKER_HOSTNAMES``);
  JAX's cluster auto-detection then finds the coordinator itself.
  """
  env = os.environ if env is None else env
  if int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")) or 1) > 1 and "SLURM_STEP_ID" in env:
    return "slurm"
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
    return "mpi"
  if len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
    return "tpu"
  return None


def maybe_initialize(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, env: dict[str, str] | None = None) -> bool:
  """Calls ``jax.distributed.initialize`` for a multi-process launch; must precede any JAX use.

  Args:
    coordinator_address: "host:port" of process 0 (explicit launch); with it, give
      ``num_processes`` and ``process_id`` too.
    num_processes, process_id: this job's size and this process's rank (explicit launch).
    env: environment to inspect (default ``os.environ``).

  Returns:
    True when this process joined a multi-process job.
  """
  explicit = [coordinator_address, num_processes, process_id]
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise ValueError(
          "an explicit multi-process launch needs all of --coordinator_address, --num_processes "
          f"and --process_id; got coordinator_address={coordinator_address!r}, "
          f"num_processes={num_processes!r}, process_id={process_id!r}.")
    _cpu_collectives()
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  else:
    launcher = launched_multiprocess(env)
    if launcher is None:
      return False
    logging.info("multi-process launch detected (%s); joining the job", launcher)
    _cpu_collectives()
    jax.distributed.initialize()
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def _cpu_collectives() -> None:
  """CPU-only jobs need a cross-process collectives backend (gloo); GPUs/TPUs have their own."""
  if os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
