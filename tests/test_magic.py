"""MAGIC on the runtime: D then G, frozen networks bit-identical, 8 devices = 1, SIGKILL + resume
exact, sampling with another K and a tiled poster (a tiny guided config, variable set sizes);
the train batch's shapes; bfloat16 training against float32."""

import json
import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from collage.train import loop, mesh
from collage.train import plan as plan_lib
from experiments.configs import magic as magic_config
from experiments.tasks import magic as magic_task
from experiments.tasks.magic import MagicTask
from tests.train import helpers

CONFIG_FILE = os.path.join("experiments", "configs", "magic.py") + ":guided_quick"
TINY = {  # a few milliseconds per step; K varies per set (2..4) through the set mask
    "total_steps": 4, "batch_size": 8, "log_every": 3, "eval_every": 0, "checkpoint_every": 0,
    "eval_batches": 1, "artifact_poster": 0, "data.crop": 16, "data.k_min": 2,
    "data.k_max": 4, "data.eval_examples": 8, "data.content_size": 128,
    "loss.content_factor": 4, "model.width": 8, "model.depth": 2, "model.heads": 2,
    "model.refine_width": 4, "model.refine_depth": 2, "model.disc_width": 8,
    "model.disc_depth": 2, "model.disc_max_width": 8, "evals.grid.num": 2,
    "sample.num": 3, "sample.k": 5, "sample.pool": 8, "sample.height": 40, "sample.width": 24,
    "sample.tile": 16, "sample.window": 16,
}


def _config(**overrides):
  c = magic_config.get_config("guided_quick")
  for key, value in {**TINY, **overrides}.items():
    node, parts = c, key.split(".")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = value
  return c


def _train(workdir, devices, **overrides):
  cfg = _config(**overrides)
  return loop.run(MagicTask(cfg), cfg, str(workdir), "train", devices=devices)


def test_eight_devices_match_one_device(tmp_path, eight_devices):
  # Plain SGD: Adam divides by the root of tiny second moments, which magnifies the last-bit
  # differences of summing the batch in another order into learning-rate-sized ones.
  sgd = {"optimizers.generator.name": "sgd", "optimizers.discriminator.name": "sgd"}
  s8 = helpers.flat_state(_train(tmp_path / "d8", eight_devices, **sgd))
  s1 = helpers.flat_state(_train(tmp_path / "d1", eight_devices[:1], **sgd))
  assert s8.keys() == s1.keys() and any("ema_params['generator']" in k for k in s8)
  # The same global batches; only the order of sums differs. Normalisations over few values
  # (LayerNorm over 8 set features, instance norm of near-flat crops) magnify last-bit
  # differences to ~1e-3 of a gradient, and GAN steps compound them: a sharding bug is O(1) off.
  for k in s8:
    np.testing.assert_allclose(s8[k], s1[k], rtol=1e-3, atol=1e-4, err_msg=k)
  rows = [json.loads(l) for l in (tmp_path / "d8" / "metrics.jsonl").read_text().splitlines()]
  evals = next(r for r in rows if "eval/content_psnr" in r)
  assert {"eval/dominant", "eval/used", "eval/tv", "eval/d_real"} <= set(evals)
  assert 1 <= evals["eval/used"] <= 4


