"""The DCTransformer experiment end to end on a tiny model: 8 devices = 1 device, SIGKILL and
rerun ends where an uninterrupted run ends, conditional --mode sample keeps its prefix and
writes .jpg files holding the samples' coefficients."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from collage.data import jpeg_coefficients
from collage.ops import sparse_dct
from collage.train import loop, mesh
from experiments.configs import dctransformer as dct_config
from experiments.tasks import dctransformer as dct_task
from tests.train import helpers

CONFIG = os.path.join("experiments", "configs", "dctransformer.py") + ":digits_quick"
TINY = {"batch_size": 8, "log_every": 5, "eval_every": 0, "checkpoint_every": 10,
        "eval_batches": 1, "artifact_samples": 0, "data.eval_images": 8, "data.quality": 25,
        "model.dim": 16, "model.heads": 2, "model.encoder_layers": 1,
        "model.decoder_layers": 1, "model.chunk": 64, "model.max_len": 384,
        "optimizer.warmup_steps": 0}


def _config(**overrides):
  c = dct_config.get_config("digits_quick")
  for k, v in {**TINY, **overrides}.items():
    node, parts = c, k.replace("__", ".").split(".")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = v
  return c


def _flags(**overrides):
  return [f"--config.{k.replace('__', '.')}={v}" for k, v in {**TINY, **overrides}.items()]


def _params(state):
  return {k: np.asarray(v) for k, v in mesh.to_host(state.params["model"]).items()}


def test_eight_devices_equal_one_device(tmp_path, eight_devices):
  # Plain SGD: Adam's first steps are +-lr whatever a gradient's size, so a coordinate whose
  # gradient is at rounding level would differ by the learning rate between device counts.
  cfg = _config(total_steps=3, **{"optimizer.name": "sgd", "optimizer.learning_rate": 0.1})
  p8 = _params(loop.run(dct_task.DCTransformerTask(cfg), cfg, str(tmp_path / "d8"), "train",
                        devices=eight_devices))
  p1 = _params(loop.run(dct_task.DCTransformerTask(cfg), cfg, str(tmp_path / "d1"), "train",
                        devices=eight_devices[:1]))
  assert p8.keys() == p1.keys()
  for k in p8:  # the same global batches and chunks; only the order of the sums differs
    np.testing.assert_allclose(p8[k], p1[k], rtol=1e-4, atol=1e-6, err_msg=k)
  # ... and the runs trained: every tensor moved from its initial value (the runtime's init
  # key) by more than ten times the tolerance above, except the attention key biases, whose
  # gradient is zero (a softmax does not change when one score is added to every key).
  from collage.train.setup import run_keys  # pylint: disable=import-outside-toplevel
  init, _ = dct_task.DCTransformerTask(cfg).init(run_keys(int(cfg.seed))[0])
  p0 = {k: np.asarray(v) for k, v in init["model"].items()}
  for k in p0:
    moved = np.abs(p1[k] - p0[k]).max()
    if k.endswith("/k/bias"):
      assert moved < 1e-9, (k, moved)
    else:
      assert moved > 1e-5, (k, moved)


def test_sigkill_then_rerun_ends_where_an_uninterrupted_run_ends(tmp_path):
  cfg = _config(total_steps=40)
  reference = _params(loop.run(dct_task.DCTransformerTask(cfg), cfg, str(tmp_path / "ref"),
                               "train"))
  workdir = tmp_path / "killed"
  args = _flags(total_steps=40)
  helpers.kill_after_checkpoint(workdir, 10, *args, config_file=CONFIG, final_step=40)
  done = helpers.run_main(workdir, *args, config_file=CONFIG)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "resumed from" in done.stderr
  resumed = _params(loop.run(dct_task.DCTransformerTask(cfg), cfg, str(workdir), "eval"))
  assert resumed.keys() == reference.keys()
  for k in reference:
    np.testing.assert_array_equal(resumed[k], reference[k], err_msg=k)


def test_upsampling_sample_keeps_the_prefix_and_writes_jpgs_of_the_samples(tmp_path):
  cfg = _config(total_steps=2, condition="upsample", sample__num=2, sample__batch_size=8)
  workdir = str(tmp_path)
  dct_task.run(cfg, workdir, "train")
  dct_task.run(cfg, workdir, "sample")
  out = os.path.join(workdir, "samples", "2")
  with np.load(os.path.join(out, "samples.npz")) as f:
    samples = {k: f[k] for k in f.files}
  task = dct_task.DCTransformerTask(cfg)
  prefix = task.condition_prefix("")
  n = int(prefix["length"])
  assert n > 0
  for b in range(2):
    for k in ("ranks", "positions", "values"):
      np.testing.assert_array_equal(samples[k][b, :n], prefix[k][:n])
    assert np.all(samples["ranks"][b, :n] == 0)  # the DC channel: the 8x downsampled image
    # The .jpg holds exactly the sample's coefficients (pixels: tests/ops/test_jpeg.py; an
    # untrained model's wild coefficients overflow libjpeg's IDCT range limit).
    path = os.path.join(out, f"{b:05d}.jpg")
    assert np.asarray(Image.open(path)).shape == (32, 32)
    comps, _ = jpeg_coefficients.read_coefficients(path)
    np.testing.assert_array_equal(np.asarray(sparse_dct.dct_image(comps)), samples["dct"][b])
  # The same checkpoint drawn unconditionally must not overwrite the conditioned draw.
  plain = _config(total_steps=2, sample__num=2, sample__batch_size=8)
  with pytest.raises(FileExistsError, match="already holds samples"):
    dct_task.run(plain, workdir, "sample")
  with np.load(os.path.join(out, "samples.npz")) as f:
    np.testing.assert_array_equal(f["ranks"], samples["ranks"])


def test_mistakes_are_clear_errors():
  with pytest.raises(ValueError, match="needs colour images.*luma_first"):
    dct_task.DCTransformerTask(_config(condition="colorize"))
  with pytest.raises(ValueError, match="valid: none, upsample, colorize"):
    dct_task.DCTransformerTask(_config(condition="inpaint"))
  with pytest.raises(ValueError, match="needs data.block=8"):
    dct_task.DCTransformerTask(_config(**{"data.block": 16}))
  with pytest.raises(ValueError, match="multiple of model.chunk"):
    dct_task.DCTransformerTask(_config(**{"model.max_len": 100}))
  with pytest.raises(ValueError, match="condition='none'"):
    dct_task.DCTransformerTask(_config()).condition_prefix("x.png")
  for name in dct_config.VARIANTS:
    dct_config.get_config(name)
  with pytest.raises(ValueError, match="valid: digits_quick, photos64"):
    dct_config.get_config("mnist")


def _losses(workdir):
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return np.asarray([r["loss"] for r in rows if "loss" in r])


def test_bfloat16_trains_like_float32_and_keeps_float32_state(tmp_path):
  losses = {}
  for dtype in ("float32", "bfloat16"):
    cfg = _config(total_steps=8, log_every=1, checkpoint_every=8, **{"model.dtype": dtype})
    state = loop.run(dct_task.DCTransformerTask(cfg), cfg, str(tmp_path / dtype), "train")
    losses[dtype] = _losses(tmp_path / dtype)
    assert len(losses[dtype]) == 8 and np.all(np.isfinite(losses[dtype])), dtype
    # The loss falls (each step scores a random chunk: compare the first and last 3 steps).
    assert losses[dtype][-3:].mean() < losses[dtype][:3].mean() - 0.5, (dtype, losses[dtype])
    # What the checkpoint holds: parameters (and EMA, optimizer state) are float32.
    floats = [x for group in (state.params, state.ema_params, state.opt_state)
              for x in jax.tree.leaves(group) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert jax.tree.leaves(state.params) and all(x.dtype == jnp.float32 for x in floats), dtype
  # The same batches and chunks: bfloat16 tracks float32 to a few hundredths of a nat (measured:
  # within 0.016 of ~12 nats over 12 steps).
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"], atol=0.05)


def test_batch_spec_matches_a_real_train_batch():
  task = dct_task.DCTransformerTask(_config())
  batch = next(task.dataset("train", seed=0, process_index=0, process_count=1, batch_size=4))
  spec = task.batch_spec(4)
  assert spec.keys() == batch.keys()
  for k, v in batch.items():
    assert (spec[k].shape, spec[k].dtype) == (np.shape(v), np.asarray(v).dtype), k


def test_every_variant_has_the_precision_fields_and_the_paper_sizes_are_bfloat16():
  for name in dct_config.VARIANTS:
    m = dct_config.get_config(name).model
    big = name in ("imagenet", "lsun")
    assert m.dtype == ("bfloat16" if big else "float32") and m.param_dtype == "float32", name
    assert m.remat == "none", name
  with pytest.raises(ValueError, match="valid: float32, bfloat16"):
    dct_task.DCTransformerTask(_config(**{"model.dtype": "float16"}))
  with pytest.raises(ValueError, match="valid: none, blocks"):
    dct_task.DCTransformerTask(_config(**{"model.remat": "layers"}))
