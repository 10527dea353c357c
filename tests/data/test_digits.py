"""The embedded digit set: fixed balanced split, through the source and pipeline."""

import numpy as np
import pytest

from collage.data import digits, pipeline
from collage.data.sources import open_source


def test_split_is_fixed_balanced_and_disjoint():
  train_x, train_y = digits.digit_images("train")
  eval_x, eval_y = digits.digit_images("eval")
  all_x, _ = digits.digit_images("all")
  assert train_x.shape == (4500, 28, 28, 1) and eval_x.shape == (500, 28, 28, 1)
  assert train_x.dtype == np.uint8 and all_x.max() == 255
  assert np.all(np.bincount(train_y) == 450) and np.all(np.bincount(eval_y) == 50)
  flat = {x.tobytes() for x in train_x}
  assert sum(x.tobytes() in flat for x in eval_x) <= 5, "held-out digits must not be train digits"
  with pytest.raises(ValueError, match="train, eval, all"):
    digits.digit_images("test")


def test_digits_source_and_pipeline():
  src = open_source("digits", split="eval", channels=1)
  assert len(src) == 500 and src[0]["image"].shape == (28, 28, 1) and src[0]["label"] == 0
  batch = next(iter(pipeline.make_image_dataset("digits", split="train", crop_size=None,
                                                batch_size=8, seed=0, channels=1)))
  assert batch["image"].shape == (8, 28, 28, 1) and batch["image"].max() <= 1.0
