"""The neural collage codec (:class:`collage.codec.neural.NeuralCollageCodec`): bit-exact
decoding from the file alone, rates from real bytes, any image size, resolution-agnostic
decoding, variable-rate and context models, refinement, the shipped models, clear errors."""

import os

import numpy as np
import pytest
from PIL import Image

from collage.codec import base, cli, container, neural, neural_format, neural_models
from collage.metrics import rate
from collage.metrics.rd import rd_cost
from collage.nn import entropy_model as em
from tests.codec.neural_helpers import halves, make_image, save_model


def test_registered_with_codec_id_2(codec):
  assert codec.name == "neural" and codec.codec_id == 2
  assert "neural" in base.codec_names()


def test_decode_reproduces_the_encoder_bit_exactly(codec):
  img = make_image(37, 21, 3)   # not a multiple of the tile: padded, then cropped back
  data = codec.compress(img, quality=90)
  enc = codec.encode_code(img, 90)
  dec, header = codec.decode_code(data)
  assert dec.models == enc.models and (header.height, header.width, header.channels) == (37, 21, 3)
  np.testing.assert_array_equal(dec.q, enc.q)
  assert np.abs(enc.q).sum() > 0
  expected = codec.reconstruct(enc, 37, 21, 3)
  out = codec.decompress(data)
  assert out.shape == (37, 21, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, expected)
  np.testing.assert_array_equal(codec.decompress(data), out)  # deterministic


def test_rate_is_the_model_rate_plus_small_overhead(codec):
  img = make_image(64, 48, 3, seed=1)
  data = codec.compress(img, quality=1)
  code = codec.encode_code(img, 1)
  m, q = code.models[0], code.q
  ideal = em.table_bits(q, m.layout.slots_for(3), m.tables())
  header_bytes = len(data) - len(container.unpack(data)[2])
  payload_bits = 8 * (len(data) - header_bytes)
  assert ideal <= payload_bits <= ideal * 1.03 + 64
  info = container.describe(data)
  assert info["codec"] == "neural" and info["bpp"] == 8 * len(data) / (64 * 48)


def test_gray_images_and_scaled_decode(codec):
  img = make_image(20, 33, 1, seed=2)
  data = codec.compress(img, 50)
  out = codec.decompress(data)
  assert out.shape == (20, 33, 1)
  big = codec.decompress(data, scale=2)
  assert big.shape == (40, 66, 1)
  code, _ = codec.decode_code(data)
  assert code.q.shape[1] == code.models[0].layout.n_y  # luma only
  rgb = codec.decompress(codec.compress(make_image(16, 16, 3), 50), scale=3)
  assert rgb.shape == (48, 48, 3)


def test_files_of_retired_shipped_models_still_decode(tmp_path, monkeypatch):
  """Default codec: encodes with the shipped models only, decodes retired models' files too."""
  current = save_model(tmp_path / "neural" / "now", 0, 0.01)
  retired = save_model(tmp_path / "neural_retired" / "old", 1, 0.02)
  img = make_image(16, 24, 3)
  old_file = neural.NeuralCollageCodec(model=retired).compress(img, 50)
  expected = neural.NeuralCollageCodec(model=retired).decompress(old_file)
  monkeypatch.setattr(neural_models, "VARIABLE_DIR", str(tmp_path / "neural"))  # the default
  monkeypatch.setattr(neural_models, "ASSET_DIR", str(tmp_path / "no_fixed_set"))
  monkeypatch.setattr(neural_models, "RETIRED_DIR", str(tmp_path / "neural_retired"))
  codec = neural.NeuralCollageCodec()
  assert [m.directory for m in codec.models] == [current]
  np.testing.assert_array_equal(codec.decompress(old_file), expected)
  # A user's own model directory is not extended with the retired ones.
  with pytest.raises(base.CodecError, match="not among the models"):
    neural.NeuralCollageCodec(model=current).decompress(old_file)


