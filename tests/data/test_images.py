"""Reading image files: modes, corrupt files, folders, channel conversion."""

import os

import numpy as np
import pytest
from PIL import Image

from collage.data import images


def _save(path, array, mode=None, **kw):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array, mode=mode).save(path, **kw)
  return str(path)


def test_gray_and_rgb_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  gray = rng.integers(0, 256, (5, 7), dtype=np.uint8)
  rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
  g = images.load_image(_save(tmp_path / "g.png", gray))
  c = images.load_image(_save(tmp_path / "c.png", rgb))
  assert g.shape == (5, 7, 1) and g.dtype == np.uint8
  np.testing.assert_array_equal(g[..., 0], gray)
  np.testing.assert_array_equal(c, rgb)


def test_palette_and_opaque_rgba_are_expanded(tmp_path):
  rgb = np.zeros((4, 4, 3), np.uint8)
  rgb[:2] = (255, 0, 0)
  pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
  pal.save(tmp_path / "p.png")
  np.testing.assert_array_equal(images.load_image(tmp_path / "p.png"), rgb)
  rgba = np.concatenate([rgb, np.full((4, 4, 1), 255, np.uint8)], -1)
  np.testing.assert_array_equal(images.load_image(_save(tmp_path / "a.png", rgba)), rgb)


def test_transparent_and_16bit_are_rejected_with_modes_listed(tmp_path):
  rgba = np.zeros((4, 4, 4), np.uint8)  # alpha 0: transparent
  path = _save(tmp_path / "t.png", rgba)
  with pytest.raises(ValueError, match="transparent") as e:
    images.load_image(path)
  assert path in str(e.value) and "RGB" in str(e.value)
  deep = Image.fromarray(np.full((4, 4), 40000, np.uint16))
  deep.save(tmp_path / "d.png")
  with pytest.raises(ValueError, match="supported modes") as e:
    images.load_image(tmp_path / "d.png")
  assert "d.png" in str(e.value)


def test_corrupt_truncated_and_missing_files_name_the_file(tmp_path):
  bad = tmp_path / "bad.png"
  bad.write_bytes(b"not an image at all")
  with pytest.raises(ValueError, match="bad.png"):
    images.load_image(bad)
  good = _save(tmp_path / "full.jpg", np.full((64, 64, 3), 7, np.uint8))
  cut = tmp_path / "cut.jpg"
  cut.write_bytes(open(good, "rb").read()[:200])
  with pytest.raises(ValueError, match="cut.jpg"):
    images.load_image(cut)
  with pytest.raises(FileNotFoundError, match="nope.png"):
    images.load_image(tmp_path / "nope.png")


def test_image_paths_recursive_any_case_sorted(tmp_path):
  px = np.zeros((2, 2, 3), np.uint8)
  _save(tmp_path / "b.PNG", px)
  _save(tmp_path / "sub" / "a.JpEg", px, format="JPEG")
  _save(tmp_path / "c.jpg", px)
  (tmp_path / "notes.txt").write_text("x")
  names = [os.path.relpath(p, tmp_path) for p in images.image_paths(tmp_path)]
  assert names == ["b.PNG", "c.jpg", os.path.join("sub", "a.JpEg")]


def test_image_paths_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing"):
    images.image_paths(tmp_path / "missing")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="no image file"):
    images.image_paths(tmp_path / "empty")


def test_to_channels_bt601_luma():
  rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
  gray = images.to_channels(rgb, 1)
  assert gray.shape == (1, 4, 1)
  np.testing.assert_array_equal(gray[0, :, 0], [76, 150, 29, 18])  # 0.299/0.587/0.114
  back = images.to_channels(gray, 3)
  assert back.shape == (1, 4, 3) and np.all(back == gray)
  with pytest.raises(ValueError, match="channels"):
    images.to_channels(rgb, 2)
