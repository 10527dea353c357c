"""The neural collage codec: bit-exact decoding from the file alone, rates from real bytes,
any image size, resolution-agnostic decoding, model selection and clear errors."""

import json

import numpy as np
import pytest

from collage.codec import base, container
from collage.codec import neural
from collage.nn import entropy_model as em
from collage.nn import hypernet as hn

TINY = dict(tile=16, luma_range=4, luma_domain=8, luma_stride=8, luma_aux=3, chroma_range=8,
            chroma_aux=2, width=8, depth=1, hidden=16, support=15, decode_steps=4)


def _save(path, seed, lam, **over):
  m = hn.random_model(hn.ModelConfig(**{**TINY, **over}), seed=seed)
  # Make the code non-trivial: biased heads give non-zero parameters.
  m.encoder.head_g2.bias[...] = m.encoder.head_g2.bias[...] + 3.0
  m.encoder.head_w.bias[...] = m.encoder.head_w.bias[...] + 1.0
  hn.save_model(m, str(path), {"lam": lam})
  return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  root = tmp_path_factory.mktemp("neural_models")
  _save(root / "lo" / "artifacts" / "model", 0, 0.001)   # a training workdir layout
  _save(root / "hi", 1, 0.1)
  return str(root)


@pytest.fixture(scope="module")
def codec(models):
  return base.get_codec("neural", model=models)


def _image(h, w, c, seed=0):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  smooth = 128 + 60 * np.sin(xx / 5.0)[..., None] * np.cos(yy / 7.0)[..., None]
  img = smooth + rng.normal(0, 10, (h, w, c))
  return np.clip(img, 0, 255).astype(np.uint8)


def test_registered_with_codec_id_2(codec):
  assert codec.name == "neural" and codec.codec_id == 2
  assert "neural" in base.codec_names()


def test_decode_reproduces_the_encoder_bit_exactly(codec):
  img = _image(37, 21, 3)   # not a multiple of the tile: padded, then cropped back
  data = codec.compress(img, quality=90)
  m, q_enc = codec.encode_code(img, 90)
  m2, q_dec, header = codec.decode_code(data)
  assert m2 is m and (header.height, header.width, header.channels) == (37, 21, 3)
  np.testing.assert_array_equal(q_dec, q_enc)
  assert np.abs(q_enc).sum() > 0
  expected = codec.reconstruct(m, q_enc, 37, 21, 3)
  out = codec.decompress(data)
  assert out.shape == (37, 21, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, expected)
  np.testing.assert_array_equal(codec.decompress(data), out)  # deterministic


def test_rate_is_the_model_rate_plus_small_overhead(codec):
  img = _image(64, 48, 3, seed=1)
  data = codec.compress(img, quality=1)
  m, q = codec.encode_code(img, 1)
  ideal = em.table_bits(q, m.layout.slots_for(3), m.tables)
  header_bytes = len(data) - len(container.unpack(data)[2])
  payload_bits = 8 * (len(data) - header_bytes)
  assert ideal <= payload_bits <= ideal * 1.03 + 64
  info = container.describe(data)
  assert info["codec"] == "neural" and info["bpp"] == 8 * len(data) / (64 * 48)


def test_gray_images_and_scaled_decode(codec):
  img = _image(20, 33, 1, seed=2)
  data = codec.compress(img, 50)
  out = codec.decompress(data)
  assert out.shape == (20, 33, 1)
  big = codec.decompress(data, scale=2)
  assert big.shape == (40, 66, 1)
  m, q, _ = codec.decode_code(data)
  assert q.shape[1] == m.layout.n_y  # luma only
  rgb = codec.decompress(codec.compress(_image(16, 16, 3), 50), scale=3)
  assert rgb.shape == (48, 48, 3)


def test_quality_selects_models_lowest_rate_first(codec, models):
  assert [m.lam for m in codec.models] == [0.001, 0.1]
  assert codec.model_for_quality(1) is codec.models[0]
  assert codec.model_for_quality(50) is codec.models[0]
  assert codec.model_for_quality(51) is codec.models[1]
  assert codec.model_for_quality(100) is codec.models[1]
  for bad in (0, 101, 2.5, True):
    with pytest.raises(base.CodecError, match="quality"):
      codec.model_for_quality(bad)
  single = neural.NeuralCollageCodec(model=f"{models}/hi")
  assert len(single.models) == 1