def test_files_need_the_model_that_wrote_them(codec, models):
  data = codec.compress(make_image(16, 16, 3), 1)  # written by the "lo" model
  other = neural.NeuralCollageCodec(model=f"{models}/hi")
  with pytest.raises(base.CodecError, match="not among the models"):
    other.decompress(data)
  with pytest.raises(base.CodecError, match="no neural collage model"):
    neural.NeuralCollageCodec(model=f"{models}/missing").compress(make_image(8, 8, 3), 50)


def test_bad_input_gives_clear_errors(codec):
  data = codec.compress(make_image(16, 16, 3), 50)
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
  with pytest.raises(base.CodecError, match=r"C = 1 \(gray\) or 3"):
    codec.compress(np.zeros((8, 8, 4), np.uint8), 50)
  with pytest.raises(base.CodecError, match="H, W >= 1"):
    codec.compress(np.zeros((0, 8, 3), np.uint8), 50)


def test_bitpack_baseline_round_trip(tmp_path):
  path = save_model(tmp_path / "bp", 2, 1.0, coding="bitpack", bitpack_bits=5)
  codec = neural.NeuralCollageCodec(model=path)
  img = make_image(24, 40, 3, seed=3)
  data = codec.compress(img, 50)
  code = codec.encode_code(img, 50)
  q = code.q
  assert q.min() >= -16 and q.max() <= 15
  n_values = q.size
  assert len(container.unpack(data)[2]) == (n_values * 5 + 7) // 8
  np.testing.assert_array_equal(codec.decompress(data), codec.reconstruct(code, 24, 40, 3))


def test_shipped_models_load_and_round_trip():
  codec = neural.NeuralCollageCodec(model="fixed")  # collage/assets/neural
  assert len(codec.models) >= 2
  keys = [m.meta.get("order", m.lam) for m in codec.models]
  assert keys == sorted(keys) and all(m.cfg.coding == "entropy" for m in codec.models)
  img = make_image(40, 70, 3, seed=4)
  sizes = []
  for quality in (1, 100):
    data = codec.compress(img, quality)
    code = codec.encode_code(img, quality)
    np.testing.assert_array_equal(codec.decompress(data), codec.reconstruct(code, 40, 70, 3))
    sizes.append(len(data))
  assert sizes[0] < sizes[1]  # the lowest-rate model writes the smaller file


@pytest.mark.parametrize("name", ["s3_r8_lam0.003", "r4_var8"])
def test_files_of_the_real_retired_models_decode_with_the_default_codec(name):
  """Files written by an earlier release's shipped models (collage/assets/neural_retired; the
  factorized-prior variable-rate default of session 7 among them)."""
  retired = os.path.join(neural_models.RETIRED_DIR, name)
  img = make_image(24, 40, 3, seed=5)
  old = neural.NeuralCollageCodec(model=retired)
  data = old.compress(img, 50)
  codec = neural.NeuralCollageCodec()
  assert old.models[0].fingerprint not in {m.fingerprint for m in codec.models}
  np.testing.assert_array_equal(codec.decompress(data), old.decompress(data))


def test_cli_model_flag_round_trip(tmp_path, models, capsys):
  """collage-codec compress/decompress --codec neural --model PATH uses the user's model."""
  src = tmp_path / "in.png"
  Image.fromarray(make_image(16, 24, 3)).save(src)
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
  img = make_image(32, 48, 3, seed=5)
  x = img.astype(np.float64) / 255.0
  costs = []
  for steps in (0, 25):
    codec = neural.NeuralCollageCodec(model=f"{models}/hi", refine=steps)
    data = codec.compress(img, 50)
    code = codec.encode_code(img, 50)
    m = code.models[0]
    out = codec.decompress(data)
    np.testing.assert_array_equal(out, codec.reconstruct(code, 32, 48, 3))  # still bit-exact
    mse = np.mean((out / 255.0 - x) ** 2)
    costs.append(rd_cost(rate.bpp(len(data), 32, 48), mse, m.lam))
  assert costs[1] < 0.9 * costs[0], costs


