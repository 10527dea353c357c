"""``collage-codec`` end to end: in-process through ``main``, and once as a subprocess."""

import os
import subprocess
import sys
import zlib

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from collage.codec import base, cli, container


class _RawCodec(base.Codec):
  """A lossless test codec that stores pixels in the container (codec id 250)."""
  name = "rawtest"
  codec_id = 250

  def compress(self, image, quality):
    image = base.check_image(image)
    base.check_quality(quality)
    h, w, c = image.shape
    return container.pack(self.codec_id, h, w, c, bytes([quality]), image.tobytes())

  def decompress(self, data, scale=1):
    header, _, payload = container.unpack(data, expected_codec_id=self.codec_id)
    shape = (header.height, header.width, header.channels)
    if len(payload) != np.prod(shape):
      raise base.CodecError("corrupt payload: wrong size")
    img = np.frombuffer(payload, np.uint8).reshape(shape)
    return np.repeat(np.repeat(img, scale, 0), scale, 1)

  def describe(self, data):
    return {"quality": container.unpack(data)[1][0]}


@pytest.fixture(autouse=True)
def _raw_codec():
  base.register(_RawCodec)
  yield
  base.unregister(_RawCodec.name)


@pytest.fixture
def image_file(tmp_path):
  rng = np.random.default_rng(0)
  img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
  path = tmp_path / "in.png"
  Image.fromarray(img).save(path)
  return str(path), img


def _run(capsys, *argv):
  code = cli.main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return code, out, err


def test_round_trip_info_and_scale(tmp_path, image_file, capsys):
  src, img = image_file
  clg, png = tmp_path / "x.clg", tmp_path / "y.png"
  code, out, err = _run(capsys, "compress", "--codec", "rawtest", "-q", 60, src, clg)
  assert (code, err) == (0, "") and "bpp" in out
  code, out, _ = _run(capsys, "info", clg)
  assert code == 0
  assert "rawtest (id 250)" in out and "30 x 20, 3 channels" in out and "quality    60" in out
  assert f"{8 * os.path.getsize(clg) / 600:.4f}" in out
  assert _run(capsys, "decompress", clg, png)[0] == 0
  np.testing.assert_array_equal(np.asarray(Image.open(png)), img)
  assert _run(capsys, "decompress", "--scale", 3, "--force", clg, png)[0] == 0
  assert Image.open(png).size == (90, 60)


def test_a_lossy_output_format_needs_lossy_output(tmp_path, image_file, capsys):
  src, _ = image_file
  clg = tmp_path / "x.clg"
  assert _run(capsys, "compress", "--codec", "rawtest", "-q", 60, src, clg)[0] == 0
  for name in ("y.jpg", "y.webp"):
    err = _error(capsys, "decompress", clg, tmp_path / name)
    assert "lossy" in err and "--lossy-output" in err and ".png" in err
    assert not (tmp_path / name).exists()
  assert _run(capsys, "decompress", "--lossy-output", clg, tmp_path / "y.jpg")[0] == 0
  assert Image.open(tmp_path / "y.jpg").format == "JPEG"


def test_reference_codec_files(tmp_path, image_file, capsys):
  src, _ = image_file
  jpg = tmp_path / "x.jpg"
  assert _run(capsys, "compress", "--codec", "jpeg", src, jpg)[0] == 0
  code, out, _ = _run(capsys, "info", jpg)
  assert code == 0 and "jpeg" in out
  assert _run(capsys, "decompress", jpg, tmp_path / "y.png")[0] == 0


def _error(capsys, *argv):
  code, out, err = _run(capsys, *argv)
  assert code == 2, (out, err)
  assert err.count("\n") == 1 and err.startswith("collage-codec: error: "), err
  assert "Traceback" not in err
  return err


def test_errors_are_one_line(tmp_path, image_file, capsys):
  src, _ = image_file
  clg = tmp_path / "x.clg"
  assert _run(capsys, "compress", "--codec", "rawtest", src, clg)[0] == 0
  good = clg.read_bytes()
  assert "valid codecs: " in _error(capsys, "compress", "--codec", "nope", src, tmp_path / "a")
  assert "rawtest" in _error(capsys, "compress", "--codec", "nope", src, tmp_path / "a")
  assert "1..100" in _error(capsys, "compress", "--codec", "rawtest", "-q", 101, src,
                            tmp_path / "a")
  assert "1..100" in _error(capsys, "compress", "--codec", "rawtest", "-q", "high", src,
                            tmp_path / "a")
  assert "1..16" in _error(capsys, "decompress", "--scale", 0, clg, tmp_path / "a.png")
  assert "does not exist" in _error(capsys, "compress", "--codec", "rawtest",
                                    tmp_path / "missing.png", tmp_path / "a")
  (tmp_path / "notimg.png").write_bytes(b"hello")
  assert "cannot read image" in _error(capsys, "compress", "--codec", "rawtest",
                                       tmp_path / "notimg.png", tmp_path / "a")
  Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "deep.png")
  assert "16-bit samples" in _error(capsys, "compress", "--codec", "rawtest",
                                    tmp_path / "deep.png", tmp_path / "a")
  assert "exists; pass --force" in _error(capsys, "compress", "--codec", "rawtest", src, clg)
  assert clg.read_bytes() == good
  assert "is a PNG image, not a compressed" in _error(capsys, "decompress", src,
                                                     tmp_path / "a.png")
  bad = bytearray(good)
  bad[4] = 9
  (tmp_path / "v9.clg").write_bytes(bytes(bad))
  assert "version byte is damaged (reads 9" in _error(capsys, "info", tmp_path / "v9.clg")
  h, params, payload = container.unpack(good)
  newer = container.pack(h.codec_id, h.height, h.width, h.channels, params, payload)
  newer = bytearray(newer[:-4])
  newer[4] = 9  # a file of a later version, intact: its own checksum matches
  (tmp_path / "v9.clg").write_bytes(bytes(newer) + zlib.crc32(newer).to_bytes(4, "little"))
  assert "unsupported format version 9" in _error(capsys, "info", tmp_path / "v9.clg")
  (tmp_path / "cut.clg").write_bytes(good[:-10])
  assert "truncated" in _error(capsys, "decompress", tmp_path / "cut.clg", tmp_path / "a.png")
  bad = bytearray(good)
  bad[40] ^= 1
  (tmp_path / "flip.clg").write_bytes(bytes(bad))
  assert "checksum" in _error(capsys, "decompress", tmp_path / "flip.clg", tmp_path / "a.png")
  assert "extension" in _error(capsys, "decompress", clg, tmp_path / "a.unknownext")
  assert "required" in _error(capsys, "compress", src)
  other = container.pack(77, 2, 2, 1, b"", b"")
  (tmp_path / "other.clg").write_bytes(other)
  assert "codec id 77" in _error(capsys, "decompress", tmp_path / "other.clg", tmp_path / "a.png")
  # No failed run left an output or a temporary file behind.
  assert not [p for p in os.listdir(tmp_path) if p.startswith((".", "a"))]


