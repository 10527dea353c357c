"""The neural codec's benchmark tools (benchmarks/neural_codec_*.py) pass JSON rows to each
other: rd over a folder -> compare, speed and plot, each run as its module's main."""

import json

import pytest
from PIL import Image

from benchmarks import neural_codec_compare, neural_codec_plot, neural_codec_rd, neural_codec_speed
from collage.codec.rd import load_images


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """Two 48 x 64 crops of the held-out embedded photographs, as PNG files."""
  path = tmp_path_factory.mktemp("images")
  for name, img in load_images("embedded:eval", 3, max_images=2):
    h, w = img.shape[:2]
    Image.fromarray(img[(h - 48) // 2:(h - 48) // 2 + 48,
                        (w - 64) // 2:(w - 64) // 2 + 64]).save(path / f"{name}.png")
  return path


@pytest.fixture(scope="module")
def row_files(folder, tmp_path_factory):
  out = tmp_path_factory.mktemp("rows")
  paths = {}
  for codec, qualities in (("jpeg", "10,50,90"), ("webp", "20,60")):
    paths[codec] = str(out / f"{codec}.json")
    neural_codec_rd.main(["--images", str(folder), "--codec", codec, "--qualities", qualities,
                          "--repeats", "2", "--out", paths[codec]])
  return paths


def test_rd_writes_curve_rows_from_real_bytes(row_files, capsys):
  with open(row_files["jpeg"]) as f:
    rows = json.load(f)
  assert [(r["codec"], r["quality"], r["images"]) for r in rows] == [
      ("jpeg", 10, 2), ("jpeg", 50, 2), ("jpeg", 90, 2)]
  for r in rows:
    sizes = r["per_image"]["bytes"]
    assert r["per_image"]["image"] == ["astronaut", "coffee"] and min(sizes) > 0
    assert r["bpp"] == pytest.approx(sum(8 * b / (48 * 64) for b in sizes) / 2)


def test_neural_options_are_refused_for_another_codec(folder):
  with pytest.raises(SystemExit, match="options of the neural codec, not 'jpeg'"):
    neural_codec_rd.main(["--images", str(folder), "--codec", "jpeg", "--qualities", "50",
                          "--downscale", "2"])


def test_compare_reads_two_files(row_files, tmp_path, capsys):
  out = tmp_path / "compare.json"
  result = neural_codec_compare.main(["--inputs", f"{row_files['webp']},{row_files['jpeg']}",
                                      "--reference", "jpeg", "--out", str(out)])
  assert set(result) == {"webp", "jpeg"} and all(g == 0 for _, g in result["jpeg"]["gaps"])
  assert "| webp |" in capsys.readouterr().out
  assert set(json.loads(out.read_text())) == {"webp", "jpeg"}
  with pytest.raises(SystemExit, match="no codec 'pifs'"):
    neural_codec_compare.main(["--inputs", row_files["jpeg"]])


def test_speed_against_a_reference_at_equal_psnr(row_files, capsys):
  inputs = f"{row_files['webp']},{row_files['jpeg']}"
  rows = neural_codec_speed.main(["speedup", "--inputs", inputs, "--reference", "jpeg"])
  assert [r["codec"] for r in rows] == ["webp", "webp"]
  for r in rows:
    if "speedup" in r:
      assert r["speedup"] == pytest.approx(r["reference_encode_s"] / r["encode_s"])
  cover = neural_codec_speed.main(["coverage", "--inputs", inputs, "--reference", "jpeg"])
  assert [c["image"] for c in cover] == ["average", "astronaut", "coffee"]
  assert "worst speed-up over jpeg's PSNR span" in capsys.readouterr().out


def test_plot_writes_the_png(row_files, tmp_path):
  out = str(tmp_path / "rd.png")
  neural_codec_plot.main(["--inputs", f"{row_files['jpeg']},{row_files['webp']}", "--out", out,
                          "--exclude", "webp"])
  assert open(out, "rb").read(4) == b"\x89PNG"
  with pytest.raises(SystemExit, match="no such codec label"):
    neural_codec_plot.main(["--inputs", row_files["jpeg"], "--exclude", "avif", "--out", out])
