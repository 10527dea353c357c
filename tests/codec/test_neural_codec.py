"""The neural collage codec: bit-exact decoding from the file alone, rates from real bytes,
any image size, resolution-agnostic decoding, model selection and clear errors."""

import json
import os
import types
from fractions import Fraction

import numpy as np
import pytest

from collage.codec import base, container
from collage.codec import neural, neural_models
from collage.metrics import rate
from collage.metrics.rd import rd_cost
from collage.nn import entropy_model as em
from collage.nn import neural_collage as hn
from collage.nn import neural_collage_io

TINY = dict(tile=16, luma_range=4, luma_domain=8, luma_stride=8, luma_aux=3, chroma_range=8,
            chroma_aux=2, width=8, depth=1, hidden=16, support=15, decode_steps=4)


def _save(path, seed, lam, **over):
  m = neural_collage_io.random_model(hn.ModelConfig(**{**TINY, **over}), seed=seed)
  # Make the code non-trivial: biased heads give non-zero parameters.
  m.encoder.head_g2.bias[...] = m.encoder.head_g2.bias[...] + 3.0
  m.encoder.head_w.bias[...] = m.encoder.head_w.bias[...] + 1.0
  neural_collage_io.save_model(m, str(path), {"lam": lam})
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
  img = _image(64, 48, 3, seed=1)
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
  img = _image(20, 33, 1, seed=2)
  data = codec.compress(img, 50)
  out = codec.decompress(data)
  assert out.shape == (20, 33, 1)
  big = codec.decompress(data, scale=2)
  assert big.shape == (40, 66, 1)
  code, _ = codec.decode_code(data)
  assert code.q.shape[1] == code.models[0].layout.n_y  # luma only
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
  with pytest.raises(base.CodecError, match=r"C = 1 \(gray\) or 3"):
    codec.compress(np.zeros((8, 8, 4), np.uint8), 50)
  with pytest.raises(base.CodecError, match="H, W >= 1"):
    codec.compress(np.zeros((0, 8, 3), np.uint8), 50)


def test_bitpack_baseline_round_trip(tmp_path):
  path = _save(tmp_path / "bp", 2, 1.0, coding="bitpack", bitpack_bits=5)
  codec = neural.NeuralCollageCodec(model=path)
  img = _image(24, 40, 3, seed=3)
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
  img = _image(40, 70, 3, seed=4)
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
  img = _image(24, 40, 3, seed=5)
  old = neural.NeuralCollageCodec(model=retired)
  data = old.compress(img, 50)
  codec = neural.NeuralCollageCodec()
  assert old.models[0].fingerprint not in {m.fingerprint for m in codec.models}
  np.testing.assert_array_equal(codec.decompress(data), old.decompress(data))


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