def test_subprocess_exit_status(tmp_path, image_file):
  src, _ = image_file
  env = dict(os.environ, PYTHONPATH=os.getcwd())
  cmd = [sys.executable, "-m", "collage.codec.cli"]
  ok = subprocess.run(cmd + ["compress", "--codec", "webp", src, str(tmp_path / "x.webp")],
                      capture_output=True, text=True, env=env, timeout=60)
  assert ok.returncode == 0, ok.stderr
  bad = subprocess.run(cmd + ["decompress", src, str(tmp_path / "y.png")], capture_output=True,
                       text=True, env=env, timeout=60)
  assert bad.returncode == 2
  assert bad.stderr == (f"collage-codec: error: {src!r} is a PNG image, not a compressed file; "
                        f"to compress it: collage-codec compress {src} OUT.clg\n")


def test_inputs_that_are_not_files_say_what_they_are(tmp_path, image_file, capsys):
  src, _ = image_file
  out = tmp_path / "a.png"
  for command in (("decompress", tmp_path, out), ("info", tmp_path),
                  ("compress", "--codec", "rawtest", tmp_path, tmp_path / "a")):
    assert "is a directory, not a file" in _error(capsys, *command)
  os.mkfifo(tmp_path / "pipe.clg")  # reading it would block: it must not be opened
  assert "not a regular file" in _error(capsys, "info", tmp_path / "pipe.clg")
  os.symlink(tmp_path / "gone.clg", tmp_path / "link.clg")
  assert "symbolic link to" in _error(capsys, "info", tmp_path / "link.clg")
  (tmp_path / "empty.clg").write_bytes(b"")
  assert "is empty" in _error(capsys, "decompress", tmp_path / "empty.clg", out)
  (tmp_path / "noise.clg").write_bytes(b"\x01\x02\x03\x04\x05")
  assert "not a collage codec file" in _error(capsys, "info", tmp_path / "noise.clg")
  assert "is a PNG image, not a compressed file" in _error(capsys, "info", src)
  assert not os.path.exists(out)


def test_deep_images_are_refused_with_the_command_that_converts_them(tmp_path, capsys):
  path = tmp_path / "rgb16.png"
  path.write_bytes(imagecodecs.png_encode(np.full((4, 5, 3), 40000, np.uint16)))
  err = _error(capsys, "compress", "--codec", "rawtest", path, tmp_path / "a.clg")
  assert "16-bit samples (RGB, PNG format)" in err and f"magick {path} -depth 8" in err
  assert not os.path.exists(tmp_path / "a.clg")


def test_write_failures_are_one_line_and_leave_nothing(tmp_path, image_file, capsys):
  src, _ = image_file
  clg = tmp_path / "x.clg"
  assert _run(capsys, "compress", "--codec", "rawtest", src, clg)[0] == 0
  assert "cannot write" in _error(capsys, "decompress", clg, tmp_path / "a.xbm")  # RGB as XBM
  assert sorted(os.listdir(tmp_path)) == ["in.png", "x.clg"]


@pytest.mark.parametrize("error", [
    MemoryError("Unable to allocate 768. MiB for an array"),
    type("JaxRuntimeError", (RuntimeError,), {})(
        "INTERNAL: Error dispatching computation: Out of memory allocating 3455705936 bytes."),
    type("XlaRuntimeError", (RuntimeError,), {})("RESOURCE_EXHAUSTED: Out of memory"),
])
def test_running_out_of_memory_is_one_line(tmp_path, image_file, capsys, monkeypatch, error):
  src, _ = image_file
  clg = tmp_path / "x.clg"
  assert _run(capsys, "compress", "--codec", "rawtest", src, clg)[0] == 0

  def fail(*_, **__):
    raise error

  monkeypatch.setattr(_RawCodec, "decompress", fail)
  err = _error(capsys, "decompress", "--scale", 16, clg, tmp_path / "a.png")
  assert "out of memory" in err and "smaller --scale" in err
  assert sorted(os.listdir(tmp_path)) == ["in.png", "x.clg"]
