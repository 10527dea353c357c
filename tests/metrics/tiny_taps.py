"""A cheap stand-in for the Inception network with the same taps, for tests of the plumbing
(sharding, chunking, gathering, evaluators): the real network costs ~5.7 G multiply-adds per
image."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from collage.nn import inception


class TinyTaps(nnx.Module):
  """images [N, H, W, 3] in [0, 255] -> {"pool": [N, 2048], "spatial": [N, 2023],
  "logits": [N, 1008]}: a 4 x 4 bilinear thumbnail through three fixed random projections."""

  def __init__(self, seed: int = 0):
    rng = np.random.default_rng(seed)
    dims = {"pool": inception.POOL_DIM, "spatial": inception.SPATIAL_DIM,
            "logits": inception.NUM_CLASSES}
    for tap, dim in dims.items():
      setattr(self, tap, nnx.Param(jnp.asarray(rng.normal(size=(48, dim)), jnp.float32) / 7))

  def __call__(self, images):
    x = jax.image.resize(images, (images.shape[0], 4, 4, 3), "linear") / 255.0
    x = x.reshape(images.shape[0], 48)
    return {tap: jnp.tanh(x @ getattr(self, tap)[...]) * 3 for tap in ("pool", "spatial",
                                                                         "logits")}
