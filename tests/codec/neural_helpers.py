"""Small random Neural Collage models and test images for the neural codec's tests (the
fixtures built from them: ``tests/codec/conftest.py``)."""

import numpy as np

from collage.nn import neural_collage as hn
from collage.nn import neural_collage_io

TINY = dict(tile=16, luma_range=4, luma_domain=8, luma_stride=8, luma_aux=3, chroma_range=8,
            chroma_aux=2, width=8, depth=1, hidden=16, support=15, decode_steps=4)


def save_model(path, seed, lam, **over):
  """A random TINY model (``over`` replaces config fields) exported to ``path`` with training
  ``lam`` in its meta -> the path."""
  m = neural_collage_io.random_model(hn.ModelConfig(**{**TINY, **over}), seed=seed)
  # Make the code non-trivial: biased heads give non-zero parameters.
  m.encoder.head_g2.bias[...] = m.encoder.head_g2.bias[...] + 3.0
  m.encoder.head_w.bias[...] = m.encoder.head_w.bias[...] + 1.0
  neural_collage_io.save_model(m, str(path), {"lam": lam})
  return str(path)


def make_image(h, w, c, seed=0):
  """uint8 [h, w, c]: a smooth pattern plus noise."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  smooth = 128 + 60 * np.sin(xx / 5.0)[..., None] * np.cos(yy / 7.0)[..., None]
  img = smooth + rng.normal(0, 10, (h, w, c))
  return np.clip(img, 0, 255).astype(np.uint8)


def halves(h, w, c, seed=0):
  """Left half flat, right half noise: tiles that different models should win."""
  img = make_image(h, w, c, seed)
  img[:, : w // 2] = 120
  return img
