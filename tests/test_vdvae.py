"""VDVAE on the runtime (the tiny config, 8 fake devices): update skipping, exact resumption
after SIGKILL, deterministic ``--mode sample``, clear config errors, the train batch's shapes,
bfloat16 training against float32."""

import json
import math
import os
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from collage.nn import vdvae as V
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


def test_batch_spec_is_the_shape_of_a_real_batch():
  task = vdvae_task.VDVAETask(vdvae_config.get_config("mnist_quick"))
  batch = next(iter(task.dataset("train", seed=0, process_index=0, process_count=1,
                                 batch_size=4)))
  spec = task.batch_spec(4)
  assert sorted(spec) == sorted(batch)
  for k, v in batch.items():
    assert (spec[k].shape, spec[k].dtype) == (v.shape, v.dtype), k


def _losses(workdir):
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return np.array([r["loss"] for r in rows if "loss" in r])


def test_bfloat16_trains_like_float32_and_checkpoints_float32_params(tmp_path, eight_devices):
  """The tiny config, 24 steps through the runtime (one device) in each compute dtype: the
  bfloat16 losses are finite, fall (the mean of the last 6 steps 10% below the first 6), and
  stay within 1% of the float32 ones step by step (measured: 0.1%); the checkpoint holds float32
  parameters and EMA. (Sampling in both dtypes, the collage head at scale 2 included:
  tests/nn/test_vdvae.py and the sample test above.)"""
  steps, runs = 24, {}
  for dtype in ("float32", "bfloat16"):
    cfg = vdvae_config.get_config("tiny")
    cfg.total_steps, cfg.log_every, cfg.checkpoint_every = steps, 1, steps
    cfg.optimizer.learning_rate = 3e-3
    cfg.model.dtype = dtype
    loop.run(vdvae_task.VDVAETask(cfg), cfg, str(tmp_path / dtype), "train",
             devices=eight_devices[:1])
    runs[dtype] = _losses(tmp_path / dtype)
    stored = ocp.StandardCheckpointer().metadata(
        tmp_path / dtype / "checkpoints" / str(steps) / "state")
    stored = getattr(stored, "item_metadata", stored)
    for group in ("params", "ema_params"):
      dtypes = {m.dtype for m in jax.tree.leaves(stored[group])}
      assert dtypes == {np.dtype("float32")}, (dtype, group, dtypes)
  f32, bf16 = runs["float32"], runs["bfloat16"]
  assert len(bf16) == steps and np.all(np.isfinite(bf16))
  assert bf16[-6:].mean() < 0.9 * bf16[:6].mean(), bf16
  np.testing.assert_allclose(bf16, f32, rtol=0.01)


def test_an_8x_wide_imagenet64_is_built_from_shapes_without_allocating():
  """~8 billion parameters (32 GB in float32, more than this machine has): the task and the
  abstract initial parameters are shapes only."""
  c = vdvae_config.get_config("imagenet64")
  c.model.width = 8 * c.model.width
  task = vdvae_task.VDVAETask(c)
  shapes = jax.eval_shape(task.init_params, jax.random.PRNGKey(0))
  n = sum(math.prod(s.shape) for s in jax.tree.leaves(shapes))
  assert n == V.param_count(task.model_cfg) and n > 7e9
  assert {s.dtype for s in jax.tree.leaves(shapes)} == {np.dtype("float32")}


def test_the_diagnostic_picture_has_openai_vdvaes_rows(tmp_path):
  """artifacts/diagnostic_STEP.png: eval images, 6 partial-posterior reconstructions and prior
  samples at 3 temperatures, one row each, 8 columns, no gaps; beside the samples grid."""
  cfg = _config(artifact_samples=2)
  task = vdvae_task.VDVAETask(cfg)
  params = jax.tree.map(np.asarray, task.init_params(jax.random.PRNGKey(0)))
  task.write_artifacts(params, {}, 7, str(tmp_path))
  s = task.model_cfg.image_size
  rows = 1 + vdvae_task.DIAGNOSTIC_GROUPS + len(vdvae_task.DIAGNOSTIC_TEMPERATURES)
  zoom = -(-512 // (8 * s))  # enlarged (nearest neighbour) to at least 512 px, then captioned
  with Image.open(tmp_path / "artifacts" / "diagnostic_7.png") as im:
    assert im.size[0] == 8 * s * zoom and im.size[1] > rows * s * zoom
    picture = np.asarray(im)[:rows * s * zoom:zoom, ::zoom]
    caption = np.asarray(im)[rows * s * zoom:]
  assert caption.min() < 64 and caption.max() == 255  # dark text on white
  assert (tmp_path / "artifacts" / "samples_7.png").exists()
  # The first row is the eval images themselves.
  batch = next(iter(task.dataset("eval", seed=int(cfg.seed), process_index=0, process_count=1,
                                 batch_size=8)))
  first = np.concatenate(list(np.asarray(batch["image"])[:8, ..., 0]), axis=1)
  np.testing.assert_array_equal(picture[:s], np.round(first * 255).astype(np.uint8))
  # The blocks that take the posterior: evenly spaced inside (0, blocks), as openai/vdvae picks.
  assert vdvae_task.posterior_groups(6, 6) == [0, 1, 2, 3, 4, 5]
  assert vdvae_task.posterior_groups(12, 3) == [3, 6, 9]
  assert vdvae_task.posterior_groups(7, 6) == [1, 2, 3, 4, 5, 6]  # floats gave 4 twice


def test_a_partial_posterior_of_no_blocks_is_a_prior_sample():
  cfg = vdvae_task.model_config(_config())
  model = V.VDVAE(cfg, rngs=V.init_rngs(0))
  keys = jax.random.split(jax.random.PRNGKey(1), 2)
  x = jax.random.uniform(jax.random.PRNGKey(2), (2, cfg.image_size, cfg.image_size,
                                                  cfg.channels))
  np.testing.assert_array_equal(model.partial_posterior_features(x, keys, 0, 0.7),
                                model.prior_features(keys, 0.7))
  blocks = len(cfg.decoder_layout)
  full = model.reconstruct(x, keys, blocks)
  assert full.shape == x.shape and np.all((np.asarray(full) >= 0) & (np.asarray(full) <= 1))
  # Rows are independent: image 0's reconstruction does not depend on image 1.
  alone = model.reconstruct(x[:1], keys[:1], blocks)
  np.testing.assert_allclose(alone, full[:1], atol=1e-6)
