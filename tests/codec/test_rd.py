"""collage.codec.rd (one measure for every RD row), rd_compare (curves against a reference)
and rd_plot, on small crops of the embedded photographs."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from collage.codec import rd, rd_compare
from collage.codec.base import Codec, CodecError, get_codec
from collage.codec.rd_plot import plot_rows
from collage.images import load_image


@pytest.fixture(scope="module")
def two_images():
  """Two 48 x 64 RGB centre crops of the held-out embedded photographs."""
  out = []
  for name, img in rd.load_images("embedded:eval", 3, max_images=2):
    h, w = img.shape[:2]
    out.append((name, img[(h - 48) // 2:(h - 48) // 2 + 48, (w - 64) // 2:(w - 64) // 2 + 64]))
  return out


def test_measure_images_gives_rows_with_real_bytes(two_images):
  codec = get_codec("jpeg")
  rows = rd.measure_images(codec, "jpeg", 40, two_images, with_ms_ssim=False)
  assert [r["image"] for r in rows] == ["astronaut", "coffee"]
  for r, (_, img) in zip(rows, two_images):
    data = codec.compress(img, 40)
    assert set(r) == set(rd.FIELDS)
    assert r["bytes"] == len(data) > 0 and (r["height"], r["width"], r["channels"]) == (48, 64, 3)
    assert r["bpp"] == pytest.approx(8 * len(data) / (48 * 64))
    assert 20 < r["psnr"] < 45 and math.isnan(r["ms_ssim"])
    assert r["encode_s"] > 0 and r["decode_s"] > 0


def test_curve_rows_average_and_keep_each_image(two_images):
  rows = rd.measure_images(get_codec("jpeg"), "jpeg", 40, two_images, with_ms_ssim=False)
  rows += rd.measure_images(get_codec("jpeg"), "jpeg", 80, two_images, with_ms_ssim=False)
  curve = rd.curve_rows(rows)
  assert [(c["codec"], c["quality"], c["images"]) for c in curve] == [("jpeg", 40, 2),
                                                                        ("jpeg", 80, 2)]
  assert curve[0]["bpp"] == pytest.approx(np.mean([r["bpp"] for r in rows[:2]]))
  assert curve[0]["per_image"]["bytes"] == [rows[0]["bytes"], rows[1]["bytes"]]
  assert curve[1]["psnr"] > curve[0]["psnr"] and curve[1]["bpp"] > curve[0]["bpp"]
  assert "ms_ssim" not in curve[0] and "ms_ssim" not in curve[0]["per_image"]  # not measured
  assert json.loads(json.dumps(curve)) == curve  # plain JSON, no NaN


def test_repeats_keep_the_least_time_and_refuse_other_bytes(two_images):
  img = two_images[0][1]
  r = rd.measure(get_codec("webp"), 30, img, with_ms_ssim=False, repeats=3)
  assert r["bytes"] == len(get_codec("webp").compress(img, 30))

  class Drifting(Codec):
    name, codec_id = "drifting", 250

    def __init__(self):
      self.calls = 0

    def compress(self, image, quality):
      self.calls += 1
      return bytes(self.calls)

    def decompress(self, data, scale=1):
      return img

  with pytest.raises(CodecError, match="other bytes on a repeat"):
    rd.measure(Drifting(), 30, img, with_ms_ssim=False, repeats=2)


def test_load_images_from_a_folder_a_file_and_the_embedded_set(tmp_path, two_images):
  for name, img in two_images:
    Image.fromarray(img).save(tmp_path / f"{name}.png")
  folder = rd.load_images(str(tmp_path), 3)
  assert [n for n, _ in folder] == ["astronaut", "coffee"]
  assert np.array_equal(folder[1][1], two_images[1][1])
  (one,) = rd.load_images(str(tmp_path / "coffee.png"), 1, crop=32)
  assert one[0] == "coffee" and one[1].shape == (32, 32, 1)
  assert len(rd.load_images("embedded", 3)) == 17
  with pytest.raises(ValueError, match="crop=64 is larger than the image 'astronaut'"):
    rd.load_images(str(tmp_path), 3, crop=64)
  with pytest.raises(FileNotFoundError, match="no such folder or file"):
    rd.load_images(str(tmp_path / "missing"), 3)
  assert load_image(tmp_path / "coffee.png").shape == (48, 64, 3)


def _row(codec, quality, bpp, psnr, encode_s, per_image=None):
  row = {"codec": codec, "quality": quality, "bpp": bpp, "psnr": psnr, "encode_s": encode_s}
  if per_image:
    row["per_image"] = per_image
  return row


@pytest.fixture
def two_files(tmp_path):
  """A 'new' codec in one file, the reference 'pifs' (and the same 'new' run again) in the
  other: JSON as neural_codec_rd writes it."""
  a = [_row("new", 10, 0.2, 26.0, 0.1), _row("new", 50, 0.6, 30.0, 0.1)]
  b = [_row("pifs", 20, 0.1, 24.0, 0.5), _row("pifs", 60, 0.5, 28.0, 1.5),
       _row("pifs", 70, 0.9, 31.0, 2.5), _row("new", 50, 0.6, 30.0, 0.1)]
  paths = [str(tmp_path / "a.json"), str(tmp_path / "b.json")]
  for path, rows in zip(paths, (a, b)):
    with open(path, "w") as f:
      json.dump(rows, f)
  return paths


def test_compare_two_files_reads_psnr_at_rates_and_the_gap(two_files):
  rows = rd_compare.merge_curves(two_files)
  assert rd_compare.labels(rows) == ["new", "pifs"] and len(rows) == 5  # the repeat once
  result = rd_compare.compare(rows, "pifs", [0.3, 0.5, 1.0])
  assert result["new"]["psnr_at"] == {0.3: pytest.approx(27.0), 0.5: pytest.approx(29.0),
                                      1.0: None}
  # pifs at 0.2 bpp: 25; at 0.5: 28; at 0.6: 28.75 -> gaps +1.0, +1.0, +1.25 (none at 0.1
  # or 0.9, outside the new curve)
  assert [(b, round(g, 6)) for b, g in result["new"]["gaps"]] == [(0.2, 1.0), (0.5, 1.0),
                                                                  (0.6, 1.25)]
  table = rd_compare.compare_table(result, "pifs", [0.3, 0.5, 1.0])
  assert "| new | 27.00 | 29.00 | n/a | +1.00 (0.200) | +1.25 |" in table
  with pytest.raises(ValueError, match="no codec 'jpeg'"):
    rd_compare.compare(rows, "jpeg", [0.5])


def test_files_that_disagree_keep_their_own_curves(tmp_path, two_files):
  other = tmp_path / "other.json"
  other.write_text(json.dumps([_row("new", 50, 0.6, 29.0, 0.1)]))
  rows = rd_compare.merge_curves([two_files[0], str(other)])
  assert rd_compare.labels(rows) == ["new [a]", "new [other]"]


def test_speedup_and_coverage_at_equal_psnr(two_files):
  rows = rd_compare.load_rows(two_files)
  result = rd_compare.speedup(rows, "pifs")
  # 26 dB: pifs 1.0 s (halfway 24 -> 28 dB), 0.3 bpp; 30 dB: 2/3 of 28 -> 31, 2.1667 s.
  assert result[0]["speedup"] == pytest.approx(10.0)
  assert result[0]["reference_bpp"] == pytest.approx(0.3)
  assert result[1]["speedup"] == pytest.approx((1.5 + 2 / 3) / 0.1)
  assert "| new | quality 10 | 0.200 | 26.00 | 0.100 | 1.000 | 0.300 | 10.0x |" in (
      rd_compare.speedup_table(result, rows, "pifs"))
  (avg,) = rd_compare.coverage(rows, "pifs")
  # nothing reaches pifs's PSNRs above 30 dB: no speed-up there
  assert (avg["image"], avg["speedup"], avg["by"]) == ("average", 0.0, "nothing reaches it")
  assert 30 < avg["psnr"] < 30.1
  slow = rows + [_row("top", 1, 1.0, 31.0, 1.0)]
  # just above 30 dB only "top" (1 s) reaches; pifs takes 1.5 + (2/3) s there
  (avg,) = rd_compare.coverage(slow, "pifs")
  assert avg["speedup"] == pytest.approx(1.5 + 2 / 3, abs=0.01) and avg["by"] == "top, 1"
  assert rd_compare.coverage(slow, "pifs", prefix="top")[0]["speedup"] == pytest.approx(0.5)
  with pytest.raises(ValueError, match="at least two 'jpeg' rows"):
    rd_compare.speedup(rows, "jpeg")


def test_coverage_per_image(two_files):
  per = lambda p, t: {"image": ["x", "y"], "psnr": p, "encode_s": t}  # noqa: E731
  rows = [_row("pifs", 20, 0.1, 24.0, 0.5, per([23.0, 25.0], [0.4, 0.6])),
          _row("pifs", 60, 0.5, 28.0, 1.5, per([27.0, 29.0], [1.2, 1.8])),
          _row("new", 10, 0.3, 28.5, 0.2, per([28.0, 29.0], [0.2, 0.2]))]
  out = rd_compare.coverage(rows, "pifs")
  assert [o["image"] for o in out] == ["average", "x", "y"]
  assert [o["speedup"] for o in out] == pytest.approx([2.5, 2.0, 3.0])


def test_plot_rows_writes_a_png(tmp_path, two_files):
  path = plot_rows(rd_compare.merge_curves(two_files), str(tmp_path / "rd.png"), "t")
  assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