def test_order_rank_overrides_lam_across_architectures(tmp_path):
  """Models of different architectures rank by their meta "order" when all have one."""
  big = _save(tmp_path / "a", 0, 0.001, luma_aux=5)
  small = _save(tmp_path / "b", 1, 0.1)
  for path, order in ((big, 2), (small, 1)):
    meta_file = f"{path}/model.json"
    with open(meta_file) as f:
      meta = json.load(f)
    meta["meta"]["order"] = order
    with open(meta_file, "w") as f:
      json.dump(meta, f)
  codec = neural.NeuralCollageCodec(model=str(tmp_path))
  assert [m.lam for m in codec.models] == [0.1, 0.001]
  assert codec.model_for_quality(1).lam == 0.1


def test_files_of_retired_shipped_models_still_decode(tmp_path, monkeypatch):
  """Default codec: encodes with the shipped models only, decodes retired models' files too."""
  current = _save(tmp_path / "neural" / "now", 0, 0.01)
  retired = _save(tmp_path / "neural_retired" / "old", 1, 0.02)
  img = _image(16, 24, 3)
  old_file = neural.NeuralCollageCodec(model=retired).compress(img, 50)
  expected = neural.NeuralCollageCodec(model=retired).decompress(old_file)
  monkeypatch.setattr(neural, "ASSET_DIR", str(tmp_path / "neural"))
  monkeypatch.setattr(neural, "RETIRED_DIR", str(tmp_path / "neural_retired"))
  codec = neural.NeuralCollageCodec()
  assert [m.directory for m in codec.models] == [current]
  np.testing.assert_array_equal(codec.decompress(old_file), expected)
  # A user's own model directory is not extended with the retired ones.
  with pytest.raises(base.CodecError, match="not among the models"):
    neural.NeuralCollageCodec(model=current).decompress(old_file)


def test_files_need_the_model_that_wrote_them(codec, models):
  data = codec.compress(_image(16, 16, 3), 1)  # written by the "lo" model
  other = neural.NeuralCollageCodec(model=f"{models}/hi")
  with pytest.raises(base.CodecError, match="not among the models"):
    other.decompress(data)
  with pytest.raises(base.CodecError, match="no neural collage model"):
    neural.NeuralCollageCodec(model=f"{models}/missing").compress(_image(8, 8, 3), 50)


