"""``--mode plan``: a config compiled from shapes only, its memory and FLOPs, nothing allocated."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from collage.train import loop
from collage.train.config import training_defaults
from collage.train.errors import ConfigError
from collage.train.plan import GB, matmul_flops, plan
from collage.train.task import Task
from tests.train import helpers


class MLPTask(Task):
  """A plain MLP regression, sized by the config, for planning: x [B, width] -> [B, width]."""

  def __init__(self, config):
    super().__init__(config)
    self.width, self.depth = int(config.width), int(config.depth)

  def batch_spec(self, batch_size):
    return {"x": jax.ShapeDtypeStruct((batch_size, self.width), jnp.float32)}

  def init_params(self, rng):
    keys = jax.random.split(rng, self.depth)
    return [jax.random.normal(k, (self.width, self.width)) / math.sqrt(self.width)
            for k in keys]

  def loss_fn(self, params, batch, rng):
    h = batch["x"]
    for w in params:
      h = jnp.tanh(h @ w)
    loss = jnp.mean((h - batch["x"]) ** 2)
    return loss, {"mse": loss}


def _config(width=64, depth=3, batch=8, devices=1, memory_gb=32.0):
  c = training_defaults()
  c.task = "mlp"
  c.batch_size = batch
  c.width = width
  c.depth = depth
  c.plan.devices = devices
  c.plan.device_memory_gb = memory_gb
  c.optimizer.name = "adam"
  return c


def test_matmul_flops_counts_dots_convolutions_and_each_scan_iteration():
  def f(a, b, x, k):
    y = a @ b                                                      # 2 * 8 * 16 * 32
    z = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    def body(c, _):
      return c @ b.T @ b, None                                     # 5 x (2*8*32*16 + 2*8*16*32)
    c, _ = jax.lax.scan(body, y, None, length=5)
    return c.sum() + z.sum()

  args = (jnp.ones((8, 16)), jnp.ones((16, 32)), jnp.ones((2, 6, 6, 3)), jnp.ones((3, 3, 3, 4)))
  flops, whiles = matmul_flops(jax.make_jaxpr(f)(*args))
  conv = 2 * (2 * 6 * 6 * 4) * (3 * 3 * 3)
  assert flops == 2 * 8 * 16 * 32 + conv + 5 * 2 * (2 * 8 * 32 * 16)
  assert whiles == 0
  _, whiles = matmul_flops(jax.make_jaxpr(
      lambda a: jax.lax.while_loop(lambda c: c.sum() < 1e3, lambda c: c @ c, a))(jnp.ones((4, 4))))
  assert whiles == 1


def test_plan_counts_the_built_models_parameters_and_its_memory_grows_with_the_batch():
  width, depth, batches = 64, 4, (1024, 2048, 4096)
  results = {b: plan(MLPTask(_config(width, depth, b)), _config(width, depth, b))
             for b in batches}
  built = MLPTask(_config(width, depth)).init_params(jax.random.PRNGKey(0))
  for r in results.values():
    assert r["networks"]["model"]["parameters"] == sum(p.size for p in built) == depth * width ** 2
    assert r["state_bytes"]["parameters"] == 4 * depth * width ** 2
    assert r["state_bytes"]["optimizer"] >= 2 * r["state_bytes"]["parameters"]  # Adam's moments
    assert r["fits"]
  arg = [results[b]["train"]["argument_bytes"] for b in batches]
  temp = [results[b]["train"]["temp_bytes"] for b in batches]
  flops = [results[b]["train"]["matmul_flops"] for b in batches]
  row = width * 4  # one activation of one example, float32
  # The arguments are the state plus the batch: they grow by the batch's bytes only.
  assert [arg[1] - arg[0], arg[2] - arg[1]] == [1024 * row, 2048 * row]
  # The backward pass keeps the input and each layer's output per example, so the temporaries
  # grow by (depth + 1) activations a row (within 10 %: XLA may fuse or keep a little more).
  for grown, rows in ((temp[1] - temp[0], 1024), (temp[2] - temp[1], 2048)):
    assert 0.9 * (depth + 1) * row * rows <= grown <= 1.1 * (depth + 1) * row * rows
  # 2 * B * W * W a matmul: each layer's forward and weight gradient, and the input gradient
  # of every layer but the first (the data needs none).
  assert flops == [(3 * depth - 1) * 2 * b * width * width for b in batches]


def test_plan_splits_the_batch_over_the_devices(eight_devices):
  del eight_devices
  one = plan(MLPTask(_config(batch=4096)), _config(batch=4096))
  four = plan(MLPTask(_config(batch=4096, devices=4)), _config(batch=4096, devices=4))
  assert four["devices"] == 4 and four["train"]["batch_per_device"] == 1024
  assert four["train"]["matmul_flops_per_device"] == one["train"]["matmul_flops"] / 4
  assert four["train"]["temp_bytes"] < 0.5 * one["train"]["temp_bytes"]  # activations split


def test_plan_of_a_model_whose_parameters_alone_exceed_this_machine_allocates_nothing():
  # 3 layers of 60,000^2: 10.8 billion parameters, 43 GB of float32, 130 GB with Adam.
  c = _config(width=60_000, depth=3, batch=8, memory_gb=80.0)
  result = plan(MLPTask(c), c)
  assert result["networks"]["model"]["parameters"] == 3 * 60_000 ** 2
  assert result["train"]["peak_bytes"] > 3 * result["state_bytes"]["parameters"] > 120 * GB
  assert not result["fits"] and result["train"]["margin_gb"] < -50


def test_plan_refuses_a_batch_the_devices_do_not_split_and_an_unknown_target(eight_devices):
  del eight_devices
  c = _config(batch=6, devices=4)
  with pytest.raises(ConfigError, match="not divisible by the number of devices"):
    plan(MLPTask(c), c)
  c = _config()
  c.plan.target = "gpu:h100"
  with pytest.raises(ConfigError, match="tpu:v5e-8"):
    plan(MLPTask(c), c)


def test_plan_through_the_entrypoint_asks_for_fake_devices_and_writes_only_plan_json(tmp_path):
  workdir = tmp_path / "run"
  done = helpers.run_main(str(workdir), "--mode", "plan", "--config.plan.devices=4",
                          "--config.batch_size=8", devices=1)
  assert done.returncode == 0, done.stderr[-3000:]
  assert sorted(os.listdir(workdir)) == ["plan.json"]
  with open(workdir / "plan.json") as f:
    result = json.load(f)
  assert result["devices"] == 4 and result["train"]["batch_per_device"] == 2
  assert result["cpu_scheduler"] == "memory-minimizing"  # as GPU and TPU compilers schedule
  assert result["networks"]["model"]["parameters"] == 5  # w [4, 1] and b [1]
  assert "peak per device" in done.stdout and "FITS 32 GB" in done.stdout


def test_the_loop_dispatches_plan_without_opening_data_or_checkpoints(tmp_path):
  c = helpers.config()
  c.plan.devices = 1

  class NoData(Task):
    def batch_spec(self, batch_size):
      return {"x": jax.ShapeDtypeStruct((batch_size, 3), jnp.float32)}

    def dataset(self, *a, **k):
      raise AssertionError("plan must not open the data")

    def init_params(self, rng):
      return {"w": jnp.zeros((3,))}

    def loss_fn(self, params, batch, rng):
      return jnp.mean(batch["x"] @ params["w"]), {}

  result = loop.run(NoData(c), c, str(tmp_path), "plan")
  assert result["train"]["peak_bytes"] > 0
  assert os.listdir(tmp_path) == ["plan.json"]
  np.testing.assert_equal(result["networks"]["model"]["parameters"], 3)


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                    reason="libtpu is not installed (pip install -e '.[tpu]')")
def test_plan_for_a_tpu_slice_compiles_with_libtpus_compiler(tmp_path):
  done = helpers.run_main(str(tmp_path / "run"), "--mode", "plan", "--config.batch_size=8",
                          "--config.plan.target=tpu:v5e-8", devices=1)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(tmp_path / "run" / "plan.json") as f:
    result = json.load(f)
  assert result["devices"] == 8 and "TPU v5" in result["device"]
  assert result["train"]["batch_per_device"] == 1 and result["train"]["peak_bytes"] > 0
