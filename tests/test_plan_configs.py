"""Every small config in experiments/configs/ plans on 8 fake devices: its train step (and its
sample step, where the task has one) compiles from shapes alone, through the task's own
``run(config, workdir, "plan")``, and the plan's parameter count is the built model's."""

from __future__ import annotations

import json
import os

import jax
import pytest

from collage.train import registry

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments",
                       "configs")

# (config, overrides): each config file's small variants. A global batch that 8 devices do not
# split is raised to 8 (the plan refuses it otherwise, as training does). The sample step is
# planned once per sampler family (it doubles a plan's compile time).
NO_SAMPLE = {"plan.sample": False}
SMALL = [
    ("vdvae.py:tiny", NO_SAMPLE),
    ("vdvae.py:collage_tiny", {}),
    ("vdvae.py:mnist_quick", NO_SAMPLE),
    ("vdvae.py:collage_mnist_quick", NO_SAMPLE),
    ("magic.py:guided_quick", {"batch_size": 8}),
    ("magic.py:unguided_quick", {"batch_size": 8, **NO_SAMPLE}),
    ("dctransformer.py:digits_quick", {}),
    ("compress.py:quick", {}),
    ("compress.py:baseline_quick", {}),
    ("fractalize.py:tiny", {"batch_size": 8}),
    ("fractalize.py:quick", {"batch_size": 8}),
    ("codec_benchmark.py:quick", {}),
]


def _config(spec: str, overrides: dict):
  config = registry.load_config(os.path.join(CONFIGS, spec))
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  if "plan" in config:
    config.plan.devices = 8
  return config


@pytest.mark.slow
@pytest.mark.parametrize("spec,overrides", SMALL, ids=[s for s, _ in SMALL])
def test_every_small_config_plans_on_eight_devices(spec, overrides, tmp_path, eight_devices):
  del eight_devices
  config = _config(spec, overrides)
  module = registry.load_task(config.task)
  result = module.run(config, str(tmp_path), "plan")
  assert os.listdir(tmp_path) == ["plan.json"]
  with open(tmp_path / "plan.json") as f:
    assert json.load(f)["task"] == config.task
  if config.task == "codec_benchmark":
    assert result["train"] is None  # it trains nothing: the plan says so instead of compiling
    return
  assert result["devices"] == 8
  train = result["train"]
  assert train["batch_per_device"] * 8 == config.batch_size
  assert 0 < train["peak_bytes"] < 8e9 and train["matmul_flops"] > 0
  # The planned count is the count of the parameters the task really builds (allocated here).
  task = registry.task_of(config)
  if overrides.get("plan.sample", True) and task.can_sample() and "sample" in config:
    assert result["sample"]["peak_bytes"] > 0 and result["sample"]["matmul_flops"] > 0
  else:
    assert "sample" not in result
  params, _ = jax.jit(task.init)(jax.random.PRNGKey(0))
  for name, p in params.items():
    assert result["networks"][name]["parameters"] == sum(x.size for x in jax.tree.leaves(p))
