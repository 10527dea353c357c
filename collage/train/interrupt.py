"""SIGTERM / SIGINT during training: finish the step, checkpoint it, exit cleanly.

A cluster scheduler sends SIGTERM some time before it stops a job (``launch/slurm.sbatch`` asks
SLURM for 120 s); a person presses Ctrl-C (SIGINT). The loop asks :meth:`Interruption.stop_at`
after every step; once it says yes, the loop checkpoints that step (state and data position),
waits for the checkpoint to be committed and raises :class:`Interrupted`, which the entrypoint
turns into one log line and exit status 128 + signal (143 for SIGTERM, 130 for SIGINT). A second
signal while that happens exits at once (the checkpoint being written is not committed, so the
previous one stays the latest).

Several processes must save the same step. There JAX's preemption service handles SIGTERM: it
tells every process, which agree on the step to stop at
(``multihost_utils.reached_preemption_sync_point``); SIGINT keeps Python's default there.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import jax

EXIT_STATUS = {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGINT: 128 + signal.SIGINT}


class Interrupted(Exception):
  """Training stopped on a signal after checkpointing ``step``."""

  def __init__(self, step: int, signum: int):
    self.step, self.signum = step, signum
    self.exit_status = EXIT_STATUS.get(signum, 128 + signum)
    super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}; checkpoint "
                     "saved; rerun the same command to resume")


class Interruption:
  """Watches for SIGTERM and SIGINT while training (a context manager).

  Args:
    multi_process: stop where all processes agree (JAX's preemption service) instead of at the
      next step of this process.
  """

  def __init__(self, multi_process: bool | None = None):
    self.multi_process = jax.process_count() > 1 if multi_process is None else multi_process
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  def __enter__(self) -> "Interruption":
    watched = [] if self.multi_process else [signal.SIGTERM, signal.SIGINT]
    for s in watched:
      try:
        self._previous[s] = signal.signal(s, self._handle)
      except ValueError:  # not the main thread: signals cannot be watched here
        pass
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}

  def _handle(self, signum: int, frame: Any) -> None:
    del frame
    if self.signum is not None:  # the second signal: leave now, the last commit stands
      sys.stderr.write(f"error: second {signal.Signals(signum).name} while stopping; exiting "
                       "without finishing the checkpoint (the previous one stays the latest)\n")
      sys.stderr.flush()
      os._exit(EXIT_STATUS.get(signum, 128 + signum))  # pylint: disable=protected-access
    self.signum = signum

  def stop_at(self, step: int) -> bool:
    """Whether to checkpoint ``step`` and stop (call after every step, on every process)."""
    if self.multi_process:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      if multihost_utils.reached_preemption_sync_point(step):
        self.signum = self.signum or signal.SIGTERM
        return True
      return False
    return self.signum is not None
