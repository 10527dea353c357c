"""Shared helpers for the runtime tests: configs, in-process runs, subprocess launches."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np

from tests.train import linreg_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_FILE = os.path.join("tests", "train", "linreg_config.py")


def config(**overrides):
  """The tiny linreg config with top-level / ``optimizer.*`` overrides (dots as ``__``)."""
  c = linreg_config.get_config()
  for k, v in overrides.items():
    node, parts = c, k.split("__")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = v
  return c


def env(devices: int) -> dict[str, str]:
  """Environment for a subprocess with ``devices`` fake CPU devices."""
  e = dict(os.environ)
  e["JAX_PLATFORMS"] = "cpu"
  e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  e["TF_CPP_MIN_LOG_LEVEL"] = "3"
  e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
  return e


def main_cmd(workdir: str, *extra: str) -> list[str]:
  return [sys.executable, "-m", "experiments.main", "--config", CONFIG_FILE,
          "--workdir", str(workdir), *extra]


def run_main(workdir: str, *extra: str, devices: int = 8, timeout: int = 240):
  """Runs experiments.main to completion; returns the CompletedProcess."""
  return subprocess.run(main_cmd(workdir, *extra), cwd=REPO, env=env(devices),
                        capture_output=True, text=True, timeout=timeout)


def final_params(workdir: str, process: int = 0) -> dict[str, np.ndarray]:
  with np.load(os.path.join(workdir, f"final_params_p{process}.npz")) as f:
    return {k: f[k] for k in f.files}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]
