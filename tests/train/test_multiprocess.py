"""Two processes joined by jax.distributed (localhost coordinator, gloo CPU collectives)."""

import os
import re
import signal
import subprocess
import time

import numpy as np

from collage.train import loop, mesh
from tests.train import helpers
from tests.train.linreg_task import LinRegTask


def test_two_processes_train_together_and_agree(tmp_path, eight_devices):
  workdir = tmp_path / "mp"
  port = helpers.free_port()
  procs = [
      subprocess.Popen(
          helpers.main_cmd(workdir, "--coordinator_address", f"localhost:{port}",
                           "--num_processes", "2", "--process_id", str(i)),
          cwd=helpers.REPO, env=helpers.env(2), stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outs = []
  for p in procs:
    try:
      outs.append(p.communicate(timeout=240))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "process 1 of 2, 2 local / 4 global devices" in outs[1][1]

  p0, p1 = helpers.final_params(workdir, 0), helpers.final_params(workdir, 1)
  for k in p0:
    np.testing.assert_array_equal(p0[k], p1[k])
  # Each process read its half of every global batch: same result as one process on 4 devices.
  cfg = helpers.config()
  single = loop.run(LinRegTask(cfg), cfg, str(tmp_path / "single"), "train",
                    devices=eight_devices[:4])
  single = mesh.to_host(single.params["model"])
  for k in p0:
    np.testing.assert_allclose(p0[k], single[k], rtol=1e-5, atol=1e-6)
  # Only process 0 wrote logs; both wrote their data position.
  assert (workdir / "metrics.jsonl").exists()
  data = sorted(p.name for p in (workdir / "checkpoints" / "20" / "data").iterdir())
  assert "process_0-of-2.json" in data and "process_1-of-2.json" in data


def test_sigterm_to_one_process_stops_both_at_the_same_checkpointed_step(tmp_path):
  """JAX's preemption service tells every process; they agree on the step to save."""
  workdir = tmp_path / "mp"
  port = helpers.free_port()
  args = ("--coordinator_address", f"localhost:{port}", "--num_processes", "2",
          "--config.total_steps=400", "--config.slow_data_s=0.05", "--config.checkpoint_every=10")
  procs = [subprocess.Popen(helpers.main_cmd(workdir, *args, "--process_id", str(i)),
                            cwd=helpers.REPO, env=helpers.env(2), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  try:
    deadline = time.monotonic() + 180
    while not (workdir / "checkpoints" / "10").exists() and time.monotonic() < deadline:
      assert all(p.poll() is None for p in procs), "a process ended before the signal"
      time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=120) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  steps = set()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 143, err[-3000:]
    found = re.search(r"interrupted by SIGTERM at step (\d+)", err)
    assert found, err[-3000:]
    steps.add(int(found.group(1)))
  assert len(steps) == 1 and 10 < steps.pop() < 400
  data = sorted(os.listdir(workdir / "checkpoints"), key=int)[-1]
  files = sorted(f for f in os.listdir(workdir / "checkpoints" / data / "data")
                 if f.startswith("process_"))
  assert files == ["process_0-of-2.json", "process_1-of-2.json"]
