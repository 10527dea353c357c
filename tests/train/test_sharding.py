"""Data-parallel training gives the same result on 8 devices as on 1 (same global batch)."""

import jax
import numpy as np
import pytest

from collage.train import loop, mesh
from tests.train import helpers
from tests.train.linreg_task import LinRegTask


def _train(tmp_path, name, devices, **overrides):
  cfg = helpers.config(**overrides)
  state = loop.run(LinRegTask(cfg), cfg, str(tmp_path / name), "train", devices=devices)
  return mesh.to_host(state.params["model"]), mesh.to_host(state.ema_params["model"]), state


def test_eight_devices_match_one_device(tmp_path, eight_devices):
  p8, ema8, state8 = _train(tmp_path, "d8", eight_devices)
  p1, ema1, _ = _train(tmp_path, "d1", eight_devices[:1])
  assert state8.params["model"]["w"].sharding.mesh.devices.size == 8
  assert int(state8.step) == 20
  for k in p8:
    np.testing.assert_allclose(p8[k], p1[k], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ema8[k], ema1[k], rtol=1e-5, atol=1e-6)
  # It learned something: the loss went down towards the true weights.
  assert np.abs(p8["w"][:, 0] - np.arange(1, 5) / 4).max() < 0.5


def test_batch_not_divisible_by_devices_names_both_numbers(tmp_path, eight_devices):
  cfg = helpers.config(batch_size=12)
  with pytest.raises(ValueError, match=r"batch_size=12.*\(8\)"):
    loop.run(LinRegTask(cfg), cfg, str(tmp_path / "bad"), "train", devices=eight_devices)


def test_global_batch_is_sharded_on_data_axis(eight_devices):
  m = mesh.make_mesh(eight_devices)
  x = mesh.global_batch({"x": np.arange(16, dtype=np.float32).reshape(8, 2)}, m)["x"]
  assert x.shape == (8, 2)
  assert len(x.addressable_shards) == 8
  assert {s.data.shape for s in x.addressable_shards} == {(1, 2)}
  np.testing.assert_array_equal(np.asarray(x), np.arange(16).reshape(8, 2))


def test_unknown_mode(tmp_path):
  cfg = helpers.config()
  with pytest.raises(ValueError, match="train, eval, sample"):
    loop.run(LinRegTask(cfg), cfg, str(tmp_path), "predict")
