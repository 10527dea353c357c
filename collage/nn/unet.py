"""A U-Net of 5x5 conv + instance norm + ReLU blocks, built to be rendered in tiles.

    x: [N, H, W, Cin] -> [N, H, W, Cout]      H, W multiples of 2**(depth - 1)

Level l (0 = full resolution) has ``width * 2**l`` channels and ``blocks`` conv blocks on the
way down and again on the way up; levels are joined by 2x2 average pooling and nearest-neighbour
upsampling, and each decoder level concatenates the encoder's features of its level (skip
connections). A caller may transform the features after every level's blocks (``mix``; the
set-transformer U-Net of ``collage.nn.magic`` attends across a set there).

Tiles. Instance normalisation is the only operation that looks at the whole image. Its
statistics travel in a :class:`Norms` record: computed from the input (training), recorded
(one pass over a reference window) or replayed (every tile of a large image). With replayed
statistics every output pixel depends only on inputs within :meth:`UNet.radius` pixels, so an
image rendered in overlapping tiles, each padded by that radius, equals the image rendered at
once. ``valid`` [H, W] (1 inside the image) zeroes the features outside the image before every
convolution, as a whole-image 'SAME' convolution pads with zeros at the image border only.

Precision. The convolutions run in ``dtype`` (the input is cast to it at the entry) on float32
parameters; instance-norm statistics and the normalisation itself are float32 whatever the
compute dtype, and :class:`Norms` records them as float32. ``remat`` (a
:data:`collage.nn.precision.REMAT` name) recomputes each conv block in the backward pass; a
decoder level's first block takes the lower level's output and the skip and concatenates them
inside, so the concatenation (the widest activation) is recomputed, not kept.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from collage.nn import precision

KERNEL = 5  # conv kernel side of every block (the paper's 5x5)
EPS = 1e-5  # instance-norm variance floor


class Norms:
  """Instance-norm statistics for one forward pass: computed, recorded or replayed.

  A norm's statistics are ``(shift, mean, var)`` ([N, 1, 1, C] each): ``shift`` is the input's
  top-left value, ``mean`` and ``var`` those of ``x - shift``. Normalising ``(x - shift) - mean``
  gives exactly zero on a flat input (a constant crop, or zero padding), where ``x - mean(x)``
  would leave rounding noise that 1/sqrt(eps) magnifies and a ReLU turns into noise in the
  gradient.

  Args:
    replay: statistics recorded by an earlier pass, used in the same order; None computes each
      norm's statistics from its input.

  After a pass, ``recorded`` holds every norm's statistics in call order, computed or replayed.
  """

  def __init__(self, replay: Sequence[tuple[jax.Array, ...]] | None = None):
    self.replay = None if replay is None else list(replay)
    self.recorded: list[tuple[jax.Array, ...]] = []

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The statistics for the next norm, whose input is x: [N, H, W, C]."""
    if self.replay is None:
      shift = x[:, :1, :1, :]
      d = x - shift
      mean = jnp.mean(d, axis=(1, 2), keepdims=True)
      var = jnp.mean(jnp.square(d - mean), axis=(1, 2), keepdims=True)
      stats = (shift, mean, var)
    else:
      if len(self.recorded) >= len(self.replay):
        raise ValueError(f"replayed {len(self.replay)} instance-norm statistics, but the network "
                         "has more norms: they were recorded with another architecture")
      stats = self.replay[len(self.recorded)]
    self.recorded.append(stats)
    return stats


class InstanceNorm(nnx.Module):
  """Per-sample, per-channel normalisation over space, with a learned scale and bias.

  x: [N, H, W, C] -> [N, H, W, C] in x's dtype; statistics from ``norms`` (None: from x), the
  statistics and the normalisation in float32.
  """

  def __init__(self, channels: int):
    self.scale = nnx.Param(jnp.ones((channels,)))
    self.bias = nnx.Param(jnp.zeros((channels,)))

  def __call__(self, x: jax.Array, norms: Norms | None = None) -> jax.Array:
    x32 = precision.f32(x)
    shift, mean, var = (norms or Norms())(x32)
    y = ((x32 - shift) - mean) * jax.lax.rsqrt(var + EPS) * self.scale[...] + self.bias[...]
    return y.astype(x.dtype)


