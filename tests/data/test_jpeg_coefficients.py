"""A folder of JPEG files as a dataset of coefficients (no decoding), and conditioning inputs."""

import numpy as np
import pytest

from collage import images
from collage.data import dct_coords
from collage.data import jpeg_coefficients as jc
from experiments.configs import dctransformer as dct_config
from experiments.tasks import dctransformer as dct_task


def _image(h, w, seed):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  base = np.stack([120 + 80 * np.sin(xx / 7 + seed), 100 + 60 * np.cos(yy / 5),
                   140 + 50 * np.sin((xx + yy) / 9)], -1)
  return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def _config(source, **model):
  c = dct_config.get_config("photos64")
  c.data.source, c.data.size, c.data.eval_images = source, 32, 4
  c.model.max_len, c.model.chunk = 1024, 128
  c.model.dim, c.model.encoder_layers, c.model.decoder_layers = 16, 1, 1
  for k, v in model.items():
    c.model[k] = v
  return c


def test_a_folder_of_jpegs_gives_the_coefficients_libjpeg_stored(tmp_path):
  pictures = [_image(48, 64, s) for s in range(2)]
  for i, p in enumerate(pictures):
    comps, tables = jc.coefficients_from_pixels(p, 50)
    jc.write_jpeg(tmp_path / f"{i}.jpg", comps, tables)
  task = dct_task.DCTransformerTask(_config(f"jpegs:{tmp_path}"))
  evals = task.eval_elements()
  assert len(evals) == 2
  for p, e in zip(pictures, evals):
    # The central 32x32 crop of whole 16x16 cells: rows 0..32, columns 16..48.
    want = task.coder.sequence(np.ascontiguousarray(p[0:32, 16:48]))
    for k in ("ranks", "positions", "values", "length"):
      np.testing.assert_array_equal(e[k], want[k])
    assert e["jpeg_bits"] > 0
  batch = next(task.dataset("train", seed=0, process_index=0, process_count=1, batch_size=2))
  assert batch["ranks"].shape == (2, 1024) and np.all(batch["length"] > 1)


def test_jpeg_folder_mistakes_are_clear(tmp_path):
  with pytest.raises(NotADirectoryError, match="does not exist"):
    jc.JpegFolderSource(tmp_path / "missing")
  with pytest.raises(ValueError, match="no .jpg"):
    jc.JpegFolderSource(tmp_path)
  gray = _image(32, 32, 0)[..., :1].copy()
  comps, tables = jc.coefficients_from_pixels(gray, 50)
  jc.write_jpeg(tmp_path / "g.jpg", comps, tables)
  with pytest.raises(ValueError, match="a gray JPEG, but data.channels=3"):
    dct_task.DCTransformerTask(_config(f"jpegs:{tmp_path}")).eval_elements()


def test_an_input_image_gives_the_upsampling_and_colorization_prefixes(tmp_path):
  path = str(tmp_path / "in.png")
  images.save_png(path, _image(64, 64, 3) / 255.0)
  up = dct_task.DCTransformerTask(dct_config.get_config("upsample"))
  prefix = up.condition_prefix(path)
  n = int(prefix["length"])
  assert n > 0 and np.all(prefix["ranks"][:n] < 6)  # the DC of Y00, Y01, Y10, Y11, Cb, Cr
  assert np.all(prefix["ranks"][n:] == up.coder.layout.channels)
  color = dct_task.DCTransformerTask(dct_config.get_config("colorize"))
  prefix = color.condition_prefix(path)
  n = int(prefix["length"])
  assert n > 0 and np.all(prefix["ranks"][:n] < 256)  # every luma channel, no chroma
  full = color.coder.sequence(dct_coords.fit_image(images.to_channels(images.load_image(path), 3),
                                                 64, None))
  assert np.all(full["ranks"][n:int(full["length"]) - 1] >= 256)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    up.condition_prefix(str(tmp_path / "nope.png"))
