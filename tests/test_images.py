"""Reading image files: modes, corrupt files, folders, channel conversion."""

import io
import os

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from collage import images


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


def test_transparent_is_rejected_with_modes_listed(tmp_path):
  rgba = np.zeros((4, 4, 4), np.uint8)  # alpha 0: transparent
  path = _save(tmp_path / "t.png", rgba)
  with pytest.raises(ValueError, match="transparent") as e:
    images.load_image(path)
  assert path in str(e.value) and "RGB" in str(e.value)


def _pnm(magic: bytes, maxval: int, array: np.ndarray) -> bytes:
  h, w = array.shape[:2]
  dtype = ">u2" if maxval > 255 else "u1"
  return magic + f"\n{w} {h}\n{maxval}\n".encode() + array.astype(dtype).tobytes()


_RNG = np.random.default_rng(0)
_U16 = lambda *shape: _RNG.integers(0, 65536, shape).astype(np.uint16)  # noqa: E731
# name -> (file bytes, what the message must say). Every image with more than 8 bits per
# sample, whatever its layout: Pillow reads some as "I;16" / "I" / "F", and cuts 16-bit RGB(A)
# and gray + alpha silently to 8 bits, which the loader must see through.
DEEP = {
    "gray16.png": (lambda: imagecodecs.png_encode(_U16(4, 5)), "16-bit samples (gray, PNG"),
    "rgb16.png": (lambda: imagecodecs.png_encode(_U16(4, 5, 3)), "16-bit samples (RGB, PNG"),
    "rgba16.png": (lambda: imagecodecs.png_encode(np.full((4, 5, 4), 65535, np.uint16)),
                   "16-bit samples (RGBA, PNG"),
    "graya16.png": (lambda: imagecodecs.png_encode(np.full((4, 5, 2), 65535, np.uint16)),
                    "16-bit samples (gray + alpha, PNG"),
    "int32.tif": (lambda: _pillow_bytes(np.arange(20, dtype=np.int32).reshape(4, 5) << 12,
                                        "TIFF"), "32-bit samples (gray, TIFF"),
    "float.tif": (lambda: _pillow_bytes(np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5),
                                        "TIFF"), "float samples (gray, TIFF"),
    "rgb16.ppm": (lambda: _pnm(b"P6", 65535, _U16(4, 5, 3)), "16-bit samples (RGB, PPM"),
    "gray10.pgm": (lambda: _pnm(b"P5", 1023, _U16(4, 5) % 1024), "10-bit samples (gray, PPM"),
}


def _pillow_bytes(array: np.ndarray, fmt: str) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format=fmt)
  return buf.getvalue()


@pytest.mark.parametrize("name", sorted(DEEP))
def test_every_deep_image_is_rejected_with_a_conversion_command(tmp_path, name):
  make, says = DEEP[name]
  path = tmp_path / name
  path.write_bytes(make())
  with pytest.raises(ValueError) as e:
    images.load_image(path)
  message = str(e.value)
  assert says in message, message
  assert str(path) in message and "only 8-bit images are read" in message
  assert f"magick {path} -depth 8 {tmp_path / name.split('.')[0]}_8bit.png" in message


def test_eight_bit_pnm_with_a_small_maxval_is_read(tmp_path):
  path = tmp_path / "small_maxval.ppm"
  path.write_bytes(_pnm(b"P6", 100, np.full((2, 3, 3), 100, np.uint8)))
  np.testing.assert_array_equal(images.load_image(path), np.full((2, 3, 3), 255, np.uint8))


def test_paths_that_are_not_image_files_say_what_they_are(tmp_path):
  with pytest.raises(IsADirectoryError, match="is a directory, not a file"):
    images.load_image(tmp_path)
  os.symlink(tmp_path / "nowhere.png", tmp_path / "link.png")
  with pytest.raises(FileNotFoundError, match="symbolic link to .*nowhere.png"):
    images.load_image(tmp_path / "link.png")
  os.mkfifo(tmp_path / "pipe.png")
  with pytest.raises(ValueError, match="not a regular file"):
    images.load_image(tmp_path / "pipe.png")
  _save(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
  with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
    images.image_paths(tmp_path / "a.png")


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


def test_captioned_enlarges_by_whole_pixels_and_writes_the_caption_below():
  rng = np.random.default_rng(0)
  grid = rng.random((100, 100, 1)).astype(np.float32)
  out = images.captioned(grid, "step 7: 4 samples, seed 0; temperature=0.85")
  assert out.shape[1] == 600 and out.shape[0] > 600  # 6x: the first whole zoom >= 512 px
  np.testing.assert_array_equal(out[:600:6, ::6], grid)  # nearest neighbour
  np.testing.assert_array_equal(out[6:12, 12:18], np.full((6, 6, 1), grid[1, 2, 0]))
  assert images.captioned(grid[:28, :28], "x").shape[1] == 28 * 8  # at most 8x
  strip = out[600:]
  assert strip.min() < 0.1 and strip.max() == 1.0  # dark text on white
  wide = images.captioned(np.ones((10, 800, 3), np.float32), "x")
  assert wide.shape[1] == 800 and wide.shape[2] == 3  # already wide enough: not enlarged
