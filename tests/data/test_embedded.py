"""The embedded photographs: offline, stable names, a fixed eval split."""

import numpy as np
import pytest

from collage.data import embedded


def test_names_are_stable_and_splits_partition():
  assert embedded.EMBEDDED_NAMES == tuple(sorted(embedded.EMBEDDED_NAMES))
  assert len(embedded.EMBEDDED_NAMES) == 17
  assert {"aero", "astronaut", "camera", "retina"} <= set(embedded.EMBEDDED_NAMES)
  assert embedded.EVAL_NAMES == ("astronaut", "coffee", "gravel")
  assert set(embedded.TRAIN_NAMES) | set(embedded.EVAL_NAMES) == set(embedded.EMBEDDED_NAMES)
  assert not set(embedded.TRAIN_NAMES) & set(embedded.EVAL_NAMES)


@pytest.mark.parametrize("channels", [1, 3])
def test_images_are_uint8_hwc_with_requested_channels(channels):
  named = embedded.embedded_images(channels=channels)
  assert [n for n, _ in named] == list(embedded.EMBEDDED_NAMES)
  for name, image in named:
    assert image.dtype == np.uint8, name
    assert image.ndim == 3 and image.shape[-1] == channels, (name, image.shape)
    assert min(image.shape[:2]) >= embedded.MIN_SIDE, (name, image.shape)
    assert image.std() > 5, name  # a real picture, not a constant


def test_cached_and_split_order():
  a = embedded.embedded_images(3, split="eval")
  b = embedded.embedded_images(3, split="eval")
  assert [n for n, _ in a] == list(embedded.EVAL_NAMES)
  assert all(x is y for (_, x), (_, y) in zip(a, b))  # decoded once
  with pytest.raises(ValueError, match="valid splits"):
    embedded.embedded_images(3, split="test")


def test_gray_to_rgb_and_rgb_to_gray():
  rgb = dict(embedded.embedded_images(3))
  gray = dict(embedded.embedded_images(1))
  cam = rgb["camera"]  # a gray photograph, repeated to RGB
  assert np.array_equal(cam[..., 0], cam[..., 1])
  assert np.array_equal(cam[..., 0], gray["camera"][..., 0])
  luma = rgb["astronaut"].astype(np.float64) @ [0.299, 0.587, 0.114]
  assert np.abs(luma - gray["astronaut"][..., 0]).max() <= 0.5 + 1e-9
