"""Runs as submitit jobs: the callable they run, the executors, and each run's state.

Each job runs :class:`RunCommand`: the run's entrypoint command, its output appended to
``WORKDIR/log.txt``, its exit status returned. On SLURM every task of a multi-node job runs it, and
the entrypoint joins the tasks with ``jax.distributed`` from the SLURM environment. When submitit
signals a coming time limit or preemption, the command gets SIGTERM (the runtime checkpoints the
step and exits 143) and the job is requeued; the rerun resumes from that checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import signal
import subprocess
from typing import Any

import submitit

EXECUTORS = ("local", "slurm")
STATES = ("queued", "running", "done", "failed", "preempted")
# Exit statuses of an interrupted run (collage.train.interrupt): it checkpointed and can resume.
INTERRUPTED = (143, 130, -signal.SIGTERM, -signal.SIGINT)
_CHILD: dict[str, subprocess.Popen] = {}  # the running command of this job process


@dataclasses.dataclass
class RunCommand:
  """The callable a job runs: ``command`` in ``cwd``, output appended to ``log``.

  Returns ``{"returncode": status}``; a failing command is a result, not an exception, so
  ``status`` can tell a failure from an interruption.
  """
  command: list[str]
  cwd: str
  log: str
  env: dict[str, str] | None = None

  def __call__(self) -> dict[str, Any]:
    os.makedirs(os.path.dirname(self.log), exist_ok=True)
    env = {**os.environ, **(self.env or {})}
    with open(self.log, "a", encoding="utf-8") as log:
      log.write(f"\n=== {datetime.datetime.now().isoformat(timespec='seconds')} "
                f"{subprocess.list2cmdline(self.command)}\n")
      log.flush()
      proc = subprocess.Popen(self.command, cwd=self.cwd, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
      _CHILD["proc"] = proc
      pid_file = os.path.join(os.path.dirname(self.log), "run.pid")
      with open(pid_file, "w", encoding="utf-8") as f:
        f.write(str(proc.pid))
      try:
        code = proc.wait()
      finally:
        _CHILD.pop("proc", None)
        if os.path.exists(pid_file):
          os.remove(pid_file)
    return {"returncode": code}

  def checkpoint(self) -> submitit.helpers.DelayedSubmission:
    """submitit's hook before a time limit or preemption: stop the command so that it
    checkpoints (SIGTERM), then requeue the same command (it resumes)."""
    proc = _CHILD.get("proc")
    if proc is not None and proc.poll() is None:
      proc.send_signal(signal.SIGTERM)
      try:
        proc.wait(timeout=110)
      except subprocess.TimeoutExpired:
        proc.kill()
    return submitit.helpers.DelayedSubmission(RunCommand(self.command, self.cwd, self.log,
                                                         self.env))


@dataclasses.dataclass
class Resources:
  """What each run asks for.

  Attributes:
    gpus_per_run: GPUs per node of a run (0 on CPU).
    nodes_per_run: nodes of a run (SLURM; one process per node).
    partition, time_min, cpus_per_task, setup: SLURM's partition, time limit (minutes), CPUs per
      task and shell lines run before the command (e.g. activating the virtual environment).
  """
  gpus_per_run: int = 0
  nodes_per_run: int = 1
  partition: str | None = None
  time_min: int = 24 * 60
  cpus_per_task: int | None = None
  setup: list[str] = dataclasses.field(default_factory=list)


def make_executor(kind: str, folder: str, resources: Resources, name: str,
                  visible_gpus: tuple[int, ...] = ()) -> submitit.Executor:
  """A submitit executor for one run.

  Raises:
    ValueError: an unknown executor kind (listing the valid ones) or a multi-node local run.
  """
  if kind == "local":
    if resources.nodes_per_run != 1:
      raise ValueError(f"--nodes_per_run={resources.nodes_per_run}: the local executor runs on "
                       "this one machine; use --executor slurm for multi-node runs")
    ex = submitit.LocalExecutor(folder=folder)
    params = {"timeout_min": resources.time_min, "gpus_per_node": resources.gpus_per_run}
    if visible_gpus:
      params["visible_gpus"] = list(visible_gpus)
    ex.update_parameters(**params)
    return ex
  if kind == "slurm":
    ex = submitit.SlurmExecutor(folder=folder)
    params = {"job_name": name, "time": resources.time_min, "nodes": resources.nodes_per_run,
              "ntasks_per_node": 1, "signal_delay_s": 120, "setup": list(resources.setup)}
    if resources.gpus_per_run:
      params["gpus_per_node"] = resources.gpus_per_run
    if resources.partition:
      params["partition"] = resources.partition
    if resources.cpus_per_task:
      params["cpus_per_task"] = resources.cpus_per_task
    ex.update_parameters(**params)
    return ex
  raise ValueError(f"--executor={kind!r} is unknown; valid: {', '.join(EXECUTORS)}")


def local_gpu_count() -> int:
  """GPUs on this machine (``nvidia-smi -L``), 0 without an NVIDIA driver."""
  if shutil.which("nvidia-smi") is None:
    return 0
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return 0
  return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _outcome(result: Any) -> str:
  code = result.get("returncode") if isinstance(result, dict) else None
  if code == 0:
    return "done"
  if code in INTERRUPTED:
    return "preempted"
  return "failed"


_SLURM_STATES = {"PENDING": "queued", "CONFIGURING": "queued", "REQUEUED": "queued",
                 "RUNNING": "running", "COMPLETING": "running", "PREEMPTED": "preempted",
                 "TIMEOUT": "preempted"}


def run_state(executor: str, folder: str, job_id: str | None) -> str:
  """One of :data:`STATES` for a run's latest job (``None``: never submitted -> "queued")."""
  if job_id is None:
    return "queued"
  job_cls = submitit.LocalJob if executor == "local" else submitit.SlurmJob
  job = job_cls(folder=folder, job_id=str(job_id))
  if job.paths.result_pickle.exists():
    try:
      result = job.result()
    except Exception:  # pylint: disable=broad-except  (the job raised: submitit re-raises it)
      return "failed"
    return _outcome(result)
  if executor == "local":
    return "running" if _alive(int(job_id)) else "failed"
  state = str(job.state).upper()
  if state in _SLURM_STATES:
    return _SLURM_STATES[state]
  if state.startswith("CANCELLED") or state in ("FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                                                "BOOT_FAIL", "DEADLINE"):
    return "failed"
  return "running" if state in ("UNKNOWN", "") else state.lower()