def test_bad_input_gives_clear_errors(codec):
  data = codec.compress(_image(16, 16, 3), 50)
  with pytest.raises(base.CodecError):
    codec.decompress(data[:-7])
  corrupted = bytearray(data)
  corrupted[len(data) // 2] ^= 0xFF
  with pytest.raises(base.CodecError):
    codec.decompress(bytes(corrupted))
  other = container.pack(1, 16, 16, 3, b"", b"")
  with pytest.raises(base.CodecError, match="wrong codec"):
    codec.decompress(other)
  with pytest.raises(base.CodecError, match="scale"):
    codec.decompress(data, scale=0)
  with pytest.raises(base.CodecError, match="uint8"):
    codec.compress(np.zeros((8, 8, 3), np.float32), 50)
  with pytest.raises(base.CodecError, match="C = 1 or 3"):
    codec.compress(np.zeros((8, 8, 4), np.uint8), 50)


def test_bitpack_baseline_round_trip(tmp_path):
  path = _save(tmp_path / "bp", 2, 1.0, coding="bitpack", bitpack_bits=5)
  codec = neural.NeuralCollageCodec(model=path)
  img = _image(24, 40, 3, seed=3)
  data = codec.compress(img, 50)
  m, q = codec.encode_code(img, 50)
  assert q.min() >= -16 and q.max() <= 15
  n_values = q.size
  assert len(container.unpack(data)[2]) == (n_values * 5 + 7) // 8
  np.testing.assert_array_equal(codec.decompress(data), codec.reconstruct(m, q, 24, 40, 3))


def test_shipped_models_load_and_round_trip():
  codec = neural.NeuralCollageCodec()  # collage/assets/neural
  assert len(codec.models) >= 2
  keys = [m.meta.get("order", m.lam) for m in codec.models]
  assert keys == sorted(keys) and all(m.cfg.coding == "entropy" for m in codec.models)
  img = _image(40, 70, 3, seed=4)
  sizes = []
  for quality in (1, 100):
    data = codec.compress(img, quality)
    m, q = codec.encode_code(img, quality)
    np.testing.assert_array_equal(codec.decompress(data), codec.reconstruct(m, q, 40, 70, 3))
    sizes.append(len(data))
  assert sizes[0] < sizes[1]  # the lowest-rate model writes the smaller file


def test_cli_model_flag_round_trip(tmp_path, models, capsys):
  """collage-codec compress/decompress --codec neural --model PATH uses the user's model."""
  from PIL import Image
  from collage.codec import cli
  src = tmp_path / "in.png"
  Image.fromarray(_image(16, 24, 3)).save(src)
  out = tmp_path / "out.clg"
  assert cli.main(["compress", "--codec", "neural", "--model", f"{models}/hi", "-q", "50",
                   str(src), str(out)]) == 0
  # The shipped models did not write this file: decoding needs the same --model.
  assert cli.main(["decompress", str(out), str(tmp_path / "x.png")]) == 2
  assert "not among the models" in capsys.readouterr().err
  assert cli.main(["decompress", "--model", f"{models}/hi", "--scale", "2", str(out),
                   str(tmp_path / "y.png")]) == 0
  assert np.asarray(Image.open(tmp_path / "y.png")).shape == (32, 48, 3)
  # --model on a codec that has no model, and a missing model path, are one-line errors.
  assert cli.main(["compress", "--codec", "pifs", "--model", models, str(src),
                   str(tmp_path / "p.clg")]) == 2
  assert "only to learned codecs" in capsys.readouterr().err
  assert cli.main(["compress", "--codec", "neural", "--model", str(tmp_path / "nope"), str(src),
                   str(tmp_path / "q.clg")]) == 2
  assert "does not exist" in capsys.readouterr().err


def test_refinement_lowers_the_rate_distortion_cost(models):
  """Test-time refinement (``refine``) writes an ordinary file with a lower RD cost."""
  img = _image(32, 48, 3, seed=5)
  x = img.astype(np.float64) / 255.0
  costs = []
  for steps in (0, 25):
    codec = neural.NeuralCollageCodec(model=f"{models}/hi", refine=steps)
    data = codec.compress(img, 50)
    m, q = codec.encode_code(img, 50)
    out = codec.decompress(data)
    np.testing.assert_array_equal(out, codec.reconstruct(m, q, 32, 48, 3))  # still bit-exact
    bpp = 8 * len(data) / (32 * 48)
    mse = np.mean((out / 255.0 - x) ** 2)
    costs.append(bpp + m.lam * 255.0 ** 2 * mse)
  assert costs[1] < 0.9 * costs[0], costs


def test_refine_argument_is_checked(models, tmp_path, capsys):
  for bad in (-1, 2.5, True, "3"):
    with pytest.raises(base.CodecError, match="refine"):
      neural.NeuralCollageCodec(model=f"{models}/hi", refine=bad)
  from PIL import Image
  from collage.codec import cli
  src = tmp_path / "in.png"
  Image.fromarray(_image(16, 16, 3)).save(src)
  assert cli.main(["compress", "--codec", "pifs", "--refine", "5", str(src),
                   str(tmp_path / "a.clg")]) == 2
  assert "--refine applies only to learned codecs" in capsys.readouterr().err
  for bad in ("-2", "many"):
    assert cli.main(["compress", "--codec", "neural", "--model", f"{models}/hi", "--refine", bad,
                     str(src), str(tmp_path / "b.clg")]) == 2
    assert "--refine must be a non-negative integer" in capsys.readouterr().err
  assert cli.main(["compress", "--codec", "neural", "--model", f"{models}/hi", "--refine", "3",
                   str(src), str(tmp_path / "c.clg")]) == 0
