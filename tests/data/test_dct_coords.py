"""Images as the DCTransformer's coordinate lists: fitting to a square, sequences from libjpeg
and from the in-JAX transform, back to pixels and to a .jpg that holds the same coefficients,
conditioning prefixes, JPEG files cropped in whole cells, clear errors."""

import ml_collections
import numpy as np
import pytest

from collage.data import dct_coords
from collage.data import jpeg_coefficients as jc
from collage.ops import sparse_dct


def _config(channels=1, size=16, transform="libjpeg", block=8, order="interleaved"):
  c = ml_collections.ConfigDict()
  c.data = ml_collections.ConfigDict(dict(size=size, channels=channels, quality=75, block=block,
                                          transform=transform))
  c.model = ml_collections.ConfigDict(dict(order=order, max_len=1024, max_value=255,
                                           truncate=False, clip_values=False))
  return c


def _image(h, w, c, seed=0):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w]
  smooth = (128 + 60 * np.sin(x / 3.0) * np.cos(y / 4.0))[..., None] + 20 * np.arange(c)
  return np.clip(smooth + rng.normal(0, 4, (h, w, c)), 0, 255).astype(np.uint8)


def test_fit_image_pads_small_images_and_crops_large_ones():
  small = np.full((5, 9, 1), 7, np.uint8)
  fitted = dct_coords.fit_image(small, 12, None)
  assert fitted.shape == (12, 12, 1)
  assert fitted.sum() == 7 * 5 * 9 and fitted[3:8, 1:10].min() == 7  # centred
  big = _image(20, 30, 3)
  np.testing.assert_array_equal(dct_coords.fit_image(big, 8, None), big[6:14, 11:19])
  crops = {dct_coords.fit_image(big, 8, np.random.default_rng(i)).tobytes() for i in range(8)}
  assert len(crops) > 1  # random with a generator


@pytest.mark.parametrize("channels", [1, 3])
def test_a_sequence_decodes_to_the_coefficients_and_the_jpg_holds_them(tmp_path, channels):
  coder = dct_coords.Coder(_config(channels))
  pixels = _image(16, 16, channels)
  seq = coder.sequence(pixels)
  n = int(seq["length"])
  assert 0 < n <= coder.capacity and seq["ranks"].shape == (coder.capacity,)
  assert seq["ranks"][n - 1] == coder.layout.channels  # end-of-sequence counted in the length
  comps = coder.components(pixels)
  image = np.asarray(sparse_dct.decode({k: seq[k] for k in ("ranks", "positions", "values")},
                                       coder.layout))
  np.testing.assert_array_equal(image, np.asarray(sparse_dct.dct_image(comps)))
  # Back to pixels: close to the input (a JPEG round trip at quality 75).
  back = np.asarray(coder.pixels(image))
  assert back.shape == (16, 16, channels)
  assert np.abs(back * 255.0 - pixels).mean() < 8.0
  path = str(tmp_path / "s.jpg")
  coder.write_jpeg(path, image)
  read, tables = jc.read_coefficients(path)
  np.testing.assert_array_equal(np.asarray(sparse_dct.dct_image(read)), image)
  for a, b in zip(tables, coder.tables()):
    np.testing.assert_array_equal(a, b)
  assert coder.jpeg_bits(pixels) > 0


def test_the_in_jax_transform_agrees_with_libjpeg_nearly():
  pixels = _image(16, 16, 1)
  ours = dct_coords.Coder(_config(transform="jax")).components(pixels)
  theirs = dct_coords.Coder(_config()).components(pixels)
  assert all(np.mean(np.asarray(a) != np.asarray(b)) < 0.05 for a, b in zip(ours, theirs))


def test_prefix_of_keeps_the_entries_below_a_rank():
  coder = dct_coords.Coder(_config(channels=3))
  seq = coder.sequence(_image(16, 16, 3))
  dc = coder.layout.dc_ranks()
  prefix = dct_coords.prefix_of(seq, dc, coder.layout.channels)
  n = int(prefix["length"])
  assert 0 < n < int(seq["length"])
  for k in ("ranks", "positions", "values"):
    np.testing.assert_array_equal(prefix[k][:n], seq[k][:n])
  assert np.all(prefix["ranks"][:n] < dc) and np.all(prefix["ranks"][n:] == coder.layout.channels)
  assert np.all(prefix["positions"][n:] == 0) and np.all(prefix["values"][n:] == 0)


def test_train_elements_from_images_and_from_jpeg_files(tmp_path):
  coder = dct_coords.Coder(_config())
  rng = np.random.default_rng(0)
  image = _image(24, 24, 1)
  seq = dct_coords.train_element({"image": image}, rng, coder=coder, flip=False)
  assert set(seq) == {"ranks", "positions", "values", "length"}
  comps, tables = jc.coefficients_from_pixels(_image(32, 40, 1), 75)
  element = {"components": comps, "tables": tables, "name": "a.jpg"}
  cropped = dct_coords.fit_components(element, coder, None)
  assert cropped[0].shape[:2] == coder.layout.grid
  from_file = dct_coords.train_element(element, rng, coder=coder, flip=True)
  assert int(from_file["length"]) > 0
  with pytest.raises(ValueError, match="smaller than data.size=16"):
    dct_coords.fit_components({**element, "components": (comps[0][:1, :1],)}, coder, None)
  with pytest.raises(ValueError, match="a gray JPEG, but data.channels=3"):
    dct_coords.fit_components(element, dct_coords.Coder(_config(channels=3)), None)


def test_mistakes_are_clear_errors():
  with pytest.raises(ValueError, match="valid: libjpeg, jax"):
    dct_coords.Coder(_config(transform="pil"))
  with pytest.raises(ValueError, match="needs data.block=8"):
    dct_coords.Coder(_config(size=32, block=16))
