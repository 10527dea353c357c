"""A decode that would not fit in memory is refused before it starts, with one clear line."""

import os
import subprocess
import sys

import numpy as np
import pytest

from collage.codec import cli, memory
from collage.codec.base import CodecError, get_codec

GB = memory.GB
DATA = os.path.join(os.path.dirname(__file__), "data")


class _Quadratic:
  """A codec stand-in whose decode needs scale**2 GB."""

  def decode_bytes(self, height, width, channels, scale):
    del height, width, channels
    return scale * scale * GB


def test_refusal_names_size_need_availability_and_the_largest_scale(monkeypatch):
  monkeypatch.setattr(memory, "available_bytes", lambda: 10 * GB)
  memory.check_decode_fits(_Quadratic(), 75, 100, 3, 3)  # 9 GB: fits
  with pytest.raises(CodecError) as e:
    memory.check_decode_fits(_Quadratic(), 75, 100, 3, 4)
  assert str(e.value) == ("decoding at scale 4 makes a 400x300 image and needs about 16.0 GB "
                          "of memory, more than the 10.0 GB available; the largest scale that "
                          "fits is 3")
  monkeypatch.setattr(memory, "available_bytes", lambda: GB // 2)
  with pytest.raises(CodecError, match="not even scale 1 fits: free memory first"):
    memory.check_decode_fits(_Quadratic(), 75, 100, 3, 2)
  monkeypatch.setattr(memory, "available_bytes", lambda: None)  # unknown: nothing is refused
  memory.check_decode_fits(_Quadratic(), 75, 100, 3, 16)


def test_available_memory_follows_the_address_space_limit():
  code = ("import resource; from collage.codec import memory; "
          "vm = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') "
          "if l.startswith('VmSize:')); "
          "resource.setrlimit(resource.RLIMIT_AS, (vm + 300 * 2**20, resource.RLIM_INFINITY)); "
          "print(memory.available_bytes())")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=os.getcwd()), check=True).stdout
  assert 0 < int(out) <= 300 * 2**20


def test_estimates_cover_the_measured_peaks():
  """benchmarks/reliability.md: Kodak (768 x 512 RGB) at scale 16 peaked at 10.56 GB resident
  with the PIFS codec and 1.39 GB with the neural codec (whole command)."""
  assert get_codec("pifs").decode_bytes(512, 768, 3, 16) > 10.56e9
  assert get_codec("neural").decode_bytes(512, 768, 3, 16) > 1.39e9
  assert get_codec("jpeg").decode_bytes(512, 768, 3, 16) > 5 * 512 * 768 * 3 * 256


def _stored(name):
  with open(os.path.join(DATA, f"{name}.clg"), "rb") as f:
    return f.read()


def test_every_codec_checks_before_decoding(monkeypatch):
  monkeypatch.setattr(memory, "available_bytes", lambda: 1)
  jpeg = get_codec("jpeg").compress(np.zeros((8, 8, 3), np.uint8), 50)
  for codec, data in [("pifs", _stored("pifs-rgb")), ("neural", _stored("neural-rgb")),
                      ("neural", _stored("neural-mix-gray")), ("jpeg", jpeg)]:
    with pytest.raises(CodecError, match="^decoding at scale 1 makes .* not even scale 1 fits"):
      get_codec(codec).decompress(data)


def test_the_command_refuses_with_the_largest_scale_that_fits(tmp_path, capsys, monkeypatch):
  src = os.path.join(DATA, "pifs-rgb.clg")
  pifs = get_codec("pifs")
  monkeypatch.setattr(memory, "available_bytes", lambda: pifs.decode_bytes(48, 64, 3, 11))
  out = tmp_path / "big.png"
  assert cli.main(["decompress", "--scale", "16", src, str(out)]) == 2
  err = capsys.readouterr().err
  assert err.startswith("collage-codec: error: decoding at scale 16 makes a 1024x768 image and "
                        "needs about ") and err.endswith("the largest scale that fits is 11\n")
  assert not os.listdir(tmp_path)
