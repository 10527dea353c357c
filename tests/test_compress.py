"""Neural collage compression end to end: train a tiny model through the one entrypoint
(``python -m experiments.main``) and compress with its exported model."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from collage.codec import neural, neural_models
from experiments.configs import compress as compress_config
from experiments.tasks import compress as compress_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.model.tile=16", "--config.data.crop=16", "--config.model.luma_range=4",
        "--config.model.luma_domain=8", "--config.model.luma_stride=8",
        "--config.model.luma_aux=3", "--config.model.chroma_range=8",
        "--config.model.chroma_aux=2", "--config.model.width=8", "--config.model.depth=1",
        "--config.model.hidden=16", "--config.model.decode_steps=3",
        "--config.batch_size=4", "--config.eval_batches=1", "--config.log_every=2"]


def test_config_variants_and_unknown_variant():
  for arg in compress_config.VARIANTS:
    c = compress_config.get_config(arg)
    assert c.task == "compress" and c.data.crop == c.model.tile
    compress_task.model_config(c)  # a valid architecture
  assert compress_config.get_config().total_steps == 5000  # "quick" is the default
  assert compress_config.get_config("baseline").model.coding == "bitpack"
  assert compress_config.get_config("fine").model.luma_range == 4
  # "variable" is the recipe of the shipped default model: the same architecture.
  shipped = neural_models.load_models(neural_models.VARIABLE_DIR)[0].cfg
  assert compress_task.model_config(compress_config.get_config("variable")) == shipped
  with pytest.raises(ValueError, match="valid: quick, full, fine, variable, baseline, baseline_q"):
    compress_config.get_config("huge")


def _main(workdir, *extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  cmd = [sys.executable, "-m", "experiments.main",
         "--config", "experiments/configs/compress.py:quick", "--workdir", str(workdir),
         *TINY, *extra]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc.stderr


@pytest.mark.slow
def test_compress_tiny_through_main_and_codec(tmp_path):
  workdir = tmp_path / "run"
  _main(workdir, "--config.total_steps=4", "--config.checkpoint_every=4",
        "--config.eval_every=4")
  assert (workdir / "checkpoints").is_dir()
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  steps = [r["step"] for r in rows if "bpp" in r]
  assert steps and max(steps) == 4
  assert all(np.isfinite(r["bpp"]) and r["bpp"] > 0 for r in rows if "bpp" in r)
  art = workdir / "artifacts"
  assert (art / "recon_4.png").is_file() and (art / "model" / "model.json").is_file()
  summary = json.loads((art / "recon_4.json").read_text())
  assert summary["step"] == 4 and summary["crops"] == 8 and np.isfinite(summary["psnr"])
  # The logged eval metrics are named apart from the PNG's crops and are exact means.
  evals = [r for r in rows if "eval/psnr" in r]
  assert evals and {"eval/mse", "eval/bpp"} <= set(evals[-1])

  # The workdir is a model for the codec (as --model would pass it).
  codec = neural.NeuralCollageCodec(model=str(workdir))
  img = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
  data = codec.compress(img, 50)
  code = codec.encode_code(img, 50)
  np.testing.assert_array_equal(codec.decompress(data), codec.reconstruct(code, 20, 30, 3))


@pytest.mark.slow
def test_variable_rate_training_from_a_fixed_rate_model(tmp_path):
  """A variable-rate model trains from a fixed-rate one (``init_from``), evaluates every level,
  and its export codes any quality."""
  fixed = tmp_path / "fixed"
  _main(fixed, "--config.total_steps=2", "--config.checkpoint_every=2", "--config.eval_every=2")
  workdir = tmp_path / "variable"
  _main(workdir, "--config.total_steps=4", "--config.checkpoint_every=4", "--config.eval_every=4",
        "--config.model.rate_lams=0.001,0.01,0.1",
        f"--config.init_from={fixed / 'artifacts' / 'model'}")
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  evals = [r for r in rows if "eval/psnr_l0" in r]
  assert evals and {"eval/bpp_l0", "eval/bpp_l2", "eval/psnr_l2"} <= set(evals[-1])
  summary = json.loads((workdir / "artifacts" / "recon_4.json").read_text())
  assert "lam" not in summary and {"psnr_l0", "bpp_l1"} <= set(summary)
  codec = neural.NeuralCollageCodec(model=str(workdir))
  assert codec.models[0].cfg.rate_lams == (0.001, 0.01, 0.1)
  img = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
  for quality in (1, 100):
    data = codec.compress(img, quality)
    np.testing.assert_array_equal(codec.decompress(data),
                                  codec.reconstruct(codec.encode_code(img, quality), 20, 30, 3))
  # ... and a context model trains from the variable-rate one, and its export codes too.
  ctx = tmp_path / "context"
  _main(ctx, "--config.total_steps=2", "--config.checkpoint_every=2", "--config.eval_every=2",
        "--config.model.rate_lams=0.001,0.01,0.1", "--config.model.context_model=True",
        f"--config.init_from={workdir / 'artifacts' / 'model'}")
  codec = neural.NeuralCollageCodec(model=str(ctx))
  assert codec.models[0].cfg.context_model
  for quality in (1, 100):
    data = codec.compress(img, quality)
    np.testing.assert_array_equal(codec.decompress(data),
                                  codec.reconstruct(codec.encode_code(img, quality), 20, 30, 3))


def test_precision_fields_exist_and_only_float32_without_remat_is_accepted():
  for arg in compress_config.VARIANTS:
    m = compress_config.get_config(arg).model
    assert (m.dtype, m.param_dtype, m.remat) == ("float32", "float32", "none"), arg
  c = compress_config.get_config("quick")
  c.model.dtype = "bfloat16"
  with pytest.raises(ValueError, match="float32 only.*decode bit-exactly"):
    compress_task.CompressTask(c)
  c = compress_config.get_config("quick")
  c.model.remat = "blocks"
  with pytest.raises(ValueError, match="no recomputation.*valid: none"):
    compress_task.CompressTask(c)
  c.model.remat = "everything"
  with pytest.raises(ValueError, match="valid: none, blocks"):
    compress_task.CompressTask(c)


def test_batch_spec_matches_a_real_train_batch():
  task = compress_task.CompressTask(compress_config.get_config("quick"))
  batch = next(task.dataset("train", seed=0, process_index=0, process_count=1, batch_size=4))
  spec = task.batch_spec(4)
  assert spec.keys() == batch.keys()
  for k, v in batch.items():
    assert (spec[k].shape, spec[k].dtype) == (np.shape(v), np.asarray(v).dtype), k
