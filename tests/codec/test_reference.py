"""The reference codecs: real files, sensible rates, monotone in quality, clear errors."""

import numpy as np
import pytest
import skimage.data

from collage.codec import reference
from collage.codec.base import CodecError, codec_names, get_codec
from collage.metrics.distortion import psnr

_IMAGE = skimage.data.astronaut()[100:228, 150:310]


@pytest.mark.parametrize("name", ["jpeg", "webp", "jpeg2000"])
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_and_monotone(name, channels):
  img = _IMAGE[..., :channels]
  codec = get_codec(name)
  assert name in codec_names() and codec.codec_id is None
  sizes, quality = [], []
  for q in (10, 50, 90):
    data = codec.compress(img, q)
    assert reference.sniff(data) == name
    out = codec.decompress(data)
    if name == "webp" and channels == 1:  # lossy WebP has no gray mode: it decodes to RGB
      assert out.shape == img.shape[:2] + (3,)
      out = out[..., 1:2]
    assert out.shape == img.shape and out.dtype == np.uint8
    sizes.append(len(data))
    quality.append(psnr(img, out, 255))
  assert sizes == sorted(sizes) and quality == sorted(quality)
  assert quality[-1] > 30
  assert codec.decompress(data, scale=2).shape[:2] == (256, 320)


@pytest.mark.parametrize("name", ["jpeg", "webp", "jpeg2000"])
def test_errors(name):
  codec = get_codec(name)
  with pytest.raises(CodecError, match="1..100"):
    codec.compress(_IMAGE, 0)
  with pytest.raises(CodecError, match=r"C = 1 \(gray\) or 3"):
    codec.compress(np.zeros((8, 8, 2), np.uint8), 50)
  with pytest.raises(CodecError, match="uint8"):
    codec.compress(np.zeros((8, 8, 3), np.float32), 50)
  data = codec.compress(_IMAGE, 50)
  with pytest.raises(CodecError, match="wrong signature"):
    codec.decompress(b"CLG\x1a" + data)
  with pytest.raises(CodecError, match="corrupt"):
    codec.decompress(data[:len(data) // 3])


def test_jpeg2000_quality_maps_to_ratio():
  assert reference.jpeg2000_ratio(100) == 1.0
  assert reference.jpeg2000_ratio(52) == pytest.approx(16.0)
  data = get_codec("jpeg2000").compress(skimage.data.astronaut(), 52)
  assert 8 * len(data) / 512**2 == pytest.approx(24 / 16, rel=0.05)


@pytest.mark.parametrize("name", ["jpeg", "webp", "jpeg2000"])
def test_every_truncation_is_refused(name):
  """These formats carry no checksum, so a flipped byte may decode into another picture (the
  container of this project's own codecs has one); a file cut short must still be refused.
  OpenJPEG alone decodes some cut codestreams, which the EOC marker check catches."""
  codec = get_codec(name)
  data = codec.compress(_IMAGE, 50)
  for n in range(len(data)):
    with pytest.raises(CodecError, match="corrupt|wrong signature"):
      codec.decompress(data[:n])
