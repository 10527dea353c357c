"""The demo's handling of what a person gives it, without a server: each bad input's message,
the same-size search, the zoom's crop decode against the whole decode, the memory refusal,
and the run directories the Generate tab refuses."""

import json

import gradio as gr
import numpy as np
import pytest

from apps.demo import app, compress as cp, fractal, inputs
from collage.codec import memory
from collage.codec.base import CodecError
from tests.apps.conftest import photo_crop


# -- uploads ----------------------------------------------------------------------------------
def test_a_photograph_and_a_gray_image_are_read_as_they_are(files):
  assert inputs.read_upload(files["photo"]).shape == (176, 240, 3)
  gray = inputs.read_upload(files["gray"])
  assert gray.shape == (192, 192, 1) and gray.dtype == np.uint8


@pytest.mark.parametrize("kind, expected", [
    ("text", "'notes.txt' is not an image file"),
    ("deep", "'scan16.png' has 16-bit samples; the codecs take 8-bit images"),
    ("huge", "4001x4001 = 16.0 MP, over the demo's limit of 16.0 MP"),
    ("transparent", "'logo.png' has transparent pixels"),
])
def test_each_bad_upload_is_refused_with_its_own_message(files, kind, expected):
  with pytest.raises(inputs.InputError, match=expected.replace("(", r"\(").replace(".", r"\.")):
    inputs.read_upload(files[kind])


def test_no_file_and_a_vanished_file_say_so(tmp_path):
  with pytest.raises(inputs.InputError, match="pick a photograph or upload"):
    inputs.read_upload(None)
  with pytest.raises(inputs.InputError, match="upload it again"):
    inputs.read_upload(str(tmp_path / "gone.png"))


def test_the_message_names_the_file_not_the_server_path(files):
  with pytest.raises(inputs.InputError) as e:
    inputs.read_upload(files["deep"])
  assert "/" not in str(e.value).split("magick")[0], str(e.value)


def test_embedded_photographs_keep_their_channels(tmp_path):
  assert inputs.photo("camera").shape[-1] == 1
  assert inputs.photo("astronaut").shape[-1] == 3
  folder = inputs.PhotoFolder(str(tmp_path / "photos"))
  assert np.array_equal(inputs.read_upload(folder.path("coins")), inputs.photo("coins"))
  with pytest.raises(inputs.InputError, match="unknown photograph 'kodim01'; the embedded"):
    inputs.photo("kodim01")


# -- compress ---------------------------------------------------------------------------------
def test_the_same_size_search_finds_the_nearest_byte_count():
  image = photo_crop()
  target = 6000
  sizes = {q: len(cp.codec("jpeg").compress(image, q)) for q in range(1, 101)}
  best = min(sizes, key=lambda q: (abs(sizes[q] - target), q))
  assert cp.quality_for_size(image, "jpeg", target) == best
  assert cp.quality_for_size(image, "jpeg", 1) == 1
  assert cp.quality_for_size(image, "jpeg", 10**9) == 100


def test_stats_are_those_of_the_file():
  image = photo_crop()
  coded = cp.run(image, "webp", 40)
  s = coded.stats
  assert s["bytes"] == len(coded.data) and s["bpp"] == 8 * len(coded.data) / (176 * 240)
  assert 20 < s["psnr"] < 50 and 0.5 < s["ms_ssim"] <= 1
  assert coded.decoded.shape == image.shape


@pytest.mark.parametrize("bad", [0, 9, 2.5, "x", True])
def test_a_zoom_outside_1_to_8_is_refused(bad):
  with pytest.raises(CodecError, match="zoom must be an integer in 1..8"):
    cp.check_zoom(bad)


def test_a_codec_the_page_does_not_offer_lists_the_valid_ones():
  with pytest.raises(CodecError, match="unknown codec 'png'; valid codecs: neural, pifs, jpeg"):
    cp.check_codec("png")