def test_refine_argument_is_checked(models, tmp_path, capsys):
  for bad in (-1, 2.5, True, "3"):
    with pytest.raises(base.CodecError, match="refine"):
      neural.NeuralCollageCodec(model=f"{models}/hi", refine=bad)
  src = tmp_path / "in.png"
  Image.fromarray(make_image(16, 16, 3)).save(src)
  assert cli.main(["compress", "--codec", "pifs", "--refine", "5", str(src),
                   str(tmp_path / "a.clg")]) == 2
  assert "--refine applies only to learned codecs" in capsys.readouterr().err
  for bad in ("-2", "many"):
    assert cli.main(["compress", "--codec", "neural", "--model", f"{models}/hi", "--refine", bad,
                     str(src), str(tmp_path / "b.clg")]) == 2
    assert "--refine must be a non-negative integer" in capsys.readouterr().err
  assert cli.main(["compress", "--codec", "neural", "--model", f"{models}/hi", "--refine", "3",
                   str(src), str(tmp_path / "c.clg")]) == 0


def test_variable_rate_model_codes_every_quality_bit_exactly(vmodel):
  codec = neural.NeuralCollageCodec(model=vmodel)
  (m,) = codec.models
  assert m.levels == 3 and codec.setting(1).model is codec.setting(100).model is m
  img = make_image(37, 21, 3, seed=3)
  sizes, codes = {}, {}
  for quality in (1, 37, 100):
    data = codec.compress(img, quality)
    params = container.unpack(data)[1]
    assert params[0] == neural_format.RATE_VERSION and params[-1] == quality
    code, _ = codec.decode_code(data)
    enc = codec.encode_code(img, quality)
    assert code.quality == enc.quality == quality
    np.testing.assert_array_equal(code.q, enc.q)
    np.testing.assert_array_equal(codec.decompress(data), codec.reconstruct(enc, 37, 21, 3))
    ideal = em.table_bits(enc.q, m.layout.slots_for(3), m.tables(quality))
    payload_bits = 8 * len(container.unpack(data)[2])
    assert ideal <= payload_bits <= ideal * 1.03 + 64
    sizes[quality], codes[quality] = len(data), enc.q
  assert sizes[1] < sizes[37] < sizes[100]  # finer steps at higher levels: more bits
  assert not np.array_equal(codes[1], codes[37])
  # Gray images and scaled decoding take the quality too.
  gray = codec.decompress(codec.compress(make_image(20, 20, 1), 60), scale=2)
  assert gray.shape == (40, 40, 1)


def test_context_model_codes_bit_exactly_in_every_mode(cmodel):
  """One pass at several qualities, gray, per-tile quality (file version 4) and refinement:
  the file decodes to the encoder's reconstruction, costs its ideal length, and a damaged
  payload is refused."""
  codec = neural.NeuralCollageCodec(model=cmodel)
  (m,) = codec.models
  assert m.cfg.context_model and isinstance(m.tables(50), dict)
  img = make_image(37, 21, 3, seed=3)
  sizes = []
  for quality in (1, 50, 100):
    data = codec.compress(img, quality)
    enc = codec.encode_code(img, quality)
    np.testing.assert_array_equal(codec.decode_code(data)[0].q, enc.q)
    np.testing.assert_array_equal(codec.decompress(data), codec.reconstruct(enc, 37, 21, 3))
    ideal = float(m.code_bits(enc.q, 3, quality).sum())
    assert ideal <= 8 * len(container.unpack(data)[2]) <= ideal * 1.03 + 64
    sizes.append(len(data))
  assert sizes[0] < sizes[1] < sizes[2]
  gray = make_image(20, 20, 1)
  assert codec.decompress(codec.compress(gray, 60)).shape == (20, 20, 1)
  for other in (neural.NeuralCollageCodec(model=cmodel, mix=True),
                neural.NeuralCollageCodec(model=cmodel, refine=2)):
    data = other.compress(img, 70)
    np.testing.assert_array_equal(other.decompress(data),
                                  other.reconstruct(other.encode_code(img, 70), 37, 21, 3))
  _, params, payload = container.unpack(codec.compress(img, 50))
  for bad in (payload[:-4], payload + b"\0\0\0\0"):
    with pytest.raises(base.CodecError, match="corrupt neural payload"):
      codec.decompress(container.pack(2, 37, 21, 3, params, bad))


