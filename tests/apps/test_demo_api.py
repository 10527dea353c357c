"""The demo's named API through ``gradio_client``, against a demo serving on a free port: the
numbers ``compress`` returns are those of the file ``collage-codec`` writes for the same image
and quality (the same bytes); ``zoom`` and ``fractalize``; each bad input's message; two
sessions at once; and the ``collage-demo`` command itself."""

import concurrent.futures
import hashlib
import os
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from apps.demo import inputs
from collage.codec import cli, memory
from collage.metrics.distortion import psnr
from tests.apps.conftest import free_port, serving

pytestmark = pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'",
                                        "ignore:The copy keyword is deprecated")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def client():
  with serving() as url:
    yield Client(url, verbose=False)


def _cli_file(tmp_path, image_path, codec, quality, subprocess_run=False) -> bytes:
  out = tmp_path / f"out_{codec}_{quality}.bin"
  argv = ["compress", "--codec", codec, "--quality", str(quality), image_path, str(out)]
  if subprocess_run:
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "collage-codec"),
                           *argv], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
  else:
    assert cli.main(argv) == 0
  return out.read_bytes()


def test_compress_agrees_with_collage_codec_byte_for_byte(client, files, tmp_path):
  image = inputs.read_upload(files["photo"])
  h, w = image.shape[:2]
  for codec, quality in (("neural", 50), ("pifs", 40), ("jpeg", 75), ("webp", 60),
                         ("jpeg2000", 70)):
    decoded_path, stats = client.predict(handle_file(files["photo"]), codec, quality,
                                         api_name="/compress")
    data = _cli_file(tmp_path, files["photo"], codec, quality,
                     subprocess_run=codec == "neural")
    assert stats["sha256"] == hashlib.sha256(data).hexdigest(), codec
    assert stats["bytes"] == len(data) and stats["bpp"] == 8 * len(data) / (h * w), codec
    assert stats["codec"] == codec and stats["quality"] == quality
    decoded = np.asarray(Image.open(decoded_path).convert("RGB"))
    assert decoded.shape == image.shape
    assert stats["psnr"] == pytest.approx(psnr(image, decoded, peak=255.0), abs=1e-9), codec
    for key in ("ms_ssim", "encode_s", "decode_s"):
      assert stats[key] is not None and stats[key] >= 0, (codec, key)


def test_zoom_decodes_a_file_at_the_scale(client, files, tmp_path):
  data = _cli_file(tmp_path, files["photo"], "neural", 30)
  path = tmp_path / "photo.clg"
  path.write_bytes(data)
  zoomed = Image.open(client.predict(handle_file(str(path)), 3, api_name="/zoom"))
  assert zoomed.size == (240 * 3, 176 * 3)
  jpeg = tmp_path / "photo.jpg"
  jpeg.write_bytes(_cli_file(tmp_path, files["photo"], "jpeg", 50))
  assert Image.open(client.predict(handle_file(str(jpeg)), 2, api_name="/zoom")).size == (480, 352)
  with pytest.raises(AppError, match="zoom must be an integer in 1..8, got 9"):
    client.predict(handle_file(str(path)), 9, api_name="/zoom")
  with pytest.raises(AppError, match="not a collage file|magic|not ours|wrong"):
    client.predict(handle_file(files["photo"]), 2, api_name="/zoom")


def test_a_zoom_beyond_memory_gets_the_codecs_refusal(client, files, tmp_path, monkeypatch):
  path = tmp_path / "photo.clg"
  path.write_bytes(_cli_file(tmp_path, files["photo"], "neural", 30))
  monkeypatch.setattr(memory, "available_bytes", lambda: memory.FIXED_BYTES)
  with pytest.raises(AppError, match="decoding at scale 8 makes a 1920x1408 image and needs"):
    client.predict(handle_file(str(path)), 8, api_name="/zoom")


def test_fractalize_returns_the_fixed_point_and_its_numbers(client, files):
  image_path, stats = client.predict(handle_file(files["gray"]), api_name="/fractalize")
  assert Image.open(image_path).size == (256, 256)
  assert stats["size"] == 256 and stats["channels"] == 1 and stats["steps"] == 400
  assert stats["psnr_1x"] > 20 and 0 < stats["contraction"] < 0.95


@pytest.mark.parametrize("kind, message", [
    ("text", "'notes.txt' is not an image file"),
    ("deep", "'scan16.png' has 16-bit samples"),
    ("huge", "over the demo's limit of 16.0 MP"),
])
def test_bad_uploads_get_their_message(client, files, kind, message):
  for api, args in (("/compress", ("neural", 50)), ("/fractalize", ())):
    with pytest.raises(AppError, match=message):
      client.predict(handle_file(files[kind]), *args, api_name=api)


def test_bad_settings_get_their_message(client, files):
  with pytest.raises(AppError, match="unknown codec 'zip'; valid codecs: neural, pifs, jpeg"):
    client.predict(handle_file(files["photo"]), "zip", 50, api_name="/compress")
  with pytest.raises(AppError, match="quality must be an integer in 1..100"):
    client.predict(handle_file(files["photo"]), "jpeg", 101, api_name="/compress")


def test_two_sessions_at_once_each_get_their_own_result(client, files):
  other = Client(client.src, verbose=False)
  jobs = [(client, files["photo"], (176, 240)), (other, files["gray"], (192, 192))]
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    futures = [pool.submit(c.predict, handle_file(f), "jpeg", 80, api_name="/compress")
               for c, f, _ in jobs]
    results = [f.result(timeout=600) for f in futures]
  for (_, path, (h, w)), (image_path, stats) in zip(jobs, results):
    assert (stats["height"], stats["width"]) == (h, w), path
    assert Image.open(image_path).size == (w, h)


def test_the_command_serves_on_localhost_and_names_bad_runs(tmp_path):
  port = free_port()
  env = dict(os.environ, COLLAGE_CACHE_DIR="off")
  proc = subprocess.Popen(
      [sys.executable, "-m", "apps.demo", "--port", str(port), "--no-warmup", "--runs",
       str(tmp_path / "no_such_run")], cwd=REPO, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  try:
    line = proc.stdout.readline()
    assert f"open http://127.0.0.1:{port}/" in line, (line, proc.stderr.read())
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as page:
      assert page.status == 200 and b"collage" in page.read()
  finally:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
  assert proc.returncode == 0, err
  assert "warning:" in err and "no_such_run does not exist" in err