# -- per-tile model choice (mix) --------------------------------------------------------------
def _halves(h, w, c, seed=0):
  """Left half flat, right half noise: tiles that different models should win."""
  img = _image(h, w, c, seed)
  img[:, : w // 2] = 120
  return img


def test_mixed_code_round_trips_bit_exactly(codec):
  """A code that mixes models per tile is written as a version-2 file and decoded exactly."""
  img = _image(40, 56, 3, seed=6)
  lo, hi = codec.models
  n = 3 * 4
  choice = np.arange(n) % 2                       # alternate the models tile by tile
  tiles = neural.image_tiles(img, lo.cfg.tile)
  codes = tuple(m.analyse(tiles[choice == k]) for k, m in enumerate((lo, hi)))
  code = neural.TileCode((lo, hi), choice, codes)
  data = codec.write_code(code, 40, 56, 3)
  assert container.unpack(data)[1][0] == neural.MIXED_VERSION
  dec, header = codec.decode_code(data)
  assert dec.models == (lo, hi) and (header.height, header.width) == (40, 56)
  np.testing.assert_array_equal(dec.choice, choice)
  for a, b in zip(dec.codes, codes):
    np.testing.assert_array_equal(a, b)
  out = codec.decompress(data)
  np.testing.assert_array_equal(out, codec.reconstruct(code, 40, 56, 3))
  # Every tile is the one its own model decodes.
  for k, m in enumerate((lo, hi)):
    alone = neural.NeuralCollageCodec(model=m.directory)
    ref = alone.reconstruct(neural.TileCode.single(m, m.analyse(tiles)), 40, 56, 3)
    mask = np.kron(choice.reshape(3, 4) == k, np.ones((16, 16), bool))[:40, :56]
    np.testing.assert_array_equal(out[mask], ref[mask])
  assert codec.decompress(data, scale=2).shape == (80, 112, 3)


def test_mix_picks_the_cheapest_model_per_tile(models):
  """mix=True: each tile takes the model of least bits + lam * 255^2 * SSE / C, so the file's
  real rate-distortion cost is no worse than that of either model alone (plus the choice)."""
  mixer = neural.NeuralCollageCodec(model=models, mix=True)
  for c in (3, 1):
    img = _halves(48, 64, c, seed=7)
    quality = 60
    lam = mixer.mix_lam(quality)
    costs, _ = mixer.tile_costs(img, lam)
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


def test_mix_quality_sets_a_geometric_lam(models):
  mixer = neural.NeuralCollageCodec(model=models, mix=True)
  lams = [mixer.mix_lam(q) for q in (1, 25, 50, 75, 100)]
  assert lams[0] == pytest.approx(0.001)
  assert lams[-1] == pytest.approx(neural.MIX_LAM_TOP * 0.1)
  assert all(a < b for a, b in zip(lams, lams[1:]))
  with pytest.raises(base.CodecError, match="quality"):
    mixer.mix_lam(0)
  with pytest.raises(base.CodecError, match="mix must be True or False"):
    neural.NeuralCollageCodec(model=models, mix="yes")


def test_mix_needs_entropy_models_of_one_tile_size(tmp_path):
  _save(tmp_path / "bp" / "a", 2, 1.0, coding="bitpack", bitpack_bits=5)
  with pytest.raises(base.CodecError, match="entropy-coded"):
    neural.NeuralCollageCodec(model=str(tmp_path / "bp"), mix=True).compress(_image(16, 16, 3))
  _save(tmp_path / "two" / "a", 0, 0.01)
  _save(tmp_path / "two" / "b", 1, 0.02, tile=32, luma_domain=16, luma_stride=16)
  with pytest.raises(base.CodecError, match="one tile size"):
    neural.NeuralCollageCodec(model=str(tmp_path / "two"), mix=True).compress(_image(16, 16, 3))


def test_corrupt_mixed_files_are_rejected(codec):
  lo, hi = codec.models
  from collage.codec.entropy import ByteWriter

  def params(k, prints, tile=16, coding=0):
    w = ByteWriter().u8(neural.MIXED_VERSION).varint(k)
    for p in prints:
      w.raw(p)
    return w.varint(tile).u8(coding).getvalue()

  good = codec.compress(_image(16, 32, 3), 50)
  payload = container.unpack(good)[2]
  cases = [
      (params(1, [lo.fingerprint]), "needs 2"),
      (params(2, [lo.fingerprint, b"\x01" * 8]), "not among the models"),
      (params(2, [lo.fingerprint, hi.fingerprint], tile=8), "do not match model"),
      (params(2, [lo.fingerprint, hi.fingerprint], coding=1), "do not match model"),
      (params(2, [lo.fingerprint, hi.fingerprint]) + b"\x00", "neural codec parameters"),
      (params(2, [lo.fingerprint, hi.fingerprint]), None),  # payload cut below
  ]
  for p, match in cases:
    body = payload if match else payload[:5]
    with pytest.raises(base.CodecError, match=match or "corrupt neural payload"):
      codec.decompress(container.pack(2, 16, 32, 3, p, body))


def test_cli_mix_flag(models, tmp_path, capsys):
  from PIL import Image
  from collage.codec import cli
  src = tmp_path / "in.png"
  Image.fromarray(_halves(32, 48, 3)).save(src)
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


def test_shipped_models_mix_per_tile():
  """With the shipped models, flat tiles and detailed tiles take different models."""
  codec = neural.NeuralCollageCodec(mix=True)
  img = _halves(64, 128, 3, seed=8)
  code = codec.encode_code(img, 50)
  assert len(code.models) >= 2
  data = codec.compress(img, 50)
  np.testing.assert_array_equal(codec.decompress(data), codec.reconstruct(code, 64, 128, 3))


def test_tile_subsets_of_any_size_compile_a_bounded_number_of_shapes(codec):
  """The per-tile choice runs the models on tile subsets of every size; the jitted passes
  must see few batch shapes (one per size compiled without end and ran out of memory)."""
  m = codec.models[0]
  tiles = neural.image_tiles(_image(16, 16 * 40, 3, seed=9), 16)
  before = m._synthesise._cache_size()  # pylint: disable=protected-access
  for n in range(1, 41):
    q = m.analyse(tiles[:n])
    assert m.synthesise(q, 3).shape == (n, 16, 16, 3)
  assert m._synthesise._cache_size() - before <= 7  # pylint: disable=protected-access
  assert m._analyse._cache_size() <= 8  # pylint: disable=protected-access


def test_chunks_pad_little_and_keep_every_tile_in_place(codec):
  """Tiles run ENCODE_BATCH at a time, the rest in power-of-two chunks (few shapes, at most 7
  padded rows); a chunked synthesis returns every tile where it belongs."""
  assert neural_models.ENCODE_BATCH == 64
  assert neural_models.chunk_sizes(96) == [64, 32]
  assert neural_models.chunk_sizes(176) == [64, 64, 32, 16]
  assert neural_models.chunk_sizes(100) == [64, 32, 8]   # 36 rounded up to 40
  assert neural_models.chunk_sizes(6) == [8] and neural_models.chunk_sizes(1) == [1]
  assert neural_models.chunk_sizes(0) == []
  shapes = set()
  for n in range(1, 400):
    sizes = neural_models.chunk_sizes(n)
    assert n <= sum(sizes) <= n + 7 and sizes == sorted(sizes, reverse=True)
    shapes.update(sizes)
  assert shapes == {1, 2, 4, 8, 16, 32, 64}
  m = codec.models[0]
  tiles = neural.image_tiles(_image(16 * 10, 16 * 10, 3, seed=4), 16)  # 100 tiles
  q = m.analyse(tiles)
  out = m.synthesise(q, 3)
  assert out.shape == (100, 16, 16, 3)
  for i in (0, 63, 64, 95, 96, 99):  # first / last of each chunk
    np.testing.assert_array_equal(q[i], m.analyse(tiles[i:i + 1])[0])
    np.testing.assert_allclose(out[i], m.synthesise(q[i:i + 1], 3)[0], atol=1e-6)


# -- variable-rate models (file version 3) ----------------------------------------------------
@pytest.fixture(scope="module")
def vmodel(tmp_path_factory):
  """A variable-rate model whose steps get finer with the level (so rates rise with quality)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  path = tmp_path_factory.mktemp("variable") / "v"
  m = neural_collage_io.random_model(hn.ModelConfig(**TINY, rate_lams=(0.001, 0.01, 0.1)), seed=2)
  m.encoder.head_g2.bias[...] = m.encoder.head_g2.bias[...] + 3.0
  m.encoder.head_w.bias[...] = m.encoder.head_w.bias[...] + 1.0
  m.log_step[...] = m.log_step[...] - 0.7 * jnp.arange(3.0)[:, None]
  m.encoder.film[...] = 0.2 * jax.random.normal(jax.random.PRNGKey(0), m.encoder.film.shape)
  neural_collage_io.save_model(m, str(path), {"step": 0})
  return str(path)


def test_variable_rate_model_codes_every_quality_bit_exactly(vmodel):
  codec = neural.NeuralCollageCodec(model=vmodel)
  (m,) = codec.models
  assert m.levels == 3 and codec.model_for_quality(1) is codec.model_for_quality(100) is m
  img = _image(37, 21, 3, seed=3)
  sizes, codes = {}, {}
  for quality in (1, 37, 100):
    data = codec.compress(img, quality)
    params = container.unpack(data)[1]
    assert params[0] == neural.RATE_VERSION and params[-1] == quality
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
  gray = codec.decompress(codec.compress(_image(20, 20, 1), 60), scale=2)
  assert gray.shape == (40, 40, 1)


@pytest.fixture(scope="module")
def cmodel(vmodel, tmp_path_factory):
  """The variable-rate model with the context entropy model, its contexts made distinct."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  m = neural_collage_io.to_context_model(neural_collage_io.load_model(vmodel)[0])
  noise = np.random.default_rng(4).normal(size=m.zero_logits.shape) / hn.CONTEXT_GAIN
  m.zero_logits[...] = m.zero_logits[...] + jnp.asarray(noise, jnp.float32)
  path = tmp_path_factory.mktemp("context") / "c"
  neural_collage_io.save_model(m, str(path), {"step": 0})
  return str(path)


def test_context_model_codes_bit_exactly_in_every_mode(cmodel):
  """One pass at several qualities, gray, per-tile quality (file version 4) and refinement:
  the file decodes to the encoder's reconstruction, costs its ideal length, and a damaged
  payload is refused."""
  codec = neural.NeuralCollageCodec(model=cmodel)
  (m,) = codec.models
  assert m.cfg.context_model and isinstance(m.tables(50), dict)
  img = _image(37, 21, 3, seed=3)
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
  gray = _image(20, 20, 1)
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
  path = _save(tmp_path / "fixed_context", 3, 0.01, context_model=True)
  codec = neural.NeuralCollageCodec(model=path)
  (m,) = codec.models
  assert m.cfg.context_model and not m.levels
  for img in (_image(30, 45, 3, seed=6), _image(20, 20, 1, seed=7)):
    data = codec.compress(img, 50)
    assert container.unpack(data)[1][0] == neural.PARAMS_VERSION
    enc = codec.encode_code(img, 50)
    np.testing.assert_array_equal(codec.decompress(data),
                                  codec.reconstruct(enc, *img.shape))
    ideal = float(m.code_bits(enc.q, img.shape[-1]).sum())
    assert ideal <= 8 * len(container.unpack(data)[2]) <= ideal * 1.03 + 64


def test_variable_rate_files_are_checked(vmodel, models):
  codec = neural.NeuralCollageCodec(model=vmodel)
  (m,) = codec.models
  data = codec.compress(_image(16, 16, 3), 50)
  _, params, payload = container.unpack(data)
  for quality in (0, 101):  # out of range
    bad = container.pack(2, 16, 16, 3, params[:-1] + bytes([quality]), payload)
    with pytest.raises(base.CodecError, match="quality .* is not in 1..100"):
      codec.decompress(bad)
  v1 = params[:1].replace(b"\x03", b"\x01") + params[1:-1]  # a fixed-rate header, this model
  with pytest.raises(base.CodecError, match="names variable-rate model"):
    codec.decompress(container.pack(2, 16, 16, 3, v1, payload))
  with pytest.raises(base.CodecError, match="no quality|needs a quality"):
    codec.write_code(neural.TileCode.single(m, codec.encode_code(_image(16, 16, 3), 5).q),
                     16, 16, 3)



def test_a_variable_rate_model_is_used_alone(vmodel, models, tmp_path):
  import shutil  # pylint: disable=import-outside-toplevel
  shutil.copytree(vmodel, tmp_path / "v")
  shutil.copytree(os.path.join(models, "hi"), tmp_path / "hi")
  with pytest.raises(base.CodecError, match="variable-rate model is used alone"):
    neural.NeuralCollageCodec(model=str(tmp_path)).compress(_image(16, 16, 3), 50)


def test_describe_names_the_model_and_the_quality(vmodel, codec, models):
  v = neural.NeuralCollageCodec(model=vmodel)
  d = v.describe(v.compress(_image(16, 16, 3), 42))
  assert d["quality"] == "42" and "variable rate" in d["model"] and d["model"].startswith("v (")
  d = codec.describe(codec.compress(_image(16, 16, 3), 80))  # the "hi" model: qualities 51-100
  assert d["model"].startswith("hi (") and "qualities 51-100 pick it" in d["quality"]
  d = neural.NeuralCollageCodec(model=models, mix=True).describe(
      neural.NeuralCollageCodec(model=models, mix=True).compress(_halves(16, 32, 3), 50))
  assert "not stored" in d["quality"]
  d = v.describe(codec.compress(_image(16, 16, 3), 80))  # the writer is not at v's path
  assert "not among the models" in d["model"]


def test_cli_info_shows_model_and_quality(vmodel, tmp_path, capsys):
  from collage.codec import cli  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  Image.fromarray(_image(16, 16, 3)).save(tmp_path / "in.png")
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
  img = _image(40, 40, 3, seed=5)
  lo, hi = var.compress(img, 5), var.compress(img, 95)
  assert len(lo) < len(hi)
  np.testing.assert_array_equal(default.decompress(hi), var.decompress(hi))
  old = default.compress(img, 50)
  np.testing.assert_array_equal(var.decompress(old), default.decompress(old))
  assert default.describe(hi)["quality"] == "95"


def test_variable_rate_mix_picks_a_quality_per_tile(vmodel):
  """With a variable-rate model, mix chooses each tile's quality among MIX_QUALITIES by the
  rate-distortion cost at the image quality's lam (a version-4 file), decoded bit-exactly."""
  codec = neural.NeuralCollageCodec(model=vmodel, mix=True)
  (m,) = codec.models
  img = _halves(32, 64, 3)
  lam = codec.mix_lam(50)
  assert lam == pytest.approx(m.level_lam(50))
  costs, codes = codec.tile_costs(img, lam)
  assert costs.shape == (len(neural.MIX_QUALITIES), 8)
  code = codec.encode_code(img, 50)
  assert set(code.qualities) <= set(neural.MIX_QUALITIES) and len(code.qualities) >= 1
  best = np.argmin(costs, axis=0)  # every tile takes its cheapest quality
  for i, k in enumerate(best):
    entry = code.qualities.index(neural.MIX_QUALITIES[k])
    assert code.choice[i] == entry
  data = codec.compress(img, 50)
  if len(code.qualities) > 1:
    assert container.unpack(data)[1][0] == neural.RATE_MIXED_VERSION
  dec, _ = codec.decode_code(data)
  assert dec.qualities == code.qualities
  np.testing.assert_array_equal(dec.choice, code.choice)
  np.testing.assert_array_equal(codec.decompress(data), codec.reconstruct(code, 32, 64, 3))
  shown = codec.describe(data)["quality"]  # one quality used: a version-3 file
  assert shown.startswith("per tile among") or shown.isdigit()


def test_version_4_files_are_written_and_checked(vmodel, models):
  """A hand-made two-quality code round-trips as version 4; bad qualities and fixed-rate
  models in a version-4 header are rejected."""
  from collage.codec.entropy import ByteWriter  # pylint: disable=import-outside-toplevel
  codec = neural.NeuralCollageCodec(model=vmodel)
  (m,) = codec.models
  tiles = neural.image_tiles(_image(16, 32, 3), 16)
  qa, qb = m.analyse(tiles[:1], quality=10), m.analyse(tiles[1:], quality=90)
  code = neural.TileCode((m, m), np.array([0, 1]), (qa, qb), (10, 90))
  data = codec.write_code(code, 16, 32, 3)
  params, payload = container.unpack(data)[1:]
  assert params[0] == neural.RATE_MIXED_VERSION
  dec, _ = codec.decode_code(data)
  assert dec.qualities == (10, 90)
  np.testing.assert_array_equal(dec.codes[1], qb)
  assert codec.describe(data)["quality"] == "per tile among 10, 90"

  def header(q1, fp2=m.fingerprint):
    return (ByteWriter().u8(neural.RATE_MIXED_VERSION).varint(2).raw(m.fingerprint).u8(q1)
            .raw(fp2).u8(90).varint(16).u8(0).getvalue())

  with pytest.raises(base.CodecError, match="quality 0 is not in 1..100"):
    codec.decompress(container.pack(2, 16, 32, 3, header(0), payload))
  fixed = neural.NeuralCollageCodec(model=models).models[0]
  with pytest.raises(base.CodecError, match="not among the models"):
    codec.decompress(container.pack(2, 16, 32, 3, header(10, fixed.fingerprint), payload))
  with pytest.raises(base.CodecError, match="not both"):
    codec.write_code(neural.TileCode((m, fixed), np.array([0, 1]), (qa, qb), (10, None)),
                     16, 32, 3)


# -- coding at a lower resolution (downscale, file versions 5 and 6) --------------------------
def test_downscale_image_is_the_mean_of_edge_padded_blocks():
  img = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5, 1) * 10 + 1
  img[0, 0, 0] = 2
  small = neural.downscale_image(img, 2)
  assert small.shape == (2, 3, 1)
  assert small[0, 0, 0] == 31                           # (2 + 11 + 51 + 61) / 4 = 31.25
  assert small[1, 2, 0] == 141                          # the corner pixel, padded to 2 x 2
  assert small[0, 2, 0] == 66                           # (41 + 41 + 91 + 91) / 4
  assert neural.downscale_image(img, 1) is img