def test_fixed_rate_context_model_codes_bit_exactly(tmp_path):
  """A fixed-rate model may use the context model too (version-1 files)."""
  path = save_model(tmp_path / "fixed_context", 3, 0.01, context_model=True)
  codec = neural.NeuralCollageCodec(model=path)
  (m,) = codec.models
  assert m.cfg.context_model and not m.levels
  for img in (make_image(30, 45, 3, seed=6), make_image(20, 20, 1, seed=7)):
    data = codec.compress(img, 50)
    assert container.unpack(data)[1][0] == neural_format.PARAMS_VERSION
    enc = codec.encode_code(img, 50)
    np.testing.assert_array_equal(codec.decompress(data),
                                  codec.reconstruct(enc, *img.shape))
    ideal = float(m.code_bits(enc.q, img.shape[-1]).sum())
    assert ideal <= 8 * len(container.unpack(data)[2]) <= ideal * 1.03 + 64


def test_describe_names_the_model_and_the_quality(vmodel, codec, models):
  v = neural.NeuralCollageCodec(model=vmodel)
  d = v.describe(v.compress(make_image(16, 16, 3), 42))
  assert d["quality"] == "42" and "variable rate" in d["model"] and d["model"].startswith("v (")
  d = codec.describe(codec.compress(make_image(16, 16, 3), 80))  # the "hi" model: qualities 51-100
  assert d["model"].startswith("hi (") and "qualities 51-100 pick it" in d["quality"]
  d = neural.NeuralCollageCodec(model=models, mix=True).describe(
      neural.NeuralCollageCodec(model=models, mix=True).compress(halves(16, 32, 3), 50))
  assert "not stored" in d["quality"]
  d = v.describe(codec.compress(make_image(16, 16, 3), 80))  # the writer is not at v's path
  assert "not among the models" in d["model"]


def test_cli_info_shows_model_and_quality(vmodel, tmp_path, capsys):
  Image.fromarray(make_image(16, 16, 3)).save(tmp_path / "in.png")
  assert cli.main(["compress", "--codec", "neural", "--model", vmodel, "-q", "33",
                   str(tmp_path / "in.png"), str(tmp_path / "out.clg")]) == 0
  capsys.readouterr()
  assert cli.main(["info", "--model", vmodel, str(tmp_path / "out.clg")]) == 0
  out = capsys.readouterr().out
  assert "quality    33" in out and "variable rate" in out


def test_the_shipped_variable_rate_model_by_name_and_across_shipped_sets():
  """``model="variable"`` is the shipped variable-rate model; a codec with any shipped set
  decodes the files of every shipped set (the fingerprint finds the writer)."""
  var = neural.NeuralCollageCodec(model="variable")
  (m,) = var.models
  assert m.levels >= 2 and m.directory.startswith(neural_models.NAMED_MODELS["variable"])
  default = neural.NeuralCollageCodec()
  img = make_image(40, 40, 3, seed=5)
  lo, hi = var.compress(img, 5), var.compress(img, 95)
  assert len(lo) < len(hi)
  np.testing.assert_array_equal(default.decompress(hi), var.decompress(hi))
  old = default.compress(img, 50)
  np.testing.assert_array_equal(var.decompress(old), default.decompress(old))
  assert default.describe(hi)["quality"] == "95"