class ConvBlock(nnx.Module):
  """5x5 conv ('SAME') + instance norm + ReLU. x: [N, H, W, Cin] -> [N, H, W, Cout].

  With ``skip`` [N, 2H, 2W, Cs] (a decoder level's first block), the input is
  ``concat(upsample2(x), skip)`` and Cin counts both.
  """

  def __init__(self, cin: int, cout: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = nnx.Conv(cin, cout, (KERNEL, KERNEL), padding="SAME", dtype=dtype,
                         param_dtype=jnp.float32, rngs=rngs)
    self.norm = InstanceNorm(cout)

  def __call__(self, x: jax.Array, norms: Norms | None = None,
               valid: jax.Array | None = None, skip: jax.Array | None = None) -> jax.Array:
    if skip is not None:
      x = jnp.concatenate([upsample2(x), skip], axis=-1)
    if valid is not None:
      x = x * valid
    return jax.nn.relu(self.norm(self.conv(x), norms))


def pool2(x: jax.Array) -> jax.Array:
  """2x2 average pooling. x: [N, H, W, C] -> [N, H/2, W/2, C]."""
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def upsample2(x: jax.Array) -> jax.Array:
  """Nearest-neighbour upsampling by 2. x: [N, H, W, C] -> [N, 2H, 2W, C]."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class UNet(nnx.Module):
  """The U-Net of the module docstring.

  Args:
    cin, cout: input and output channels.
    width: channels at full resolution (doubling at every level).
    depth: resolution levels (depth - 1 poolings).
    blocks: conv blocks per level, on the way down and on the way up.
    remat: a :data:`collage.nn.precision.REMAT` name: ``none`` keeps every activation for the
      backward pass; otherwise each conv block is recomputed from its input (less memory, about
      one more forward pass of compute). Only where the statistics come from the input
      (``norms=None``): replayed statistics are a render path.
    dtype: the compute dtype of the convolutions (parameters stay float32).
  """

  def __init__(self, cin: int, cout: int, width: int, depth: int, blocks: int = 1, *,
               remat: str = "none", dtype=jnp.float32, rngs: nnx.Rngs):
    if depth < 1 or blocks < 1 or width < 1:
      raise ValueError(f"U-Net needs depth >= 1, blocks >= 1, width >= 1; got depth={depth}, "
                       f"blocks={blocks}, width={width}")
    self.depth, self.blocks = depth, blocks
    self.remat, self.dtype = precision.check_remat(remat), dtype
    self.widths = [width * 2 ** level for level in range(depth)]
    down, c = [], cin
    for w in self.widths:
      down.append(nnx.List([ConvBlock(c if i == 0 else w, w, dtype=dtype, rngs=rngs)
                            for i in range(blocks)]))
      c = w
    up = []
    for level in range(depth - 2, -1, -1):
      w = self.widths[level]
      up.append(nnx.List([ConvBlock(c + w if i == 0 else w, w, dtype=dtype, rngs=rngs)
                          for i in range(blocks)]))
      c = w
    self.down, self.up = nnx.List(down), nnx.List(up)
    self.head = nnx.Conv(c, cout, (1, 1), dtype=dtype, param_dtype=jnp.float32, rngs=rngs)

  @property
  def alignment(self) -> int:
    """Image sides (and tile offsets) must be multiples of this: 2**(depth - 1)."""
    return 2 ** (self.depth - 1)

  def radius(self) -> int:
    """Pixels of context an output pixel depends on (with replayed statistics), an upper bound.

    A 5x5 conv at level l reaches 2 * 2**l full-resolution pixels; pooling to level l + 1 and
    upsampling back each reach at most 2**(l + 1) - 1 more.
    """
    r = 0
    for level in range(self.depth):
      convs = self.blocks if level == self.depth - 1 else 2 * self.blocks
      r += convs * (KERNEL // 2) * 2 ** level
      if level < self.depth - 1:
        r += 2 * (2 ** (level + 1) - 1)
    return r

  def __call__(self, x: jax.Array, norms: Norms | None = None, valid: jax.Array | None = None,
               mix: Callable[[int, jax.Array], jax.Array] | None = None
               ) -> tuple[jax.Array, jax.Array]:
    """x: [N, H, W, Cin] -> (out [N, H, W, Cout], bottleneck features [N, H', W', C']), both
    in the compute dtype (x is cast to it).

    Args:
      norms: instance-norm statistics (None: from the input).
      valid: [H, W] 1 inside the image, 0 outside (a tile over the border); None: all valid.
      mix: ``mix(step, h) -> h`` applied after every level's blocks, step 0..2*depth-2 in
        order (encoder levels, then decoder levels).
    """
    if x.shape[1] % self.alignment or x.shape[2] % self.alignment:
      raise ValueError(f"U-Net input {x.shape[1]}x{x.shape[2]} is not a multiple of "
                       f"{self.alignment} (2**(depth-1)) on both sides")
    x = x.astype(self.dtype)
    masks = []
    m = None if valid is None else valid.astype(x.dtype)[None, :, :, None]
    for _ in range(self.depth):
      masks.append(m)
      m = None if m is None else pool2(m)
    run = lambda block, x, m, skip: block(x, norms, m, skip)
    if norms is None:
      run = precision.remat(run, self.remat)
    step, skips = 0, []
    for level, blocks in enumerate(self.down):
      if level:
        x = pool2(x)
      for block in blocks:
        x = run(block, x, masks[level], None)
      if mix is not None:
        x = mix(step, x)
      step += 1
      skips.append(x)
    bottleneck = x
    for i, blocks in enumerate(self.up):
      level = self.depth - 2 - i
      for j, block in enumerate(blocks):  # the first block concatenates the skip inside
        x = run(block, x, masks[level], None if j else skips[level])
      if mix is not None:
        x = mix(step, x)
      step += 1
    return self.head(x), bottleneck
