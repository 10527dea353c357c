"""Scalar metrics to TensorBoard and ``WORKDIR/metrics.jsonl`` (process 0 only), and progress lines."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Mapping

import jax
from absl import logging


CONFIG_FILE = "config.json"  # the resolved config a run records in its workdir


def write_config(config: Any, workdir: str) -> str:
  """Writes the resolved config to ``workdir/config.json``; returns the path."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path, "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
  return path


class MetricWriter:
  """Writes scalars on process 0; a no-op on every other process. The files are opened at
  the first row, so a run that logs nothing (``--mode sample``) leaves no empty event file.

  Args:
    workdir: the run directory; TensorBoard events go directly in it, JSON lines to
      ``metrics.jsonl``.
  """

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    self.workdir = workdir
    self._tb = None
    self._jsonl = None

  def _open(self) -> None:
    if self._jsonl is None:
      os.makedirs(self.workdir, exist_ok=True)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._jsonl = open(os.path.join(self.workdir, "metrics.jsonl"), "a", encoding="utf-8")
      self._tb = SummaryWriter(logdir=self.workdir, flush_secs=30)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """Writes one row: ``{"step": step, **scalars}``."""
    if not self.active:
      return
    self._open()
    row = {"step": int(step)}
    for k, v in scalars.items():
      v = float(v)
      row[k] = v if math.isfinite(v) else str(v)
      self._tb.add_scalar(k, v, int(step))
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()

  def flush(self) -> None:
    if self.active and self._jsonl is not None:
      self._tb.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self.active and self._jsonl is not None:
      self._tb.close()
      self._jsonl.close()
    self.active = False


class Progress:
  """Steps/s and ETA between successive reports (the ETA is from the rate of the work done).

  Args:
    start_step, total_steps: where the work starts and ends.
    label: what a line calls the work, e.g. "IFS fit step".
  """

  def __init__(self, start_step: int, total_steps: int, label: str = "step"):
    self.total, self.label = total_steps, label
    self.restart(start_step)

  def restart(self, step: int) -> None:
    """Measures the next rate from ``step`` and now (e.g. after a first step that compiled)."""
    self._last_step = step
    self._last_time = time.perf_counter()

  def report(self, step: int, scalars: Mapping[str, float]) -> float:
    """Logs ``step N/T  X steps/s  ETA h:mm:ss  key=value ...`` and returns steps/s."""
    now = time.perf_counter()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "?"
    shown = "  ".join(f"{k}={float(v):.4g}" for k, v in sorted(scalars.items()))
    if jax.process_index() == 0:
      logging.info("%s %d/%d  %.2f steps/s  ETA %s  %s", self.label, step, self.total, rate, eta_s,
                   shown)
    return rate


class FirstCall:
  """Calls a jitted function, naming the compilation its first call waits for:
  ``compiling WHAT...``, then ``WHAT compiled and run once in N s`` (process 0 logs). The first
  call is waited for, so that the time is the compilation's; later calls stay asynchronous.

  Args:
    what: the program, e.g. "the train step".
  """

  def __init__(self, what: str):
    self.what, self.done = what, False

  def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
    if self.done:
      return fn(*args)
    if jax.process_index() == 0:
      logging.info("compiling %s...", self.what)
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    self.done = True
    if jax.process_index() == 0:
      logging.info("%s compiled and run once in %.1f s", self.what, time.perf_counter() - start)
    return out
