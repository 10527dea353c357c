"""The codec_benchmark experiment: config variants, run() artifacts, and the entrypoint."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.configs import codec_benchmark as config_lib
from experiments.tasks import codec_benchmark as task


def _small_config():
  c = config_lib.get_config("quick")
  c.codecs = "jpeg,webp"
  c.qualities.jpeg = "10,60"
  c.qualities.webp = "20"
  c.max_images = 2
  c.crop = 192
  return c


def test_config_variants():
  assert config_lib.get_config().images == ""
  kodak = config_lib.get_config("kodak")
  assert kodak.task == "codec_benchmark" and kodak.images.endswith("kodak") and kodak.crop == 0
  assert "batch_size" in kodak  # the runtime's shared fields are there
  with pytest.raises(ValueError, match="valid: quick, kodak"):
    config_lib.get_config("huge")


def test_run_writes_artifacts(tmp_path, capsys, monkeypatch):
  import matplotlib.axes
  titles = []
  original = matplotlib.axes.Axes.set_title
  monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                      lambda ax, text, **kw: titles.append(text) or original(ax, text, **kw))
  result = task.run(_small_config(), str(tmp_path), "train")
  # Each plot says what was measured: how many images, which, and the crop.
  assert len(titles) == 2 and all("average of 2 images" in t and "centre crop 192x192" in t
                                  for t in titles), titles
  out = capsys.readouterr().out
  assert "[6/6]" in out and "ETA" in out
  art = tmp_path / "artifacts"
  assert sorted(os.listdir(art)) == ["averages.csv", "per_image.csv", "rd_msssim.png",
                                     "rd_psnr.png", "summary.md"]
  with open(art / "per_image.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 6 and set(rows[0]) == set(task.FIELDS)
  for r in rows:
    assert float(r["bpp"]) == pytest.approx(8 * int(r["bytes"]) / (192 * 192), abs=1e-5)
    assert 15 < float(r["psnr"]) < 60 and 0.5 < float(r["ms_ssim"]) <= 1
  assert [(a["codec"], a["quality"]) for a in result["averages"]] == [
      ("jpeg", 10), ("jpeg", 60), ("webp", 20)]
  summary = (art / "summary.md").read_text()
  assert "| jpeg | 60 |" in summary


def test_unknown_codec_is_an_error_listing_the_valid_ones():
  c = _small_config()
  c.codecs = "jpeg,avif"
  with pytest.raises(ValueError, match=r"unknown codec 'avif'; valid: .*jpeg.*pifs.*webp"):
    task.select_codecs(c)


def test_unknown_quality_sweep_is_an_error():
  c = _small_config()
  c.codecs = "jpeg2000"
  del c.qualities["jpeg2000"]
  with pytest.raises(ValueError, match="no sweep for codec 'jpeg2000'"):
    task.select_codecs(c)


def test_through_the_entrypoint(tmp_path):
  cmd = [sys.executable, "-m", "experiments.main",
         "--config", "experiments/configs/codec_benchmark.py:quick", "--workdir", str(tmp_path),
         "--config.codecs=jpeg", "--config.qualities.jpeg=50", "--config.max_images=1",
         "--config.ms_ssim=False"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, PYTHONPATH=os.getcwd()))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (tmp_path / "config.json").exists()
  assert (tmp_path / "artifacts" / "summary.md").exists()


def test_neural_refine_and_mix_reach_the_codec(tmp_path, monkeypatch):
  """config.neural_refine / neural_mix are passed to the neural codec (and to no other)."""
  made = []

  def spy(name, **kwargs):
    made.append((name, kwargs))
    return task_get_codec(name, **kwargs)

  task_get_codec = task.get_codec
  monkeypatch.setattr(task, "get_codec", spy)
  c = _small_config()
  c.codecs, c.qualities.neural, c.qualities.jpeg = "neural,jpeg", "41", "50"
  c.max_images, c.crop, c.ms_ssim = 1, 32, False
  assert config_lib.get_config().neural_refine == 0
  assert config_lib.get_config().neural_mix is False  # the variable-rate default
  c.neural_refine, c.neural_mix = 3, False
  task.run(c, str(tmp_path), "train")
  assert made == [("neural", {"refine": 3, "mix": False}), ("jpeg", {})]
  made.clear()
  c.neural_refine, c.neural_mix = 0, True
  task.run(c, str(tmp_path / "mix"), "train")
  assert made == [("neural", {"refine": 0, "mix": True}), ("jpeg", {})]


def test_eta_comes_from_each_codec_s_measured_rate():
  """A slow codec's first item must not set the pace of a fast one (nor the reverse)."""
  images = [("a", np.zeros((10, 10, 3))), ("b", np.zeros((10, 30, 3)))]  # 100 + 300 pixels
  eta = task.Eta([("slow", [10, 50]), ("fast", [10])], images)
  assert str(eta) == "ETA 0 s + slow, fast (not timed yet)"
  eta.add("slow", 100, 10.0)  # 0.1 s per pixel, 700 pixels left
  assert str(eta) == "ETA 70 s + fast (not timed yet)"
  for pixels in (300, 100, 300):
    eta.add("slow", pixels, 0.1 * pixels)
  eta.add("fast", 100, 0.01)  # 1e-4 s per pixel, 300 pixels left
  assert str(eta) == "ETA 0 s" and eta.left == {"slow": 0, "fast": 300}
