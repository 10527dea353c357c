"""The neural codec's geometry (:mod:`collage.codec.neural_tiles`): the area-averaged
downscale, and files coded at a lower resolution (versions 5 and 6) that decode at full
size."""

from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from collage.codec import cli, container, neural, neural_format, neural_tiles
from tests.codec.neural_helpers import halves, make_image


def test_downscale_image_is_the_mean_of_edge_padded_blocks():
  img = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5, 1) * 10 + 1
  img[0, 0, 0] = 2
  small = neural_tiles.downscale_image(img, 2)
  assert small.shape == (2, 3, 1)
  assert small[0, 0, 0] == 31                           # (2 + 11 + 51 + 61) / 4 = 31.25
  assert small[1, 2, 0] == 141                          # the corner pixel, padded to 2 x 2
  assert small[0, 2, 0] == 66                           # (41 + 41 + 91 + 91) / 4
  assert neural_tiles.downscale_image(img, 1) is img


def test_fractional_downscale_image_is_an_area_average():
  """D = 3/2: every output pixel averages a 1.5 x 1.5 pixel area (weights 4, 2, 2, 1 / 9 of
  the four pixels it overlaps), the image edge-padded."""
  img = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5, 1) * 10 + 1
  small = neural_tiles.downscale_image(img, Fraction(3, 2))
  assert small.shape == (2, 4, 1) == (*neural_tiles.coded_size(3, 5, Fraction(3, 2)), 1)
  assert small[0, 0, 0] == 21         # (4 * 1 + 2 * 11 + 2 * 51 + 61) / 9
  assert small[1, 1, 0] == 101        # (61 + 2 * 71 + 2 * 111 + 4 * 121) / 9
  assert small[0, 3, 0] == 58         # (6 * 41 + 3 * 91) / 9 = 57.7: the right edge, padded
  flat = np.full((7, 9, 3), 77, np.uint8)
  for d in (Fraction(5, 4), Fraction(3, 2), Fraction(7, 4), Fraction(5, 2)):
    out = neural_tiles.downscale_image(flat, d)
    assert out.shape[:2] == neural_tiles.coded_size(7, 9, d) and np.all(out == 77)
  assert neural_tiles.coded_size(512, 768, Fraction(3, 2)) == (342, 512)


@pytest.mark.parametrize("which", ["cmodel", "vmodel", "fixed"])
def test_downscaled_files_decode_bit_exactly_at_full_size(which, request, tmp_path):
  """A downscale-D file holds the code of the image averaged over D x D blocks (the same
  payload as coding that small image) in a version-5 header; it decodes at D times, cropped
  to the image's size, bit-exactly as the encoder reconstructs it."""
  path = request.getfixturevalue("models") if which == "fixed" else request.getfixturevalue(
      which)
  full = neural.NeuralCollageCodec(model=path)
  for d, img in ((2, make_image(37, 21, 3, seed=8)), (3, make_image(40, 50, 1, seed=9))):
    codec = neural.NeuralCollageCodec(model=path, downscale=d)
    data = codec.compress(img, 60)
    params, payload = container.unpack(data)[1:]
    assert params[:2] == bytes([neural_format.DOWNSCALED_VERSION, d])
    small = neural_tiles.downscale_image(img, d)
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
  img = halves(32, 64, 3)
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
  for d, img in ((Fraction(3, 2), make_image(37, 21, 3, seed=8)),
                 (Fraction(5, 4), make_image(40, 50, 1, seed=9))):
    p, q = d.numerator, d.denominator
    codec = neural.NeuralCollageCodec(model=path, downscale=str(d))
    data = codec.compress(img, 60)
    params, payload = container.unpack(data)[1:]
    assert params[:3] == bytes([neural_format.FRACTIONAL_VERSION, p, q])
    small = neural_tiles.downscale_image(img, d)
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
  img = halves(32, 64, 3)
  data = mixer.compress(img, 50)
  assert container.unpack(data)[1][:3] == bytes([neural_format.FRACTIONAL_VERSION, 3, 2])
  np.testing.assert_array_equal(mixer.decompress(data),
                                mixer.reconstruct(mixer.encode_code(img, 50), 32, 64, 3))


def test_cli_downscale_flag(models, tmp_path, capsys):
  src = tmp_path / "in.png"
  Image.fromarray(make_image(33, 47, 3)).save(src)
  assert cli.main(["compress", "--codec", "neural", "--model", models, "--downscale", "2",
                   "-q", "60", str(src), str(tmp_path / "d.clg")]) == 0
  assert cli.main(["decompress", "--model", models, str(tmp_path / "d.clg"),
                   str(tmp_path / "d.png")]) == 0
  codec = neural.NeuralCollageCodec(model=models, downscale=2)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "d.png")),
                                codec.decompress(codec.compress(make_image(33, 47, 3), 60)))
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

