"""The tiny DCTransformer the model and sampler tests share: 16x16 colour images (a 2x2 grid of
96 channels), capacity 48, chunks of 16."""

import functools

import jax
from flax import nnx

from collage.nn import dctransformer as dm
from collage.ops import sparse_dct

LAYOUT = sparse_dct.layout_for(16, 16, True, 4)   # 2x2 grid, 96 channels
CAP = 48


@functools.lru_cache(maxsize=1)
def model() -> dm.DCTransformer:
  """The model, built once per process. Tests call this inside jitted functions too: the
  parameters are made eagerly even there, or the cache would keep the first trace's tracers
  (which then leak into whichever test calls next)."""
  cfg = dm.DCTConfig(channels=LAYOUT.channels, positions=LAYOUT.positions, max_value=12,
                     chunk=16, dim=32, heads=2, encoder_layers=1, decoder_layers=1)
  with jax.ensure_compile_time_eval():
    return dm.DCTransformer(cfg, rngs=nnx.Rngs(3))
