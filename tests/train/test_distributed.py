"""Detection of multi-process launches (no process group is actually joined here)."""

import pytest

from collage.train import distributed


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"SLURM_NTASKS": "1", "SLURM_STEP_ID": "0"}, None),
    ({"SLURM_NTASKS": "4", "SLURM_STEP_ID": "0"}, "slurm"),
    ({"SLURM_NTASKS": "4"}, None),  # inside an allocation but not an srun step: single process
    ({"OMPI_COMM_WORLD_SIZE": "2"}, "mpi"),
    ({"TPU_WORKER_HOSTNAMES": "a,b"}, "tpu"),
    ({"TPU_WORKER_HOSTNAMES": "a"}, None),
])
def test_launcher_detection(env, expected):
  assert distributed.launched_multiprocess(env) == expected


def test_single_process_does_not_initialize():
  assert distributed.maybe_initialize(env={}) is False


def test_partial_explicit_flags_are_an_error():
  with pytest.raises(ValueError, match="--num_processes"):
    distributed.maybe_initialize(coordinator_address="localhost:1234")
