"""The DCT image and its sparse form: a list of (channel, position, value) triples.

DCTransformer (Nash et al., ICML 2021, Sec. 3) models an image as the non-zero entries of its
quantized "DCT image": every component's coefficient blocks laid on one position grid. For 4:2:0
colour the luma has twice the blocks of the chroma along each axis, so each 2x2 group of luma
blocks is moved into the channels (space-to-depth) and all channels share the chroma grid:

  gray: C = B*B channels (zig-zag frequencies), grid [H/B, W/B]
  4:2:0: C = 6 B*B channels (components Y00, Y01, Y10, Y11, Cb, Cr, each B*B frequencies;
         channel = component * B*B + frequency), grid [H/2B, W/2B]

The sequence lists the non-zero entries channel-major (the paper's order): channels by rank,
positions in raster order within a channel. The rank of a channel comes from an ordering:

  "interleaved": low frequency first; within a frequency, the components in the order above.
                 The first 6 (colour) or 1 (gray) ranks are the DC of every block: the 8x
                 downsampled image, the prefix that 8x upsampling conditions on.
  "luma_first":  every luma channel (frequency-major), then the chroma ones: the luma prefix
                 that colorization conditions on.

A sequence of capacity L holds int32 arrays [L]: ``ranks`` (the channel's rank; ``C`` is the
end-of-sequence token), ``positions`` (raster index on the grid), ``values`` (the non-zero
quantized coefficient) and the ``length`` of the real part including end-of-sequence. Entries
from ``length`` on are padding: rank ``C``, position 0, value 0.

:func:`encode` runs on the host (it checks lengths and raises); :func:`decode` and
:func:`scatter_prefix` are jnp and traceable (the model and the sampler use them).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

ORDERS = ("interleaved", "luma_first")


@dataclasses.dataclass(frozen=True)
class Layout:
  """The DCT image's geometry.

  Attributes:
    freqs: coefficients per block, B*B.
    color: 4:2:0 colour (6 components per grid cell) or gray (1).
    grid: (rows, cols) of the position grid.
    order: the channel ordering (one of ORDERS).
  """
  freqs: int
  color: bool
  grid: tuple[int, int]
  order: str = "interleaved"

  def __post_init__(self):
    if self.order not in ORDERS:
      raise ValueError(f"unknown channel order {self.order!r}; valid: {', '.join(ORDERS)}")

  @property
  def components(self) -> int:
    return 6 if self.color else 1

  @property
  def channels(self) -> int:
    """C: channels of the DCT image; the end-of-sequence rank."""
    return self.components * self.freqs

  @property
  def positions(self) -> int:
    return self.grid[0] * self.grid[1]

  @property
  def luma_channels(self) -> int:
    return (4 if self.color else 1) * self.freqs

  def channel_of_rank(self) -> np.ndarray:
    """int32 [C]: entry r is the channel of rank r."""
    return _channel_of_rank(self.freqs, self.color, self.order)

  def dc_ranks(self) -> int:
    """Ranks holding the DC of every block under "interleaved" (the 8x upsampling prefix)."""
    if self.order != "interleaved":
      raise ValueError("the DC channels are a prefix of the ranks under order 'interleaved' only")
    return self.components


def layout_for(height: int, width: int, color: bool, block: int = 8,
               order: str = "interleaved") -> Layout:
  """The layout of a [height, width] image (multiples of 2B for colour, B for gray)."""
  cell = 2 * block if color else block
  return Layout(block * block, color, (height // cell, width // cell), order)


@functools.lru_cache(maxsize=None)
def _channel_of_rank(freqs: int, color: bool, order: str) -> np.ndarray:
  comps = 6 if color else 1
  channel = lambda comp, f: comp * freqs + f  # noqa: E731
  if order == "interleaved" or not color:
    ranked = [channel(c, f) for f in range(freqs) for c in range(comps)]
  else:
    ranked = ([channel(c, f) for f in range(freqs) for c in range(4)]
              + [channel(c, f) for f in range(freqs) for c in (4, 5)])
  out = np.array(ranked, np.int32)
  out.setflags(write=False)
  return out


# -- the dense DCT image ----------------------------------------------------------------------

def dct_image(components) -> jax.Array:
  """Components -> the DCT image.

  components: (Y [2h, 2w, F], Cb [h, w, F], Cr [h, w, F]) or (Y [h, w, F],) zig-zag
  -> [h, w, C] (channel = component * F + frequency).
  """
  y = jnp.asarray(components[0])
  if len(components) == 1:
    return y
  h, w, f = components[1].shape
  luma = y.reshape(h, 2, w, 2, f).transpose(0, 2, 1, 3, 4).reshape(h, w, 4 * f)
  return jnp.concatenate([luma, jnp.asarray(components[1]), jnp.asarray(components[2])], axis=-1)


def components_of(image: jax.Array, color: bool) -> tuple[jax.Array, ...]:
  """Inverse of :func:`dct_image`: [h, w, C] -> (Y, Cb, Cr) or (Y,)."""
  if not color:
    return (image,)
  h, w, c = image.shape
  f = c // 6
  y = image[..., :4 * f].reshape(h, w, 2, 2, f).transpose(0, 2, 1, 3, 4).reshape(2 * h, 2 * w, f)
  return y, image[..., 4 * f:5 * f], image[..., 5 * f:]


# -- sparse sequences -------------------------------------------------------------------------

def encode(image: np.ndarray, layout: Layout, capacity: int, *, truncate: bool = False,
           max_value: int | None = None, clip_values: bool = False) -> dict[str, np.ndarray]:
  """The sparse sequence of a DCT image (host function: numpy in, numpy out).

  Args:
    image: int [rows, cols, C], the layout's grid.
    layout: its layout (the ordering decides the ranks).
    capacity: L, the length of the returned arrays (non-zeros plus end-of-sequence).
    truncate: keep the first L non-zeros (no end-of-sequence) when there are L or more;
      without it such an image is an error.
    max_value: the largest |value| the model's vocabulary holds (None: no limit).
    clip_values: clip values to +-max_value instead of raising.

  Returns:
    {"ranks", "positions", "values": int32 [L], "length": int32 [] (with EOS),
     "truncated": bool []}.

  Raises:
    ValueError: a shape that does not match the layout, too many non-zeros without
      ``truncate``, or values beyond ``max_value`` without ``clip_values``.
  """
  image = np.asarray(image)
  expected = (*layout.grid, layout.channels)
  if image.shape != expected:
    raise ValueError(f"DCT image of shape {image.shape} does not match the layout {expected}")
  ranked = image.reshape(layout.positions, layout.channels)[:, layout.channel_of_rank()].T
  flat = np.flatnonzero(ranked)  # channel-major: rank * P + position, ascending
  n = len(flat)
  if n >= capacity and not truncate:
    raise ValueError(f"the image has {n} non-zero coefficients, but the sequence holds "
                     f"{capacity} entries ({capacity - 1} plus end-of-sequence); raise the "
                     "capacity (model.max_len) or pass truncate=True to keep the first ones")
  keep = flat[:capacity] if n >= capacity else flat
  values = ranked.reshape(-1)[keep].astype(np.int64)
  if max_value is not None and values.size and np.abs(values).max() > max_value:
    if not clip_values:
      raise ValueError(f"a coefficient of magnitude {np.abs(values).max()} exceeds the "
                       f"vocabulary's max_value {max_value}; raise max_value or clip explicitly")
    values = np.clip(values, -max_value, max_value)
  out_r = np.full(capacity, layout.channels, np.int32)
  out_p = np.zeros(capacity, np.int32)
  out_v = np.zeros(capacity, np.int32)
  k = len(keep)
  out_r[:k] = keep // layout.positions
  out_p[:k] = keep % layout.positions
  out_v[:k] = values
  truncated = n >= capacity
  return {"ranks": out_r, "positions": out_p, "values": out_v,
          "length": np.int32(k if truncated else k + 1), "truncated": np.bool_(truncated)}


def scatter_prefix(ranks: jax.Array, positions: jax.Array, values: jax.Array, count: jax.Array,
                   layout: Layout) -> jax.Array:
  """The first ``count`` entries (end-of-sequence and padding ignored) as a ranked image.

  ranks, positions, values: int [L]; count: int [] -> int32 [P, C] (channel axis by rank).
  """
  keep = (jnp.arange(ranks.shape[0]) < count) & (ranks < layout.channels)
  r = jnp.where(keep, ranks, 0)
  return jnp.zeros((layout.positions, layout.channels), jnp.int32).at[positions, r].add(
      jnp.where(keep, values, 0))


def ranked_to_image(ranked: jax.Array, layout: Layout) -> jax.Array:
  """[P, C] by rank -> the DCT image [rows, cols, C] by channel."""
  by_channel = ranked[:, np.argsort(layout.channel_of_rank())]
  return by_channel.reshape(*layout.grid, layout.channels)


def decode(seq: dict[str, jax.Array], layout: Layout) -> jax.Array:
  """Inverse of :func:`encode`: a sequence -> the DCT image int32 [rows, cols, C].

  Everything up to the first end-of-sequence (or the whole capacity) is scattered.
  """
  ranks = jnp.asarray(seq["ranks"])
  is_eos = ranks >= layout.channels
  count = jnp.where(jnp.any(is_eos), jnp.argmax(is_eos), ranks.shape[0])
  ranked = scatter_prefix(ranks, jnp.asarray(seq["positions"]), jnp.asarray(seq["values"]),
                          count, layout)
  return ranked_to_image(ranked, layout)
