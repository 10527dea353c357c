"""The neural codec's per-tile model choice (:mod:`collage.codec.neural_mix`): every tile
takes its cheapest model or quality, and the file decodes bit-exactly."""

import numpy as np
import pytest
from PIL import Image

from collage.codec import cli, container, neural, neural_format, neural_mix, neural_quality
from collage.metrics.rd import rd_cost
from tests.codec.neural_helpers import halves


def test_mix_picks_the_cheapest_model_per_tile(models):
  """mix=True: each tile takes the model of least bits + lam * 255^2 * SSE / C, so the file's
  real rate-distortion cost is no worse than that of either model alone (plus the choice)."""
  mixer = neural.NeuralCollageCodec(model=models, mix=True)
  for c in (3, 1):
    img = halves(48, 64, c, seed=7)
    quality = 60
    setting = mixer.setting(quality)
    lam = setting.lam
    costs, _ = neural_mix.tile_costs(img, setting)
    code = mixer.encode_code(img, quality)
    chosen = np.array([mixer.models.index(code.models[k]) for k in code.choice])
    np.testing.assert_array_equal(chosen, np.argmin(costs, axis=0))
    data = mixer.compress(img, quality)
    out = mixer.decompress(data)
    np.testing.assert_array_equal(out, mixer.reconstruct(code, 48, 64, c))

    def real_cost(data, out):
      sse = np.sum((out.astype(np.float64) - img) ** 2) / 255.0 ** 2
      return rd_cost(8 * len(data), sse, lam, c)

    mixed = real_cost(data, out)
    for m in mixer.models:
      alone = neural.NeuralCollageCodec(model=m.directory)
      single = alone.compress(img, quality)
      # Allowance: the version-2 header (one more fingerprint) and <= 1 bit per tile.
      assert mixed <= real_cost(single, alone.decompress(single)) + 8 * 10 + costs.shape[1]


def test_variable_rate_mix_picks_a_quality_per_tile(vmodel):
  """With a variable-rate model, mix chooses each tile's quality among MIX_QUALITIES by the
  rate-distortion cost at the image quality's lam (a version-4 file), decoded bit-exactly."""
  codec = neural.NeuralCollageCodec(model=vmodel, mix=True)
  (m,) = codec.models
  img = halves(32, 64, 3)
  setting = codec.setting(50)
  lam = setting.lam
  assert lam == pytest.approx(m.level_lam(50))
  costs, codes = neural_mix.tile_costs(img, setting)
  assert costs.shape == (len(neural_quality.MIX_QUALITIES), 8)
  code = codec.encode_code(img, 50)
  assert set(code.qualities) <= set(neural_quality.MIX_QUALITIES) and len(code.qualities) >= 1
  best = np.argmin(costs, axis=0)  # every tile takes its cheapest quality
  for i, k in enumerate(best):
    entry = code.qualities.index(neural_quality.MIX_QUALITIES[k])
    assert code.choice[i] == entry
  data = codec.compress(img, 50)
  if len(code.qualities) > 1:
    assert container.unpack(data)[1][0] == neural_format.RATE_MIXED_VERSION
  dec, _ = codec.decode_code(data)
  assert dec.qualities == code.qualities
  np.testing.assert_array_equal(dec.choice, code.choice)
  np.testing.assert_array_equal(codec.decompress(data), codec.reconstruct(code, 32, 64, 3))
  shown = codec.describe(data)["quality"]  # one quality used: a version-3 file
  assert shown.startswith("per tile among") or shown.isdigit()


def test_shipped_models_mix_per_tile():
  """With the shipped models, flat tiles and detailed tiles take different models."""
  codec = neural.NeuralCollageCodec(mix=True)
  img = halves(64, 128, 3, seed=8)
  code = codec.encode_code(img, 50)
  assert len(code.models) >= 2
  data = codec.compress(img, 50)
  np.testing.assert_array_equal(codec.decompress(data), codec.reconstruct(code, 64, 128, 3))


def test_cli_mix_flag(models, tmp_path, capsys):
  src = tmp_path / "in.png"
  Image.fromarray(halves(32, 48, 3)).save(src)
  assert cli.main(["compress", "--codec", "neural", "--model", models, "--mix", "-q", "60",
                   str(src), str(tmp_path / "m.clg")]) == 0
  assert cli.main(["decompress", "--model", models, str(tmp_path / "m.clg"),
                   str(tmp_path / "m.png")]) == 0
  mixer = neural.NeuralCollageCodec(model=models, mix=True)
  img = np.asarray(Image.open(src))
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "m.png")),
                                mixer.decompress(mixer.compress(img, 60)))
  capsys.readouterr()
  assert cli.main(["compress", "--codec", "pifs", "--mix", str(src),
                   str(tmp_path / "p.clg")]) == 2
  assert "--mix applies only to learned codecs" in capsys.readouterr().err

