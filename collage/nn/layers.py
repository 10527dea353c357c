"""Small shared Flax NNX layers (conv stems, residual blocks); the colour transforms are
``collage.ops.color``'s."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class ConvAct(nnx.Module):
  """Conv (SAME padding) then GELU. x: [B, H, W, Cin] -> [B, H/stride, W/stride, Cout].

  A conv of few input channels (an RGB stem) runs as one matmul over its patches
  (:func:`conv_as_matmul`): the same function, which XLA's CPU convolution ran at a tenth of
  its matmul throughput (the codec's encoder: 17 % of its time in this one layer)."""

  def __init__(self, cin: int, cout: int, kernel: int, stride: int, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(cin, cout, (kernel, kernel), strides=(stride, stride),
                         padding="SAME", rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.conv.in_features <= 4:
      return jax.nn.gelu(conv_as_matmul(self.conv, x))
    return jax.nn.gelu(self.conv(x))


def conv_as_matmul(conv: nnx.Conv, x: jax.Array) -> jax.Array:
  """``conv(x)`` of a 2-D ``nnx.Conv`` with SAME padding and no dilation, as the patches of x
  [B, H, W, Cin] (each kh x kw x Cin, in the kernel's HWIO order) times the kernel."""
  kernel = conv.kernel[...]
  kh, kw, cin, cout = kernel.shape
  sh, sw = conv.strides if isinstance(conv.strides, tuple) else (conv.strides,) * 2
  b, h, w, _ = x.shape
  ho, wo = -(-h // sh), -(-w // sw)
  ph, pw = max((ho - 1) * sh + kh - h, 0), max((wo - 1) * sw + kw - w, 0)  # XLA's SAME
  xp = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
  patches = jnp.concatenate(
      [xp[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw] for i in range(kh)
       for j in range(kw)], axis=-1)
  y = patches.reshape(b * ho * wo, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)
  y = y.reshape(b, ho, wo, cout)
  return y if conv.bias is None else y + conv.bias[...]


class ResBlock(nnx.Module):
  """Pre-activation residual block of two 3x3 convs. x: [B, H, W, C] -> same."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(channels, channels, (3, 3), padding="SAME", rngs=rngs)
    self.conv2 = nnx.Conv(channels, channels, (3, 3), padding="SAME", rngs=rngs,
                          kernel_init=nnx.initializers.variance_scaling(
                              0.1, "fan_in", "truncated_normal"))

  def __call__(self, x: jax.Array) -> jax.Array:
    return x + self.conv2(jax.nn.gelu(self.conv1(jax.nn.gelu(x))))
