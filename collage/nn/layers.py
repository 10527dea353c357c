"""Small shared Flax NNX layers (conv stems, residual blocks); the colour transforms are
``collage.ops.color``'s."""

from __future__ import annotations

import jax
from flax import nnx


class ConvAct(nnx.Module):
  """Conv (SAME padding) then GELU. x: [B, H, W, Cin] -> [B, H/stride, W/stride, Cout]."""

  def __init__(self, cin: int, cout: int, kernel: int, stride: int, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(cin, cout, (kernel, kernel), strides=(stride, stride),
                         padding="SAME", rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.gelu(self.conv(x))


class ResBlock(nnx.Module):
  """Pre-activation residual block of two 3x3 convs. x: [B, H, W, C] -> same."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(channels, channels, (3, 3), padding="SAME", rngs=rngs)
    self.conv2 = nnx.Conv(channels, channels, (3, 3), padding="SAME", rngs=rngs,
                          kernel_init=nnx.initializers.variance_scaling(
                              0.1, "fan_in", "truncated_normal"))

  def __call__(self, x: jax.Array) -> jax.Array:
    return x + self.conv2(jax.nn.gelu(self.conv1(jax.nn.gelu(x))))
