"""Shared helpers for the runtime tests: configs, in-process runs, subprocess launches."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from collage.train import mesh
from tests.train import linreg_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_FILE = os.path.join("tests", "train", "linreg_config.py")


def config(base=linreg_config, **overrides):
  """``base.get_config()`` (the tiny linreg config by default) with overrides of any field,
  nested ones with ``__`` for dots (``optimizer__learning_rate=0.1``)."""
  c = base.get_config()
  for k, v in overrides.items():
    node, parts = c, k.split("__")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = v
  return c


def flat_state(state) -> dict[str, np.ndarray]:
  """A TrainState's params, EMA, model state and optimizer state as host arrays by path, for
  bit-exact comparisons of two runs."""
  out = {}
  for group in ("params", "ema_params", "model_state", "opt_state"):
    leaves = jax.tree_util.tree_flatten_with_path(mesh.to_host(getattr(state, group)))[0]
    out.update({group + jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves})
  return out


def env(devices: int) -> dict[str, str]:
  """Environment for a subprocess with ``devices`` fake CPU devices."""
  e = dict(os.environ)
  e["JAX_PLATFORMS"] = "cpu"
  e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  e["TF_CPP_MIN_LOG_LEVEL"] = "3"
  e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
  return e


def main_cmd(workdir: str, *extra: str, config_file: str = CONFIG_FILE) -> list[str]:
  return [sys.executable, "-m", "experiments.main", "--config", config_file,
          "--workdir", str(workdir), *extra]


def run_main(workdir: str, *extra: str, devices: int = 8, timeout: int = 240,
             config_file: str = CONFIG_FILE):
  """Runs experiments.main to completion; returns the CompletedProcess."""
  return subprocess.run(main_cmd(workdir, *extra, config_file=config_file), cwd=REPO,
                        env=env(devices), capture_output=True, text=True, timeout=timeout)


def kill_after_checkpoint(workdir, step: int, *extra: str, config_file: str = CONFIG_FILE,
                          final_step: int | None = None) -> None:
  """Starts experiments.main, SIGKILLs it as soon as checkpoint ``step`` exists.

  Asserts that it was killed before it could finish (no checkpoint ``final_step``).
  """
  proc = subprocess.Popen(main_cmd(workdir, *extra, config_file=config_file), cwd=REPO,
                          env=env(8), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt = os.path.join(str(workdir), "checkpoints")
  deadline = time.monotonic() + 180
  while (not os.path.exists(os.path.join(ckpt, str(step))) and proc.poll() is None
         and time.monotonic() < deadline):
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "run finished before it could be killed"
  if final_step is not None:
    assert not os.path.exists(os.path.join(ckpt, str(final_step))), "run finished before the kill"


def final_params(workdir: str, process: int = 0) -> dict[str, np.ndarray]:
  with np.load(os.path.join(workdir, f"final_params_p{process}.npz")) as f:
    return {k: f[k] for k in f.files}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]
