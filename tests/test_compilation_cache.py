"""The persistent compilation cache of the commands: where it lives, off by the environment, and
that a second run of the codec command loads its programs from it (same bytes out)."""

import os
import subprocess
import sys

import pytest
from PIL import Image

from collage import compilation_cache
from tests.train import helpers


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.delenv(compilation_cache.ENV, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compilation_cache.cache_dir() == str(tmp_path / "collage" / "jax")
  monkeypatch.setenv(compilation_cache.ENV, str(tmp_path / "mine"))
  assert compilation_cache.cache_dir() == str(tmp_path / "mine")
  for off in ("off", "", "0"):
    monkeypatch.setenv(compilation_cache.ENV, off)
    assert compilation_cache.cache_dir() is None


@pytest.mark.slow
def test_a_second_codec_command_loads_its_compiled_programs_from_the_cache(tmp_path):
  image = tmp_path / "in.png"
  Image.new("RGB", (64, 48), (120, 60, 30)).save(image)
  env = {**helpers.env(1), compilation_cache.ENV: str(tmp_path / "cache")}
  env["JAX_LOG_COMPILES"] = "1"  # each persistent-cache hit is then logged as a warning
  outs = []
  for i in range(2):
    out = tmp_path / f"out{i}.clg"
    done = subprocess.run([sys.executable, "-m", "collage.codec.cli", "compress", "--codec",
                           "neural", "-q", "30", str(image), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    hits = done.stderr.count("Persistent compilation cache hit")
    assert done.returncode == 0, done.stderr[-2000:]
    outs.append(out.read_bytes())
    entries = sorted(os.listdir(tmp_path / "cache"))
    if i == 0:
      first = entries
      assert first and hits == 0, "the first run wrote no compiled program to the cache"
    else:
      assert hits >= 5, done.stderr[-2000:]  # the encoder's programs came from the cache
  assert entries == first, "the second run compiled programs the first had cached"
  assert outs[0] == outs[1]