def test_fractional_downscale_image_is_an_area_average():
  """D = 3/2: every output pixel averages a 1.5 x 1.5 pixel area (weights 4, 2, 2, 1 / 9 of
  the four pixels it overlaps), the image edge-padded."""
  img = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5, 1) * 10 + 1
  small = neural.downscale_image(img, Fraction(3, 2))
  assert small.shape == (2, 4, 1) == (*neural.coded_size(3, 5, Fraction(3, 2)), 1)
  assert small[0, 0, 0] == 21         # (4 * 1 + 2 * 11 + 2 * 51 + 61) / 9
  assert small[1, 1, 0] == 101        # (61 + 2 * 71 + 2 * 111 + 4 * 121) / 9
  assert small[0, 3, 0] == 58         # (6 * 41 + 3 * 91) / 9 = 57.7: the right edge, padded
  flat = np.full((7, 9, 3), 77, np.uint8)
  for d in (Fraction(5, 4), Fraction(3, 2), Fraction(7, 4), Fraction(5, 2)):
    out = neural.downscale_image(flat, d)
    assert out.shape[:2] == neural.coded_size(7, 9, d) and np.all(out == 77)
  assert neural.coded_size(512, 768, Fraction(3, 2)) == (342, 512)


@pytest.mark.parametrize("which", ["cmodel", "vmodel", "fixed"])
def test_downscaled_files_decode_bit_exactly_at_full_size(which, request, tmp_path):
  """A downscale-D file holds the code of the image averaged over D x D blocks (the same
  payload as coding that small image) in a version-5 header; it decodes at D times, cropped
  to the image's size, bit-exactly as the encoder reconstructs it."""
  path = request.getfixturevalue("models") if which == "fixed" else request.getfixturevalue(
      which)
  full = neural.NeuralCollageCodec(model=path)
  for d, img in ((2, _image(37, 21, 3, seed=8)), (3, _image(40, 50, 1, seed=9))):
    codec = neural.NeuralCollageCodec(model=path, downscale=d)
    data = codec.compress(img, 60)
    params, payload = container.unpack(data)[1:]
    assert params[:2] == bytes([neural.DOWNSCALED_VERSION, d])
    small = neural.downscale_image(img, d)
    small_params, small_payload = container.unpack(full.compress(small, 60))[1:]
    assert params[2:] == small_params and payload == small_payload
    assert len(data) < len(full.compress(img, 60))
    code, header = codec.decode_code(data)
    assert code.downscale == d and (header.height, header.width) == img.shape[:2]
    out = codec.decompress(data)
    assert out.shape == img.shape
    np.testing.assert_array_equal(out, codec.reconstruct(codec.encode_code(img, 60),
                                                         *img.shape))
    # The decode is that of the small image at D times, cropped.
    np.testing.assert_array_equal(
        out, full.decompress(full.compress(small, 60), scale=d)[:img.shape[0], :img.shape[1]])
    assert full.decompress(data, scale=2).shape == (2 * img.shape[0], 2 * img.shape[1],
                                                    img.shape[2])
    assert codec.describe(data)["downscale"].startswith(f"{d} (coded at ")
  mixer = neural.NeuralCollageCodec(model=path, mix=True, downscale=2)
  img = _halves(32, 64, 3)
  data = mixer.compress(img, 50)
  np.testing.assert_array_equal(mixer.decompress(data),
                                mixer.reconstruct(mixer.encode_code(img, 50), 32, 64, 3))


