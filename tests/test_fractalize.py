"""Fractalization end to end through the one entrypoint (``python -m experiments.main``)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from experiments.configs import fractalize as fractalize_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_config_variants_and_unknown_variant():
  for arg in fractalize_config.VARIANTS:
    c = fractalize_config.get_config(arg)
    assert c.task == "fractalize" and c.image_size % c.range_size == 0
  assert fractalize_config.get_config().image_size == 256  # "quick" is the default
  # The point-cloud IFS demo (~10 min on 2 cores) is in the full variant, not the quick one.
  assert fractalize_config.get_config("quick").ifs_demo == ""
  assert fractalize_config.get_config("full").ifs_demo == "sierpinski"
  with pytest.raises(ValueError, match="valid: quick, tiny, full"):
    fractalize_config.get_config("huge")


def test_fractalize_tiny_through_main(tmp_path):
  workdir = tmp_path / "run"
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  cmd = [sys.executable, "-m", "experiments.main",
         "--config", "experiments/configs/fractalize.py:tiny", "--workdir", str(workdir),
         "--config.artifact_scales=(1, 2, 4)", "--config.gif_steps=3"]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]

  art = workdir / "artifacts"
  sizes = {k: Image.open(art / f"fractal_{k}x.png").size for k in (1, 2, 4)}
  assert sizes == {1: (64, 64), 2: (128, 128), 4: (256, 256)}
  gif = Image.open(art / "decoding.gif")
  assert gif.n_frames == 4  # the start and 3 iterations
  summary = json.loads((art / "fractalize.json").read_text())
  assert np.isfinite(summary["psnr_1x"]) and summary["psnr_1x"] > 12.0
  assert summary["contraction_factor"] < 0.95
  assert summary["pool_4x_vs_1x_maxabs"] < 1e-3  # resolution-agnostic decode
  assert (art / "fractalize.md").read_text().startswith("# Fractalization")
  assert (workdir / "checkpoints").is_dir()
