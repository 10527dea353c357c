"""JPEG's transform in jnp against libjpeg itself (through jpeglib): tables, coefficients, pixels."""

import functools
import os

import jax
import numpy as np
import pytest
from PIL import Image

from collage.data import embedded
from collage.data import jpeg_coefficients as jc
from collage.ops import jpeg
from third_party.jpeg import annex_k

# Jitted once per shape: eager jnp would compile every small op separately.
_encode = jax.jit(jpeg.encode_pixels, static_argnums=(1, 2))
_decode = jax.jit(jpeg.decode_pixels, static_argnums=(1,))

@functools.lru_cache(maxsize=1)
def _photographs() -> dict[str, np.ndarray]:
  """The embedded photographs every clone has (scikit-image's), cropped to multiples of 16."""
  return {n: im[:im.shape[0] // 16 * 16, :im.shape[1] // 16 * 16]
          for n, im in embedded.embedded_images(3)}


def _smooth_image(size=64, seed=0):
  """A smooth colour image with some edges: uint8 [size, size, 3]."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size] / size
  img = np.stack([128 + 100 * np.sin(6 * xx + 2 * yy), 128 + 90 * np.cos(5 * yy),
                  128 + 80 * np.sin(4 * (xx + yy))], -1)
  img[size // 4:size // 2, size // 3:2 * size // 3] = [230, 40, 60]
  return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def test_zigzag_is_figure_a6_and_generalizes():
  np.testing.assert_array_equal(jpeg.zigzag(8), annex_k.ZIGZAG)
  for b in (16, 32):
    z = jpeg.zigzag(b)
    assert sorted(z.tolist()) == list(range(b * b))
    assert z[:3].tolist() == [0, 1, b]


@pytest.mark.parametrize("quality", [10, 50, 75, 95, 100])
def test_tables_are_the_ones_libjpeg_writes(quality):
  _, tables = jc.coefficients_from_pixels(_smooth_image(16), quality)
  np.testing.assert_array_equal(tables[0], jpeg.quant_zigzag(quality, False))
  np.testing.assert_array_equal(tables[1], jpeg.quant_zigzag(quality, True))
  if quality == 50:  # scale 100%: Annex K's tables as printed
    np.testing.assert_array_equal(jpeg.quant_table(50), np.array(annex_k.LUMINANCE))
    np.testing.assert_array_equal(jpeg.quant_table(50, True), np.array(annex_k.CHROMINANCE))


@pytest.mark.parametrize("quality", [25, 50, 75, 95])
def test_in_jax_transform_agrees_with_libjpeg_on_photographs(quality):
  """At least 99.5% of coefficients equal (the README's figure), none off by more than one, in
  every component, colour 4:2:0 and gray, on three embedded photographs (odd sizes included)."""
  for name in ("astronaut", "coffee", "chelsea"):
    rgb = _photographs()[name]
    for pixels in (rgb, rgb[..., :1].copy()):
      ref, _ = jc.coefficients_from_pixels(pixels, quality)
      ours = _encode(pixels, quality, 8)
      assert len(ref) == len(ours) == (3 if pixels.shape[-1] == 3 else 1)
      for a, b in zip(ref, ours):
        diff = np.abs(a - np.asarray(b))
        assert diff.max() <= 1, name
        assert (diff == 0).mean() >= 0.995, (name, quality, (diff == 0).mean())


@pytest.mark.parametrize("channels", [3, 1])
def test_a_written_jpg_decodes_in_pillow_to_our_inverse_transform(tmp_path, channels):
  img = _smooth_image(64)[..., :channels].copy()
  comps, tables = jc.coefficients_from_pixels(img, 75)
  path = tmp_path / "x.jpg"
  jc.write_jpeg(path, comps, tables)
  back, back_tables = jc.read_coefficients(path)  # writing coefficients is lossless
  for a, b in zip(back + back_tables, comps + tables):
    np.testing.assert_array_equal(a, b)
  pil = np.asarray(Image.open(path)).reshape(64, 64, channels).astype(np.int32)
  ours = np.round(np.asarray(_decode(comps, 75)) * 255).astype(np.int32)
  diff = np.abs(pil - ours)
  # libjpeg's integer IDCT rounds differently from the exact one: a level or two, rarely.
  assert diff.max() <= 3 and diff.mean() < 0.25, (diff.max(), diff.mean())


def test_larger_blocks_round_trip_closely():
  img = _smooth_image(64)
  for b in (16, 32):
    comps = _encode(img, 90, b)
    assert comps[0].shape == (64 // b, 64 // b, b * b) and comps[1].shape[-1] == b * b
    out = np.asarray(_decode(comps, 90))
    assert np.abs(out * 255 - img).mean() < 10  # noise (sigma 6) and 4:2:0 chroma are lost


def test_bad_inputs_are_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="multiples of 16"):
    jpeg.encode_pixels(np.zeros((24, 32, 3), np.uint8), 50)
  with pytest.raises(ValueError, match="1..100"):
    jpeg.quant_table(0)
  with pytest.raises(ValueError, match="valid: \\(8, 16, 32\\)"):
    jpeg.zigzag(12)
  bad = tmp_path / "bad.jpg"
  bad.write_bytes(b"not a jpeg")
  with pytest.raises(ValueError, match="not a readable JPEG"):
    jc.read_coefficients(bad)


def test_entropy_coded_bytes_is_the_scan_of_an_optimized_file(tmp_path):
  comps, tables = jc.coefficients_from_pixels(_smooth_image(64), 50)
  n = jc.entropy_coded_bytes(comps, tables)
  jc.write_jpeg(tmp_path / "o.jpg", comps, tables, optimize=True)
  jc.write_jpeg(tmp_path / "s.jpg", comps, tables)
  size = os.path.getsize(tmp_path / "o.jpg")
  assert 0 < n < size - 100  # headers (tables, Huffman codes) are excluded
  assert size < os.path.getsize(tmp_path / "s.jpg")  # optimized Huffman tables are smaller