@pytest.mark.parametrize("which", ["cmodel", "fixed"])
def test_fractional_downscale_files_decode_bit_exactly_at_full_size(which, request):
  """A downscale-p/q file (version 6) holds the code of the image resampled to q/p of its size
  (the same payload as coding that small image); it decodes every tile at p times, averages
  q x q pixels and crops: bit-exactly as the encoder reconstructs it, and within one grey level
  of the small image's decode at p times averaged over q x q."""
  path = request.getfixturevalue("models" if which == "fixed" else which)
  full = neural.NeuralCollageCodec(model=path)
  for d, img in ((Fraction(3, 2), _image(37, 21, 3, seed=8)),
                 (Fraction(5, 4), _image(40, 50, 1, seed=9))):
    p, q = d.numerator, d.denominator
    codec = neural.NeuralCollageCodec(model=path, downscale=str(d))
    data = codec.compress(img, 60)
    params, payload = container.unpack(data)[1:]
    assert params[:3] == bytes([neural.FRACTIONAL_VERSION, p, q])
    small = neural.downscale_image(img, d)
    small_params, small_payload = container.unpack(full.compress(small, 60))[1:]
    assert params[3:] == small_params and payload == small_payload
    code, header = codec.decode_code(data)
    assert code.downscale == d and (header.height, header.width) == img.shape[:2]
    out = codec.decompress(data)
    assert out.shape == img.shape
    np.testing.assert_array_equal(out, codec.reconstruct(codec.encode_code(img, 60),
                                                         *img.shape))
    big = full.decompress(full.compress(small, 60), scale=p).astype(np.float64)
    hb, wb = big.shape[0] // q * q, big.shape[1] // q * q
    ref = big[:hb, :wb].reshape(hb // q, q, wb // q, q, -1).mean(axis=(1, 3))
    assert np.max(np.abs(out - ref[:img.shape[0], :img.shape[1]])) <= 1.0
    assert full.decompress(data, scale=2).shape == (2 * img.shape[0], 2 * img.shape[1],
                                                    img.shape[2])
    hs, ws = small.shape[:2]
    assert codec.describe(data)["downscale"] == (
        f"{p}/{q} (coded at {ws}x{hs}, decoded at {p}x and averaged over {q}x{q} pixels)")
  mixer = neural.NeuralCollageCodec(model=path, mix=True, downscale=1.5)
  img = _halves(32, 64, 3)
  data = mixer.compress(img, 50)
  assert container.unpack(data)[1][:3] == bytes([neural.FRACTIONAL_VERSION, 3, 2])
  np.testing.assert_array_equal(mixer.decompress(data),
                                mixer.reconstruct(mixer.encode_code(img, 50), 32, 64, 3))


def test_downscale_is_checked(codec, models):
  for bad in (0, 5, True, 1.3, 4.25, "2.1", "3/0", "x", None, [2]):
    with pytest.raises(base.CodecError, match=r"downscale must be a number in 1..4 in steps "
                                              r"of 1/4"):
      neural.NeuralCollageCodec(model=models, downscale=bad)
  for good, value in ((1.5, Fraction(3, 2)), ("3/2", Fraction(3, 2)), (" 1.25", Fraction(5, 4)),
                      (np.int64(2), 2), (Fraction(7, 4), Fraction(7, 4)), ("4", 4)):
    assert neural.NeuralCollageCodec(model=models, downscale=good).downscale == value
  small = neural.NeuralCollageCodec(model=models, downscale=2)
  img = _image(20, 30, 3)
  data = small.compress(img, 50)
  header, params, payload = container.unpack(data)
  for d in (1, 9):
    with pytest.raises(base.CodecError, match=f"downscale {d} is not in 2..4"):
      small.decompress(container.pack(2, 20, 30, 3, params[:1] + bytes([d]) + params[2:],
                                      payload))
  nested = params[:2] + params
  with pytest.raises(base.CodecError, match="unsupported neural codec parameter version 5"):
    small.decompress(container.pack(2, 20, 30, 3, nested, payload))
  # The same payload declared as a full-size code has too few tiles for the image.
  with pytest.raises(base.CodecError, match="corrupt neural payload"):
    small.decompress(container.pack(2, 20, 30, 3, params[2:], payload))
  # A full-size code is not written as a downscaled one.
  code = codec.encode_code(_image(40, 60, 3), 50)
  with pytest.raises(base.CodecError, match="does not cover"):
    codec.write_code(neural.TileCode(code.models, code.choice, code.codes, code.qualities, 2),
                     40, 60, 3)
  # A downscaled decode's memory counts its tiles at scale * downscale.
  assert small.decode_bytes(100, 100, 3, 4, 2) > small.decode_bytes(100, 100, 3, 4)
  assert small.decode_bytes(100, 100, 3, 4, 1.5) == small.decode_bytes(100, 100, 3, 4, 3)


def test_fractional_downscale_is_checked(models):
  small = neural.NeuralCollageCodec(model=models, downscale=1.5)
  data = small.compress(_image(40, 60, 3), 50)  # coded at 27 x 40: 2 x 3 tiles of 16
  _, params, payload = container.unpack(data)
  assert params[:3] == bytes([neural.FRACTIONAL_VERSION, 3, 2])
  # Not in lowest terms, a whole number (version 5's), a denominator the format does not
  # have, at or under 1, over 4.
  for p, q in ((6, 4), (4, 2), (2, 1), (4, 3), (3, 4), (2, 2), (17, 4), (9, 2), (0, 2)):
    with pytest.raises(base.CodecError, match=f"downscale {p}/{q} is not a fraction"):
      small.decompress(container.pack(2, 40, 60, 3, params[:1] + bytes([p, q]) + params[3:],
                                      payload))
  with pytest.raises(base.CodecError, match="unsupported neural codec parameter version 6; "
                                            "this build reads versions 1, 2, 3, 4 inside 6"):
    small.decompress(container.pack(2, 40, 60, 3, params[:3] + params, payload))
  # Another fraction with the same payload declares another coded size (7/2: 12 x 18, 1 x 2
  # tiles): refused.
  with pytest.raises(base.CodecError, match="corrupt neural payload"):
    small.decompress(container.pack(2, 40, 60, 3, params[:1] + bytes([7, 2]) + params[3:],
                                    payload))
  # The decoder averages q x q blocks of decoded tiles: the model's tile must be a multiple
  # of q.
  odd = types.SimpleNamespace(cfg=types.SimpleNamespace(tile=6), name="odd")
  code = small.encode_code(_image(40, 60, 3), 50)
  with pytest.raises(base.CodecError, match="downscale 5/4 needs a tile that is a multiple "
                                            "of 4"):
    neural.TileCode((odd,), code.choice, code.codes, code.qualities, Fraction(5, 4))


def test_cli_downscale_flag(models, tmp_path, capsys):
  from PIL import Image
  from collage.codec import cli
  src = tmp_path / "in.png"
  Image.fromarray(_image(33, 47, 3)).save(src)
  assert cli.main(["compress", "--codec", "neural", "--model", models, "--downscale", "2",
                   "-q", "60", str(src), str(tmp_path / "d.clg")]) == 0
  assert cli.main(["decompress", "--model", models, str(tmp_path / "d.clg"),
                   str(tmp_path / "d.png")]) == 0
  codec = neural.NeuralCollageCodec(model=models, downscale=2)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "d.png")),
                                codec.decompress(codec.compress(_image(33, 47, 3), 60)))
  assert cli.main(["info", "--model", models, str(tmp_path / "d.clg")]) == 0
  assert "downscale" in capsys.readouterr().out
  assert cli.main(["compress", "--codec", "neural", "--model", models, "--downscale", "1.5",
                   "-q", "60", str(src), str(tmp_path / "f.clg")]) == 0
  assert cli.main(["info", "--model", models, str(tmp_path / "f.clg")]) == 0
  assert "3/2 (coded at 32x22, decoded at 3x and averaged over 2x2" in capsys.readouterr().out
  for flags, message in ((["--codec", "neural", "--downscale", "7"], "--downscale must be"),
                         (["--codec", "neural", "--downscale", "1.1"],
                          "--downscale must be a number in 1..4 in steps of 1/4"),
                         (["--codec", "pifs", "--downscale", "2"],
                          "--downscale applies only to learned codecs")):
    assert cli.main(["compress", *flags, str(src), str(tmp_path / "x.clg")]) == 2
    assert message in capsys.readouterr().err