def test_the_neural_crop_is_the_whole_decode_cropped():
  image = photo_crop()
  data = cp.run(image, "neural", 60).data
  full = cp.decode_at(data, 3)
  assert full.shape == (176 * 3, 240 * 3, 3)
  for fy, fx in ((0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (0.2, 0.8)):
    box = cp.Box.around(176, 240, fy, fx)
    crop = cp.zoom_crop(data, 3, box)
    assert crop.shape == (box.size * 3, box.size * 3, 3)
    np.testing.assert_array_equal(crop, box.cut(full, 3))


def test_a_pifs_crop_reuses_the_sessions_whole_decode():
  image = photo_crop()[:64, :64]
  data = cp.run(image, "pifs", 50).data
  cache = {}
  box = cp.Box.around(64, 64, 0.5, 0.5, size=32)
  first = cp.zoom_crop(data, 2, box, cache)
  assert cache["image"].shape == (128, 128, 3)
  np.testing.assert_array_equal(cp.zoom_crop(data, 2, box, cache), first)


def test_a_zoom_larger_than_memory_is_refused_by_the_codecs_check(monkeypatch):
  image = photo_crop()
  data = cp.run(image, "neural", 50).data
  room = cp.codec("neural").decode_bytes(176, 240, 3, 1) + 1
  monkeypatch.setattr(memory, "available_bytes", lambda: room)
  with pytest.raises(CodecError, match=r"decoding at scale 8 makes a 1920x1408 image and needs "
                     r"about .* more than the .* available; the largest scale that fits is 1"):
    cp.decode_at(data, 8)
  with pytest.raises(CodecError, match="decoding at scale 8"):
    cp.zoom_crop(data, 8, cp.Box.around(176, 240, 0.5, 0.5))


def test_lanczos_keeps_the_crop_geometry():
  image = photo_crop()
  box = cp.Box.around(176, 240, 0.9, 0.1, size=40)
  assert cp.lanczos_crop(image, 5, box).shape == (200, 200, 3)


def test_a_file_no_codec_wrote_is_named():
  with pytest.raises(CodecError, match="not a file in the collage container format|magic"):
    cp.codec_for_file(b"hello, this is text")
  with pytest.raises(CodecError, match="empty"):
    cp.codec_for_file(b"")


# -- fractalize --------------------------------------------------------------------------------
def test_fractalize_fits_decodes_and_refuses_a_zoom_beyond_memory(files, monkeypatch):
  reports = []
  result = fractal.fit(files["gray"], 1, 128, 100, lambda done, total: reports.append(done))
  assert reports == [50, 100]
  assert result.stats["psnr_1x"] > 18 and result.stats["contraction"] < 0.95
  assert fractal.decode_at(result, 2).shape == (256, 256, 1)
  monkeypatch.setattr(memory, "available_bytes", lambda: memory.FIXED_BYTES)
  with pytest.raises(CodecError, match="decoding at scale 8"):
    fractal.decode_at(result, 8)
  with pytest.raises(CodecError, match="size must be one of 128, 256, 512"):
    fractal.fit(files["gray"], 1, 100)
  with pytest.raises(CodecError, match="steps must be a multiple of 50 in 50..3000"):
    fractal.fit(files["gray"], 1, 128, 120)


# -- runs -------------------------------------------------------------------------------------
def test_directories_that_are_not_runs_are_named_with_the_reason(tmp_path):
  cases = {}
  cases["missing"] = str(tmp_path / "missing")
  (tmp_path / "file").write_text("x")
  cases["file"] = str(tmp_path / "file")
  (tmp_path / "empty").mkdir()
  cases["empty"] = str(tmp_path / "empty")
  (tmp_path / "badjson").mkdir()
  (tmp_path / "badjson" / "config.json").write_text("{not json")
  cases["badjson"] = str(tmp_path / "badjson")
  (tmp_path / "fractal").mkdir()
  (tmp_path / "fractal" / "config.json").write_text(json.dumps({"task": "fractalize"}))
  cases["fractal"] = str(tmp_path / "fractal")
  (tmp_path / "fresh").mkdir()
  (tmp_path / "fresh" / "config.json").write_text(json.dumps({"task": "vdvae"}))
  cases["fresh"] = str(tmp_path / "fresh")
  expected = {
      "missing": "does not exist", "file": "is a file, not a run directory",
      "empty": "is not a run: it has no config.json", "badjson": "cannot be read",
      "fractal": "a run of task 'fractalize', which the Generate tab does not sample",
      "fresh": "has no checkpoint yet"}
  runs, errors = app.check_runs(list(cases.values()))
  assert runs == [] and len(errors) == len(cases)
  for (name, path), error in zip(cases.items(), errors):
    assert path in error and expected[name] in error, (name, error)
  assert "python -m experiments.main --config experiments/configs/vdvae.py" in errors[2]


# -- errors in the page -------------------------------------------------------------------------
def test_handlers_turn_errors_into_page_messages():
  def bad_input():
    raise inputs.InputError("that is not an image")

  def out_of_memory():
    raise MemoryError()

  def bug():
    raise KeyError("x")

  with pytest.raises(gr.Error, match="that is not an image"):
    app.shown(bad_input)()
  with pytest.raises(gr.Error, match="out of memory: choose a smaller image or a smaller zoom"):
    app.shown(out_of_memory)()
  with pytest.raises(gr.Error, match="internal error \\(please report it\\): KeyError"):
    app.shown(bug)()