def test_discriminator_then_generator_and_the_frozen_network_does_not_move(eight_devices):
  cfg = _config()
  task = MagicTask(cfg)
  rt = loop._Runtime(task, cfg, "/tmp/unused_magic_runtime", eight_devices[:1])  # pylint: disable=protected-access
  try:
    state = rt.init_state()
    batch = mesh.global_batch(next(rt.dataset("train")), rt.mesh)
    names = []  # filled while tracing: the order of the sub-steps

    def step(st, b):
      seen = []

      def recording_update(before, name, grads):
        after, metrics = rt.update(before, name, grads)
        names.append(name)
        seen.append((before, after))
        return after, metrics

      st, _ = task.train_step(st, b, jax.random.PRNGKey(0), recording_update)
      return st, seen

    step = jax.jit(step)
    for _ in range(2):  # twice, so Adam's moments and the EMA are non-trivial
      state, seen = step(state, batch)
      assert names == ["discriminator", "generator"]
      for name, (before, after) in zip(names, seen):
        other = "generator" if name == "discriminator" else "discriminator"
        for field in ("params", "opt_state", "ema_params"):
          a, b = getattr(before, field), getattr(after, field)
          if other in a:
            jax.tree.map(np.testing.assert_array_equal, a[other], b[other])
        moved = [np.any(np.asarray(x) != np.asarray(y)) for x, y in
                 zip(jax.tree.leaves(before.params[name]), jax.tree.leaves(after.params[name]))]
        assert any(moved), f"{name} did not move on its own sub-step"
  finally:
    rt.close()


