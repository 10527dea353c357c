"""The embedded default dataset: photographs that the dependencies ship (no network).

Seventeen photographs: fifteen from ``skimage.data`` (the ones that load from the
scikit-image wheel without the optional ``pooch`` download) and two from
``pywt.data``. ``pywt.data.camera()`` is left out because it is the same array as
``skimage.data.camera()``. Synthetic graphics (colorwheel, logo, checkerboard, the
horse silhouette, binary blobs) are left out because the dataset is meant to carry
photographic image statistics; tiny images (microaneurysms 102x102, text, page) are
left out so that every image is at least 300 pixels on its short side: any crop up to
300x300 works on every image.

Split (fixed; names in ``EVAL_NAMES``): "eval" holds out astronaut (RGB portrait),
coffee (RGB still life) and gravel (gray texture); "train" is the other fourteen;
"all" is all seventeen. Order is the order of ``EMBEDDED_NAMES`` (alphabetical).
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from collage.images import to_channels


def _skimage(name: str) -> Callable[[], np.ndarray]:
  def load():
    import skimage.data  # pylint: disable=g-import-not-at-top
    return getattr(skimage.data, name)()
  return load


def _pywt(name: str) -> Callable[[], np.ndarray]:
  def load():
    import pywt.data  # pylint: disable=g-import-not-at-top
    return getattr(pywt.data, name)()
  return load


def _motorcycle() -> np.ndarray:
  import skimage.data  # pylint: disable=g-import-not-at-top
  left, _, _ = skimage.data.stereo_motorcycle()
  return left


# name -> loader of a uint8 [H, W] or [H, W, 3] array. Sizes are H x W.
_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "aero": _pywt("aero"),                                    # 512x512 gray, aerial photo
    "ascent": _pywt("ascent"),                                # 512x512 gray
    "astronaut": _skimage("astronaut"),                       # 512x512 RGB
    "brick": _skimage("brick"),                               # 512x512 gray
    "camera": _skimage("camera"),                             # 512x512 gray
    "chelsea": _skimage("chelsea"),                           # 300x451 RGB
    "clock": _skimage("clock"),                               # 300x400 gray
    "coffee": _skimage("coffee"),                             # 400x600 RGB
    "coins": _skimage("coins"),                               # 303x384 gray
    "grass": _skimage("grass"),                               # 512x512 gray
    "gravel": _skimage("gravel"),                             # 512x512 gray
    "hubble_deep_field": _skimage("hubble_deep_field"),       # 872x1000 RGB
    "immunohistochemistry": _skimage("immunohistochemistry"),  # 512x512 RGB
    "moon": _skimage("moon"),                                 # 512x512 gray
    "motorcycle": _motorcycle,                                # 500x741 RGB (stereo left)
    "retina": _skimage("retina"),                             # 1411x1411 RGB
    "rocket": _skimage("rocket"),                             # 427x640 RGB
}

EMBEDDED_NAMES: tuple[str, ...] = tuple(sorted(_LOADERS))
EVAL_NAMES: tuple[str, ...] = ("astronaut", "coffee", "gravel")
TRAIN_NAMES: tuple[str, ...] = tuple(n for n in EMBEDDED_NAMES if n not in EVAL_NAMES)
SPLITS: dict[str, tuple[str, ...]] = {
    "train": TRAIN_NAMES, "eval": EVAL_NAMES, "all": EMBEDDED_NAMES}
MIN_SIDE = 300  # every embedded image is at least this many pixels high and wide


@functools.lru_cache(maxsize=None)
def _load(name: str) -> np.ndarray:
  image = np.asarray(_LOADERS[name]())
  if image.dtype != np.uint8:
    raise TypeError(f"embedded image {name!r} has dtype {image.dtype}, expected uint8")
  image = to_channels(image, 3 if image.ndim == 3 else 1)
  image.setflags(write=False)
  return image


@functools.lru_cache(maxsize=None)
def _converted(name: str, channels: int) -> np.ndarray:
  image = to_channels(_load(name), channels)
  image.setflags(write=False)
  return image


def embedded_images(channels: int = 3, split: str = "all") -> list[tuple[str, np.ndarray]]:
  """The embedded photographs, decoded once and cached (read-only arrays).

  Args:
    channels: 3 (gray images repeated to RGB) or 1 (RGB images to BT.601 luma).
    split: "all", "train" or "eval" (see the module docstring).

  Returns:
    ``[(name, uint8 [H, W, channels]), ...]`` in the order of ``SPLITS[split]``.
  """
  if split not in SPLITS:
    raise ValueError(f"unknown embedded split {split!r}; valid splits: {sorted(SPLITS)}")
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels}")
  return [(name, _converted(name, channels)) for name in SPLITS[split]]
