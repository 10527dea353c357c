"""experiments/tasks/distill_codec_encoder.py through the one entrypoint: a cheaper encoder
learns the teacher's code; the decoder side is the teacher's, unchanged."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from collage.codec import neural
from collage.nn import neural_collage as hn
from collage.nn import neural_collage_io
from collage.train.errors import ConfigError
from experiments.configs import distill_codec_encoder as distill_config
from experiments.tasks import distill_codec_encoder as distill_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(tile=16, luma_range=4, luma_domain=8, luma_stride=8, luma_aux=3, chroma_range=8,
            chroma_aux=2, width=8, depth=2, hidden=16, support=15, decode_steps=4,
            rate_lams=(0.001, 0.01), context_model=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("distill")
  teacher = neural_collage_io.random_model(hn.ModelConfig(**TINY), seed=3)
  teacher.encoder.head_w.bias[...] = teacher.encoder.head_w.bias[...] + 1.0
  neural_collage_io.save_model(teacher, str(root / "teacher"), {"step": 0})
  rng = np.random.default_rng(0)
  os.makedirs(root / "images")
  for i in range(2):
    img = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(root / "images" / f"{i}.png")
  return root


def _config(setup, **overrides):
  c = distill_config.get_config("quick")
  c.teacher = str(setup / "teacher")
  c.data.source = f"folder:{setup / 'images'}"
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def test_config_variants_and_unknown_variant():
  for arg in distill_config.VARIANTS:
    c = distill_config.get_config(arg)
    assert c.task == "distill_codec_encoder" and c.depth >= 0
  assert distill_config.get_config().data.source == "embedded"  # "quick" is the default
  assert distill_config.get_config("full").total_steps == 6000
  with pytest.raises(ValueError, match="valid: quick, full"):
    distill_config.get_config("huge")


@pytest.mark.slow
def test_distilled_student_keeps_the_decoder_and_codes_files(setup, tmp_path):
  workdir = tmp_path / "run"
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  cmd = [sys.executable, "-m", "experiments.main",
         "--config", "experiments/configs/distill_codec_encoder.py:quick",
         "--workdir", str(workdir), f"--config.teacher={setup / 'teacher'}",
         "--config.depth=1", "--config.total_steps=3", "--config.batch_size=4",
         f"--config.data.source=folder:{setup / 'images'}", "--config.log_every=1",
         "--config.eval_every=3", "--config.checkpoint_every=3"]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "code_mse" in r] == [1, 2, 3]
  evals = [r for r in rows if "eval/code_mse" in r]
  assert evals and 0 <= evals[-1]["eval/changed"] <= 1

  out = workdir / "artifacts" / "model"
  teacher, _ = neural_collage_io.load_model(str(setup / "teacher"))
  student, meta = neural_collage_io.load_model(str(out))
  assert student.cfg.depth == 1 and len(student.encoder.blocks) == 1
  assert "distilled" in meta and meta["init_from"] == "teacher"
  assert meta["source"] == "images (2 images, 16x16 crops)" and meta["step"] == 3
  t, s = neural_collage_io.flat_params(teacher), neural_collage_io.flat_params(student)
  decoder_side = [k for k in s if "['encoder']" not in k]
  assert decoder_side
  for k in decoder_side:  # copied (saved in half precision)
    np.testing.assert_array_equal(s[k], t[k].astype(np.float16).astype(np.float32))
  assert any(not np.array_equal(s[k], t[k]) for k in s if "['encoder']" in k)
  assert not any("['blocks'][1]" in k for k in s)
  codec = neural.NeuralCollageCodec(model=str(out))
  img = np.asarray(Image.open(setup / "images" / "0.png"))
  data = codec.compress(img, 50)
  assert codec.decompress(data).shape == img.shape


def test_the_student_starts_as_the_teacher_without_its_last_blocks(setup):
  task = distill_task.DistillTask(_config(setup))
  params, model_state = task.init(None)
  teacher, _ = neural_collage_io.load_model(str(setup / "teacher"))
  t = neural_collage_io.flat_params(teacher)
  s = neural_collage_io.flat_params(task.student(params["model"], model_state))
  assert set(s) == {k for k in t if "['blocks'][1]" not in k}
  for k, v in s.items():
    np.testing.assert_array_equal(v, t[k])
  assert all(k.startswith("encoder/") for k in params["model"])


def test_kodak_and_bad_depths_are_refused(setup, tmp_path):
  kodak = tmp_path / "kodak"
  os.makedirs(kodak)
  with pytest.raises(ConfigError, match="Kodak is the test set"):
    distill_task.DistillTask(_config(setup, **{"data.source": f"folder:{kodak}"}))
  with pytest.raises(ConfigError, match="Kodak is the test set"):
    distill_task.DistillTask(_config(setup, **{"data.eval_source": f"folder:{kodak}"}))
  with pytest.raises(ConfigError, match="depth must be in 0..1"):
    distill_task.DistillTask(_config(setup, depth=2))