def test_sigkill_then_rerun_is_exact_and_samples_use_another_k(tmp_path, eight_devices, caplog):
  steps = ["--config." + f"{k}={v}" for k, v in TINY.items() if k != "total_steps"]
  args = [*steps, "--config.total_steps=60", "--config.checkpoint_every=20"]
  reference = helpers.flat_state(_train(tmp_path / "reference", eight_devices, total_steps=60,
                           checkpoint_every=20))
  workdir = tmp_path / "killed"
  helpers.kill_after_checkpoint(workdir, 20, *args, config_file=CONFIG_FILE, final_step=60)
  done = helpers.run_main(workdir, *args, config_file=CONFIG_FILE, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "resumed from" in done.stderr
  # Sampling restores the final state: compare it, then check the samples and the poster.
  cfg = _config(total_steps=60, checkpoint_every=20, **{"sample.k": 6})
  caplog.set_level(logging.INFO)
  resumed = helpers.flat_state(magic_task.run(cfg, str(workdir), "sample"))
  assert "poster 40x24 tile 6/6" in caplog.text  # the poster shows tiles done / total, ETA
  assert resumed.keys() == reference.keys()
  for k in reference:  # bit for bit: parameters, EMA and both optimizer states
    np.testing.assert_array_equal(resumed[k], reference[k], err_msg=k)
  out = workdir / "samples" / "60"
  with np.load(out / "samples.npz") as f:
    weights = f["weights"]
    assert f["image"].shape == (3, 16, 16, 3) and weights.shape == (3, 6, 16, 16)  # K = 6 > 4
  np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
  for name in ("poster.png", "poster_collage.png", "poster_weights.png", "poster_content.png"):
    assert (out / name).exists(), name
  report = json.loads((out / "poster.json").read_text())
  assert (report["height"], report["width"], report["k"]) == (40, 24, 6)
  assert report["tiles"] == 6 and 1 <= report["used"] <= 6


@pytest.mark.parametrize("variant", ["guided_quick", "unguided_quick"])
def test_batch_spec_is_the_shape_of_a_real_batch(variant):
  cfg = magic_config.get_config(variant)
  for key in ("data.crop", "data.content_size", "loss.content_factor"):
    node, name = key.split(".")
    cfg[node][name] = TINY[key]
  task = MagicTask(cfg)
  batch = next(iter(task.dataset("train", seed=0, process_index=0, process_count=1,
                                 batch_size=3)))
  spec = task.batch_spec(3)
  assert sorted(spec) == sorted(batch) and ("content" in spec) == variant.startswith("guided")
  for k, v in batch.items():
    assert (spec[k].shape, spec[k].dtype) == (v.shape, v.dtype), k


def test_bfloat16_trains_like_float32_keeps_float32_params_and_samples(tmp_path):
  """The tiny guided config, 8 steps through the runtime in each compute dtype: the bfloat16
  run's losses are finite, its content loss falls, and its generator loss stays within 5% of the
  float32 run's step by step (the discriminator's within 2%); the checkpoint holds float32
  parameters and EMA; both sample (A a distribution over K, images in [0, 1])."""
  steps, runs = 8, {}
  for dtype in ("float32", "bfloat16"):
    cfg = _config(total_steps=steps, log_every=1, checkpoint_every=steps,
                  **{"model.dtype": dtype})
    task = MagicTask(cfg)
    state = loop.run(task, cfg, str(tmp_path / dtype), "train", devices=jax.devices()[:1])
    rows = [json.loads(line) for line in
            (tmp_path / dtype / "metrics.jsonl").read_text().splitlines()]
    runs[dtype] = {k: np.array([r[k] for r in rows if k in r])
                   for k in ("g_loss", "d_loss", "content_mse")}
    stored = ocp.StandardCheckpointer().metadata(
        tmp_path / dtype / "checkpoints" / str(steps) / "state")
    stored = getattr(stored, "item_metadata", stored)
    for group in ("params", "ema_params", "opt_state"):
      dtypes = {m.dtype for m in jax.tree.leaves(stored[group]) if hasattr(m, "dtype")}
      assert np.dtype("float32") in dtypes and np.dtype("bfloat16") not in dtypes, (dtype, group)
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    options = {"k": 3, "pool": 8}
    draw = jax.jit(lambda p, k, task=task: task.sample(p, {}, k, options))
    out = jax.device_get(draw(mesh.to_host(state.eval_params), keys))
    assert out["image"].shape == (2, 16, 16, 3) and out["image"].dtype == np.float32, dtype
    assert np.all(np.isfinite(out["image"])) and 0 <= out["image"].min() <= out["image"].max() <= 1
    np.testing.assert_allclose(out["weights"].sum(axis=1), 1.0, atol=1e-5)
  f32, bf16 = runs["float32"], runs["bfloat16"]
  for k in bf16:
    assert len(bf16[k]) == steps and np.all(np.isfinite(bf16[k])), k
  assert bf16["content_mse"][-2:].mean() < 0.9 * bf16["content_mse"][0], bf16["content_mse"]
  np.testing.assert_allclose(bf16["g_loss"], f32["g_loss"], rtol=0.05)
  np.testing.assert_allclose(bf16["d_loss"], f32["d_loss"], rtol=0.02)


def test_microbatches_give_the_update_of_the_whole_batch(tmp_path, eight_devices):
  """Two generator slices of 4 sets (microbatches=2) against the whole batch of 8, two steps of
  plain SGD on 2 devices: the same parameters up to the order of the sums."""
  sgd = {"optimizers.generator.name": "sgd", "optimizers.discriminator.name": "sgd",
         "total_steps": 2}
  whole = helpers.flat_state(_train(tmp_path / "whole", eight_devices[:2], **sgd))
  sliced = helpers.flat_state(_train(tmp_path / "sliced", eight_devices[:2], microbatches=2,
                                     **sgd))
  assert whole.keys() == sliced.keys()
  for k in whole:
    np.testing.assert_allclose(sliced[k], whole[k], rtol=1e-3, atol=1e-4, err_msg=k)
  with pytest.raises(ValueError, match="does not divide"):
    _train(tmp_path / "bad", eight_devices[:1], microbatches=3, **sgd)


def test_chunked_set_layers_keep_the_batch_split_over_the_devices(eight_devices):
  """Per device, 4 devices with 2 sets each plan to about the memory of 1 device with 2: the
  set-layer chunks keep the (data-parallel) batch axis whole, so no device runs the others'
  chunks. Chunks of the flattened batch x pixels made the partitioner replicate the loop:
  MAGIC guided at 3 devices planned to 40 GB per device against 24 GB on one."""
  del eight_devices

  def temp(batch, devices):
    cfg = _config(**{"batch_size": batch, "data.crop": 32, "data.k_min": 6, "data.k_max": 6,
                     "model.set_chunk": 64, "model.remat": "blocks"})
    cfg.plan.devices, cfg.plan.sample = devices, False
    return plan_lib.plan(MagicTask(cfg), cfg)["train"]["temp_bytes"]

  one, four = temp(2, 1), temp(8, 4)
  assert four < 1.5 * one, (four, one)
