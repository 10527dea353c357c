"""The demo as a person uses it, in a real browser: the system's headless Chromium driven by
Playwright (no browser download). Pick a photograph, move the quality slider, press Compress,
read the bpp and PSNR the page shows, change the zoom and measure the zoomed picture, upload
files that are not what the codecs take and read the messages, fit a collage, and see why a
run directory is refused; a screenshot of each tab along the way.

Skipped only where no Chromium executable is found (``.ci/run`` installs Debian's)."""

import os

import pytest

from apps.demo import compress as cp, generate, inputs
from apps.demo.screenshots import DemoPage, find_chromium
from collage.codec import memory
from tests.apps.conftest import serving

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium executable found (Debian: "
                       "apt-get install chromium; or set $COLLAGE_CHROMIUM)"),
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'",
                               "ignore:The copy keyword is deprecated"),
]
PHOTO = "coins"  # 303 x 384 gray: a quick compress


@pytest.fixture(scope="module")
def not_a_run(tmp_path_factory):
  return str(tmp_path_factory.mktemp("runs") / "typo_in_the_name")


@pytest.fixture(scope="module")
def page(not_a_run):
  from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel
  runs, errors = [], []
  try:
    runs.append(generate.inspect_run(not_a_run))
  except generate.RunError as e:
    errors.append(str(e))
  with serving(runs, errors) as url, sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
    try:
      tab = browser.new_page(viewport={"width": 1280, "height": 1000})
      yield DemoPage(tab, url, timeout_ms=60_000)
    finally:
      browser.close()


def test_compress_shows_the_numbers_of_the_file_and_zooms(page, tmp_path):
  before = page.src("compress-original")
  page.pick("compress-photo", PHOTO)
  assert page.image_size("compress-original", before)[:2] == (384, 303)
  page.slider("compress-quality", 35)
  page.press("compress-button")
  width, height, _ = page.image_size("compress-decoded")
  assert (width, height) == (384, 303)
  page.image_size("compress-webp")
  page.idle()
  rows = {r["name"]: r for r in page.table("compress-stats")}
  assert list(rows) == ["Neural Collage", "JPEG, same size", "WebP, same size"]
  expected = cp.run(inputs.photo(PHOTO), "neural", 35).stats
  shown = rows["Neural Collage"]
  assert shown["quality"] == "35"
  assert int(shown["bytes"].replace(",", "")) == expected["bytes"]
  assert float(shown["bpp"]) == pytest.approx(expected["bpp"], abs=5e-4)
  assert float(shown["PSNR (dB)"]) == pytest.approx(expected["psnr"], abs=5e-3)
  for other in ("JPEG, same size", "WebP, same size"):  # the nearest size its quality reaches
    assert abs(int(rows[other]["bytes"].replace(",", "")) - expected["bytes"]) < 0.2 * expected[
        "bytes"], rows[other]
  page.shot(str(tmp_path / "compress.png"))

  previous = page.src("compress-zoom-own")
  page.slider("compress-zoom", 6)
  own = page.image_size("compress-zoom-own", previous)
  page.idle()
  assert own[:2] == (cp.ZOOM_CROP * 6, cp.ZOOM_CROP * 6)
  assert page.image_size("compress-zoom-jpeg")[:2] == (cp.ZOOM_CROP * 6, cp.ZOOM_CROP * 6)
  assert "at 6x" in page.page.inner_text("#compress-zoom-own")


def test_bad_uploads_show_their_message_and_the_page_goes_on(page, files):
  for kind, message in (("text", "'notes.txt' is not an image file"),
                        ("deep", "'scan16.png' has 16-bit samples"),
                        ("huge", "over the demo's limit of 16.0 MP")):
    page.upload("compress-upload", files[kind])
    assert message in page.error(message), kind
  page.upload("compress-upload", files["photo"])
  page.image_size("compress-original")
  page.idle()
  previous = page.src("compress-decoded")
  page.press("compress-button")
  assert page.image_size("compress-decoded", previous)[:2] == (240, 176)
  page.idle()
  assert page.table("compress-stats")[0]["name"] == "Neural Collage"


def test_a_zoom_beyond_memory_shows_the_codecs_refusal(page, monkeypatch):
  monkeypatch.setattr(memory, "available_bytes", lambda: memory.FIXED_BYTES)
  page.slider("compress-zoom", 8)
  assert "needs about" in page.error("decoding at scale 8")


def test_fractalize_shows_the_iterations_and_decodes_at_the_zoom(page, tmp_path):
  page.tab("Fractalize")
  page.radio("fractal-size", "128")
  page.slider("fractal-steps", 100)
  page.press("fractal-button")
  page.image_size("fractal-gif")
  assert page.src("fractal-gif").endswith(".gif")
  assert page.image_size("fractal-zoomed")[:2] == (512, 512)
  page.idle()
  row = page.table("fractal-stats")[0]
  assert row["size"] == "128" and row["Adam steps"] == "100"
  assert float(row["PSNR at 1x (dB)"]) > 15
  page.shot(str(tmp_path / "fractalize.png"))
  previous = page.src("fractal-zoomed")
  page.slider("fractal-zoom", 2)
  assert page.image_size("fractal-zoomed", previous)[:2] == (256, 256)


def test_generate_names_the_directory_that_is_not_a_run(page, not_a_run, tmp_path):
  page.tab("Generate")
  text = page.page.inner_text("#generate-errors")
  assert not_a_run in text and "does not exist" in text
  assert "python -m experiments.main --config experiments/configs/vdvae.py" in (
      page.page.inner_text("#generate-none"))
  page.shot(str(tmp_path / "generate.png"))
  assert os.path.getsize(tmp_path / "generate.png") > 0
