"""VDVAE on the runtime (the tiny config, 8 fake devices): update skipping, exact resumption
after SIGKILL, deterministic ``--mode sample``, clear config errors."""

import os
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.train import loop, optimizer, state as state_lib, step
from experiments.configs import vdvae as vdvae_config
from experiments.tasks import vdvae as vdvae_task
from tests.train import helpers

CONFIG_FILE = os.path.join("experiments", "configs", "vdvae.py") + ":collage_tiny"
STEPS = 20


def _config(**overrides):
  c = vdvae_config.get_config("collage_tiny")
  c.total_steps = STEPS
  c.checkpoint_every = 4
  c.eval_batches = 1
  for k, v in overrides.items():
    node, parts = c, k.split("__")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = v
  return c


def _kill_after_checkpoint(workdir, step_number, *args):
  """Starts experiments.main and SIGKILLs it once checkpoint ``step_number`` exists (like
  tests/train/helpers.kill_after_checkpoint, with room for a slow, shared CPU)."""
  proc = subprocess.Popen(helpers.main_cmd(workdir, *args, config_file=CONFIG_FILE),
                          cwd=helpers.REPO, env=helpers.env(8), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpt = workdir / "checkpoints"
  deadline = time.monotonic() + 900
  while (not (ckpt / str(step_number)).exists() and proc.poll() is None
         and time.monotonic() < deadline):
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "run finished before it could be killed"
  assert (ckpt / str(step_number)).exists(), "killed before the first checkpoint"
  assert not (ckpt / str(STEPS)).exists(), "run finished before the kill"


def test_every_variant_is_a_valid_architecture_and_a_bad_one_is_named():
  for arg in vdvae_config.VARIANTS:
    c = vdvae_config.get_config(arg)
    cfg = vdvae_task.model_config(c)
    assert (cfg.head == "collage") == arg.startswith("collage_")
  assert vdvae_config.get_config().model.head == "pixels"  # mnist_quick is the default
  with pytest.raises(ValueError, match="valid: mnist_quick, mnist, collage_mnist_quick"):
    vdvae_config.get_config("mnist_huge")
  c = vdvae_config.get_config("tiny")
  c.model.dec_blocks = "1x1,7q1,28m7"
  with pytest.raises(ValueError, match="bad token '7q1'"):
    vdvae_task.VDVAETask(c)


def test_a_huge_gradient_changes_neither_params_optimizer_state_nor_ema():
  cfg = vdvae_config.get_config("tiny")  # the pixel head: the cheapest model to compile
  cfg.optimizer.ema_decay = 0.9
  task = vdvae_task.VDVAETask(cfg)
  tx = optimizer.make_optimizer(cfg.optimizer, int(cfg.total_steps))
  update = step.NetworkUpdate({"model": tx}, {"model": 0.9})
  params = {"model": task.init_params(jax.random.PRNGKey(0))}
  st = state_lib.create_state(params, {}, {"model": tx}, jax.random.PRNGKey(1), ("model",))
  batch = {"image": jnp.round(jax.random.uniform(jax.random.PRNGKey(2), (4, 28, 28, 1)) * 255)
                    / 255}

  @jax.jit
  def train_step(st, gain):  # the task's own step, with its gradient multiplied by gain
    scaled = lambda s, name, g: update(s, name, jax.tree.map(lambda x: gain * x, g))
    return task.train_step(st, batch, jax.random.PRNGKey(3), scaled)

  st, m = train_step(st, 1.0)  # an applied step: non-trivial moments and EMA
  assert float(m["model/skipped"]) == 0.0
  new, m = train_step(st, 1e9)
  assert float(m["model/grad_norm"]) > cfg.optimizer.skip_threshold
  assert float(m["model/skipped"]) == 1.0 and int(new.opt_state["model"].skipped_large) == 1
  for field in ("params", "ema_params"):
    jax.tree.map(np.testing.assert_array_equal, getattr(new, field), getattr(st, field))
  jax.tree.map(np.testing.assert_array_equal, new.opt_state["model"].inner,
               st.opt_state["model"].inner)


def test_sigkill_then_rerun_is_exact_and_sampling_is_deterministic(tmp_path, eight_devices):
  """One reference run serves both checks (each run compiles the model: minutes on a busy CPU).

  1. Killed after its first checkpoint and rerun, a run ends bit for bit where the uninterrupted
     one ends: parameters, EMA and the optimizer state.
  2. ``--mode sample`` gives the same samples for the same seed, on 8 devices or 2.
  """
  cfg = _config(sample__scale=2, sample__temperature=0.8)
  reference = tmp_path / "reference"
  want = helpers.flat_state(loop.run(vdvae_task.VDVAETask(cfg), cfg, str(reference), "train"))

  workdir = tmp_path / "killed"
  args = [f"--config.total_steps={STEPS}", "--config.checkpoint_every=4",
          "--config.eval_batches=1"]
  _kill_after_checkpoint(workdir, 4, *args)
  done = helpers.run_main(workdir, *args, config_file=CONFIG_FILE, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "resumed from" in done.stderr
  resumed = helpers.flat_state(loop.run(vdvae_task.VDVAETask(cfg), cfg, str(workdir), "eval"))
  assert resumed.keys() == want.keys()
  for k in want:
    np.testing.assert_array_equal(resumed[k], want[k], err_msg=k)

  loop.run(vdvae_task.VDVAETask(cfg), cfg, str(reference), "sample", devices=eight_devices)
  out = reference / "samples" / str(STEPS)
  with np.load(out / "samples.npz") as f:
    first = f["image"]
  assert first.shape == (4, 56, 56, 1) and (out / "grid.png").exists()
  os.rename(out, reference / "samples_first")
  loop.run(vdvae_task.VDVAETask(cfg), cfg, str(reference), "sample", devices=eight_devices[:2])
  with np.load(out / "samples.npz") as f:
    np.testing.assert_array_equal(f["image"], first)
  assert len({first[i].tobytes() for i in range(4)}) == 4  # one key per sample


def test_scale_for_the_pixel_head_is_a_clear_error():
  c = vdvae_config.get_config("tiny")
  with pytest.raises(ValueError, match="only Collage-VDVAE"):
    vdvae_task.sample_options({"scale": 2, "temperature": 1.0}, vdvae_task.model_config(c))
  with pytest.raises(ValueError, match="temperature must be >= 0"):
    vdvae_task.sample_options({"temperature": -1.0}, vdvae_task.model_config(c))
