"""The discretized mixture of logistics (DMoL) likelihood of 8-bit images, as pure functions.

Salimans et al. 2017 (PixelCNN++, Sec. 2.1-2.2), as used by VDVAE (Child 2021, openai/vdvae
``vae_helpers.py``). A pixel's channels are modelled by a mixture of ``M`` logistics; channel
``c`` of component ``m`` has mean ``mu[c, m]`` and log scale ``s[c, m]`` (clamped below at -7);
for RGB the means of G and B depend linearly on the channels before them (the "coefficient
mixing"): ``mu_G = mu[1] + a * x_R``, ``mu_B = mu[2] + b * x_R + g * x_G``, with
``(a, b, g) = tanh(raw coefficients)``. Values ``k / 255`` are mapped to ``y = 2 k / 255 - 1``
in [-1, 1]; bin ``k`` is ``[y - 1/255, y + 1/255]``, except that the bin of 0 extends to
``-inf`` and the bin of 255 to ``+inf``, so the 256 probabilities of a channel sum to 1.
As in PixelCNN++, a bin whose mass is below 1e-5 uses the density at its centre times the bin
width (``log pdf - log 127.5``), which avoids the cancellation of two nearly equal CDFs.

Parameter layout on the last axis (``P = num_params(C, M)``), as in PixelCNN++ / VDVAE:
  ``[0, M)``: mixture logits;
  then ``C`` groups, one per channel, each ``[means (M), log scales (M), coefficients (M)]``
  (the coefficient slot only for C = 3: for channel 0 it is ``a``, 1: ``b``, 2: ``g``).
For ``C = 1`` (grey) there is no coefficient mixing: ``P = 3 M``; for ``C = 3``: ``P = 10 M``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

CHANNELS = (1, 3)
MIN_LOG_SCALE = -7.0
TINY_BIN = 1e-5  # below this bin mass, use the centre density times the bin width


def num_params(channels: int, num_mix: int) -> int:
  """P, the parameters per pixel: 3 M for grey, 10 M for RGB.

  Raises:
    ValueError: channels other than 1 or 3, or num_mix < 1.
  """
  if channels not in CHANNELS:
    raise ValueError(f"the DMoL models 1 (grey) or 3 (RGB) channels, got {channels}")
  if int(num_mix) < 1:
    raise ValueError(f"num_mix must be >= 1, got {num_mix}")
  return (3 if channels == 1 else 10) * int(num_mix)


class Mixture(NamedTuple):
  """The unpacked parameters of a DMoL at each pixel.

  Attributes:
    logits: [..., M] mixture logits.
    means: [..., C, M] channel means in [-1, 1] units (before coefficient mixing).
    log_scales: [..., C, M], clamped at MIN_LOG_SCALE.
    coeffs: [..., 3, M] tanh'd mixing coefficients (a, b, g), or None for C = 1.
  """
  logits: jax.Array
  means: jax.Array
  log_scales: jax.Array
  coeffs: jax.Array | None


def unpack(params: jax.Array, channels: int, num_mix: int) -> Mixture:
  """params: [..., P] -> :class:`Mixture`.

  Raises:
    ValueError: the last axis is not ``num_params(channels, num_mix)``.
  """
  p, m = num_params(channels, num_mix), int(num_mix)
  if params.shape[-1] != p:
    raise ValueError(f"DMoL parameters for {channels} channel(s) and {m} mixtures need a last "
                     f"axis of {p}, got shape {tuple(params.shape)}")
  per = 3 if channels == 3 else 2
  rest = params[..., m:].reshape(params.shape[:-1] + (channels, per, m))
  coeffs = jnp.tanh(rest[..., 2, :]) if channels == 3 else None
  return Mixture(params[..., :m], rest[..., 0, :],
                 jnp.maximum(rest[..., 1, :], MIN_LOG_SCALE), coeffs)


def _mixed_means(mix: Mixture, y: jax.Array) -> jax.Array:
  """Means after coefficient mixing with the observed channels y: [..., C] -> [..., C, M]."""
  if mix.coeffs is None:
    return mix.means
  c, y0, y1 = mix.coeffs, y[..., 0, None], y[..., 1, None]
  m1 = mix.means[..., 1, :] + c[..., 0, :] * y0
  m2 = mix.means[..., 2, :] + c[..., 1, :] * y0 + c[..., 2, :] * y1
  return jnp.stack([mix.means[..., 0, :], m1, m2], axis=-2)


def _bin_log_mass(y: jax.Array, means: jax.Array, log_scales: jax.Array) -> jax.Array:
  """log P(bin of y) under each logistic: y [..., C, 1], means / log_scales [..., C, M]."""
  centred = y - means
  inv_s = jnp.exp(-log_scales)
  plus = inv_s * (centred + 1.0 / 255.0)
  minus = inv_s * (centred - 1.0 / 255.0)
  mid = inv_s * centred
  log_cdf_plus = plus - jax.nn.softplus(plus)          # log sigmoid(plus): the bin of 0
  log_sf_minus = -jax.nn.softplus(minus)               # log (1 - sigmoid(minus)): the bin of 255
  # sigmoid(plus) - sigmoid(minus), computed on the tail where it does not cancel.
  delta = jnp.where(mid > 0, jax.nn.sigmoid(-minus) - jax.nn.sigmoid(-plus),
                    jax.nn.sigmoid(plus) - jax.nn.sigmoid(minus))
  log_pdf_mid = mid - log_scales - 2.0 * jax.nn.softplus(mid)
  inner = jnp.where(delta > TINY_BIN, jnp.log(jnp.maximum(delta, 1e-12)),
                    log_pdf_mid - math.log(127.5))
  return jnp.where(y < -0.999, log_cdf_plus, jnp.where(y > 0.999, log_sf_minus, inner))


def to_unit(x: jax.Array) -> jax.Array:
  """[0, 1] images (8-bit values k / 255) -> [-1, 1]."""
  return 2.0 * x - 1.0


def log_prob(x: jax.Array, params: jax.Array, num_mix: int) -> jax.Array:
  """The log probability (nats) of each pixel's 8-bit value.

  Args:
    x: [..., C] in [0, 1], values k / 255 (C = 1 or 3).
    params: [..., P] with ``P = num_params(C, num_mix)``; the leading axes of x and params
      broadcast against each other.
    num_mix: M.

  Returns:
    [...]: log p(x) summed over the channels of each pixel.
  """
  channels = x.shape[-1]
  lead = jnp.broadcast_shapes(x.shape[:-1], params.shape[:-1])
  x = jnp.broadcast_to(x, lead + x.shape[-1:])
  params = jnp.broadcast_to(params, lead + params.shape[-1:])
  mix = unpack(params, channels, num_mix)
  y = to_unit(x.astype(jnp.float32))
  means = _mixed_means(mix, y)
  per_channel = _bin_log_mass(y[..., None], means, mix.log_scales)  # [..., C, M]
  per_mix = jnp.sum(per_channel, axis=-2) + jax.nn.log_softmax(mix.logits, axis=-1)
  return jax.nn.logsumexp(per_mix, axis=-1)


def nll_per_dim(x: jax.Array, params: jax.Array, num_mix: int) -> jax.Array:
  """Negative log likelihood in nats per dimension of each image.

  x: [B, H, W, C], params: [B, H, W, P] -> [B] (``-sum log p / (H W C)``).
  """
  lp = log_prob(x, params, num_mix)
  return -jnp.sum(lp, axis=tuple(range(1, lp.ndim))) / math.prod(x.shape[1:])


def sample(key: jax.Array, params: jax.Array, channels: int, num_mix: int) -> jax.Array:
  """Draws 8-bit values from the mixture at each pixel.

  As in PixelCNN++: a component by its logits, a logistic sample of each channel by inverse
  CDF (uniform in [1e-5, 1 - 1e-5]), clipped to [-1, 1], the channels mixed in order R, G, B.

  Args:
    key: a PRNG key.
    params: [..., P].
    channels: C (1 or 3).
    num_mix: M.

  Returns:
    [..., C] in [0, 1], on the grid k / 255.
  """
  mix = unpack(params, channels, num_mix)
  k_mix, k_logistic = jax.random.split(key)
  pick = jax.nn.one_hot(jax.random.categorical(k_mix, mix.logits), num_mix)[..., None, :]
  mean = jnp.sum(mix.means * pick, axis=-1)          # [..., C]
  log_s = jnp.sum(mix.log_scales * pick, axis=-1)
  u = jax.random.uniform(k_logistic, mean.shape, minval=1e-5, maxval=1.0 - 1e-5)
  y = mean + jnp.exp(log_s) * (jnp.log(u) - jnp.log1p(-u))
  if channels == 3:
    c = jnp.sum(mix.coeffs * pick, axis=-1)          # [..., 3]: a, b, g
    y0 = jnp.clip(y[..., 0], -1.0, 1.0)
    y1 = jnp.clip(y[..., 1] + c[..., 0] * y0, -1.0, 1.0)
    y2 = jnp.clip(y[..., 2] + c[..., 1] * y0 + c[..., 2] * y1, -1.0, 1.0)
    y = jnp.stack([y0, y1, y2], axis=-1)
  else:
    y = jnp.clip(y, -1.0, 1.0)
  return jnp.round((y + 1.0) * 127.5) / 255.0


def mean(params: jax.Array, channels: int, num_mix: int) -> jax.Array:
  """The mixture's mean at each pixel, for pictures: [..., P] -> [..., C] in [0, 1].

  Each channel's mean is ``sum_m pi_m mu_m`` (a logistic's mean is its location), with the
  RGB coefficient mixing applied to the preceding channels' means; clipped to [-1, 1] first.
  """
  mix = unpack(params, channels, num_mix)
  pi = jax.nn.softmax(mix.logits, axis=-1)[..., None, :]      # [..., 1, M]
  if channels == 3:
    y0 = jnp.clip(jnp.sum(pi[..., 0, :] * mix.means[..., 0, :], -1), -1.0, 1.0)
    y1 = jnp.clip(jnp.sum(pi[..., 0, :] * (mix.means[..., 1, :] + mix.coeffs[..., 0, :]
                                           * y0[..., None]), -1), -1.0, 1.0)
    y2 = jnp.clip(jnp.sum(pi[..., 0, :] * (mix.means[..., 2, :] + mix.coeffs[..., 1, :]
                                           * y0[..., None] + mix.coeffs[..., 2, :]
                                           * y1[..., None]), -1), -1.0, 1.0)
    y = jnp.stack([y0, y1, y2], axis=-1)
  else:
    y = jnp.clip(jnp.sum(pi * mix.means, axis=-1), -1.0, 1.0)
  return (y + 1.0) / 2.0
