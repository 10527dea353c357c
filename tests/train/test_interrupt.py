"""SIGTERM / SIGINT: checkpoint the step, exit 143 / 130 cleanly, resume exactly; a save that
died is never the latest checkpoint."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from collage.train import loop, mesh
from collage.train.checkpoint import Checkpointer
from tests.train import helpers
from tests.train.linreg_task import LinRegTask

ARGS = ["--config.total_steps=60", "--config.slow_data_s=0.05", "--config.checkpoint_every=10"]


def _reference(tmp_path):
  cfg = helpers.config(total_steps=60, checkpoint_every=10)
  state = loop.run(LinRegTask(cfg), cfg, str(tmp_path / "reference"), "train")
  return mesh.to_host(state.params["model"])


def _start(workdir):
  return subprocess.Popen(helpers.main_cmd(workdir, *ARGS), cwd=helpers.REPO, env=helpers.env(8),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=180):
  deadline = time.monotonic() + timeout
  while not os.path.exists(path) and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.02)
  assert proc.poll() is None, "the run ended before the signal"


@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_checkpoints_the_step_and_a_rerun_resumes_exactly(tmp_path, signum, status):
  reference = _reference(tmp_path)
  workdir = tmp_path / "run"
  proc = _start(workdir)
  _wait_for(workdir / "checkpoints" / "10", proc)
  time.sleep(0.3)  # a few more steps, so the signal lands between periodic checkpoints
  proc.send_signal(signum)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == status, err[-3000:]
  assert "Traceback" not in err
  found = re.search(r"interrupted by SIG(TERM|INT) at step (\d+); checkpoint saved; rerun the "
                    r"same command to resume", err)
  assert found, err[-3000:]
  step = int(found.group(2))
  assert 10 < step < 60
  assert Checkpointer(str(workdir / "checkpoints"), keep=3).latest_step() == step

  done = helpers.run_main(workdir, *ARGS)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"at step {step} " in done.stderr
  resumed = helpers.final_params(workdir)
  for k in reference:
    np.testing.assert_array_equal(resumed[k], reference[k], err_msg=k)


def test_second_signal_exits_at_once_and_the_previous_checkpoint_stands(tmp_path):
  reference = _reference(tmp_path)
  workdir = tmp_path / "run"
  proc = _start(workdir)
  _wait_for(workdir / "checkpoints" / "10", proc)
  proc.send_signal(signal.SIGTERM)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 143, err[-3000:]
  assert "Traceback" not in err
  assert "second SIGTERM" in err or "interrupted by SIGTERM" in err, err[-3000:]
  done = helpers.run_main(workdir, *ARGS)
  assert done.returncode == 0, done.stderr[-3000:]
  resumed = helpers.final_params(workdir)
  for k in reference:
    np.testing.assert_array_equal(resumed[k], reference[k], err_msg=k)


_DIE_DURING_SAVE = r"""
import os, sys
import jax, jax.numpy as jnp
from collage.train.checkpoint import Checkpointer
c = Checkpointer(sys.argv[1], keep=5)
c.save(10, {"w": jnp.ones((256, 256))}, {"next_index": 10}, force=True)
c.wait()
c.save(20, {"w": jnp.full((2048, 2048), 2.0)}, {"next_index": 20}, force=True)
os._exit(9)   # the process dies while step 20 is written in the background
"""


def test_a_save_that_died_is_never_the_latest(tmp_path):
  directory = tmp_path / "checkpoints"
  done = subprocess.run([sys.executable, "-c", _DIE_DURING_SAVE, str(directory)],
                        cwd=helpers.REPO, env=helpers.env(1), capture_output=True, text=True,
                        timeout=120)
  assert done.returncode == 9, done.stderr[-2000:]
  leftovers = sorted(os.listdir(directory))
  assert "20" not in leftovers, f"step 20 was committed before the process died: {leftovers}"
  ckpt = Checkpointer(str(directory), keep=5)
  try:
    assert ckpt.latest_step() == 10
    import jax
    state, data = ckpt.restore(10, {"w": jax.ShapeDtypeStruct((256, 256), np.float32)})
    np.testing.assert_array_equal(np.asarray(state["w"]), 1.0)
    assert data == {"next_index": 10}
  finally:
    ckpt.close()
  assert sorted(os.listdir(directory)) == ["10"], "the unfinished save was not cleaned up"
