"""Two processes joined by jax.distributed (localhost coordinator, gloo CPU collectives)."""

import subprocess

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
