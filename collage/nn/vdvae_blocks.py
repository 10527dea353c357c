"""VDVAE's building blocks (Child 2021; openai/vdvae ``vae.py``): block strings, the bottleneck
residual block, the top-down block with its prior and posterior, and the Gaussian KL.

Block strings name the architecture, comma-separated tokens:
  encoder: ``RxN`` N blocks at resolution R; ``RdK`` one block at R then average-pooling by K;
  decoder: ``RxN`` N blocks at R; ``RmS`` one block at R that first adds the nearest-upsampled
  output of resolution S (a "mixin"); ``R`` alone is one block (both).
E.g. CIFAR-10: encoder ``"32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3"``, decoder
``"1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21"``.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
from flax import nnx

from collage.nn.precision import f32

_TOKEN = {"enc": re.compile(r"^(\d+)(?:([xd])(\d+))?$"),
          "dec": re.compile(r"^(\d+)(?:([xm])(\d+))?$")}
_GRAMMAR = {"enc": "RxN (N blocks at resolution R), RdK (a block at R, then pool by K) or R",
            "dec": "RxN (N blocks at resolution R), RmS (a block at R mixing in resolution S) "
                   "or R"}


def parse_blocks(spec: str, kind: str) -> list[tuple[int, int | None]]:
  """A block string -> one ``(resolution, down rate or mixin resolution or None)`` per block.

  Args:
    spec: e.g. ``"32x11,32d2,16x6"`` (encoder) or ``"1x1,4m1,4x2"`` (decoder).
    kind: "enc" or "dec".

  Raises:
    ValueError: naming the malformed token and the valid forms.
  """
  if kind not in _TOKEN:
    raise ValueError(f"unknown block string kind {kind!r}; valid: enc, dec")
  what = "encoder" if kind == "enc" else "decoder"
  blocks: list[tuple[int, int | None]] = []
  for token in str(spec).split(","):
    m = _TOKEN[kind].match(token.strip())
    if not m or int(m.group(1)) < 1 or (m.group(3) is not None and int(m.group(3)) < 1):
      raise ValueError(f"bad token {token.strip()!r} in the {what} block string {spec!r}; "
                       f"valid tokens: {_GRAMMAR[kind]}, with positive integers")
    res, op, n = int(m.group(1)), m.group(2), m.group(3)
    if op == "x":
      blocks += [(res, None)] * int(n)
    elif op in ("d", "m"):
      blocks.append((res, int(n)))
    else:
      blocks.append((res, None))
  return blocks


def format_blocks(blocks: list[tuple[int, int | None]], kind: str) -> str:
  """The canonical block string of ``blocks`` (runs of plain blocks as ``RxN``)."""
  op = "d" if kind == "enc" else "m"
  tokens: list[str] = []
  i = 0
  while i < len(blocks):
    res, arg = blocks[i]
    if arg is not None:
      tokens.append(f"{res}{op}{arg}")
      i += 1
      continue
    j = i
    while j < len(blocks) and blocks[j] == (res, None):
      j += 1
    tokens.append(f"{res}x{j - i}")
    i = j
  return ",".join(tokens)


def check_encoder(blocks, image_size: int) -> None:
  """Each block's resolution follows from the image size and the pooling before it.

  Raises:
    ValueError: naming the first block whose resolution or down rate is impossible.
  """
  res = image_size
  for i, (r, down) in enumerate(blocks):
    if r != res:
      raise ValueError(f"encoder block {i} is at resolution {r}, but the blocks before it "
                       f"leave the {image_size}x{image_size} image at {res}x{res}")
    if down is not None:
      if res % down:
        raise ValueError(f"encoder block {i} ({r}d{down}) pools {res}x{res} by {down}, which "
                         f"does not divide it")
      res //= down


def check_decoder(blocks, encoder_resolutions: set[int], image_size: int) -> None:
  """Each decoder block is at an encoder resolution, mixes in one already made, and the last
  block is at the image size.

  Raises:
    ValueError: naming the first impossible block.
  """
  made: set[int] = set()
  for i, (r, mixin) in enumerate(blocks):
    if r not in encoder_resolutions:
      raise ValueError(f"decoder block {i} is at resolution {r}, which the encoder does not "
                       f"produce; encoder resolutions: {sorted(encoder_resolutions)}")
    if mixin is not None and (mixin not in made or r % mixin):
      raise ValueError(f"decoder block {i} ({r}m{mixin}) mixes in resolution {mixin}: it must "
                       f"be made by an earlier block and divide {r}; made so far: {sorted(made)}")
    made.add(r)
  if not blocks or blocks[-1][0] != image_size:
    raise ValueError(f"the last decoder block must be at the image size {image_size}, got "
                     f"{blocks[-1][0] if blocks else 'no blocks'}")


def conv(cin: int, cout: int, kernel: int, *, rngs: nnx.Rngs, scale: float = 1.0,
         zero: bool = False, dtype=jnp.float32) -> nnx.Conv:
  """A SAME conv initialised as openai/vdvae's ``get_conv``: PyTorch's default weights
  (uniform, variance 1 / (3 fan_in)) times ``scale`` (or zero), and zero biases. Parameters
  float32; it computes in ``dtype`` (inputs and weights cast to it, output in it)."""
  init = (nnx.initializers.zeros if zero else
          nnx.initializers.variance_scaling(scale ** 2 / 3.0, "fan_in", "uniform"))
  return nnx.Conv(cin, cout, (kernel, kernel), padding="SAME", kernel_init=init,
                  bias_init=nnx.initializers.zeros, dtype=dtype, param_dtype=jnp.float32,
                  rngs=rngs)


def avg_pool(x: jax.Array, k: int) -> jax.Array:
  """Average pooling by k (window = stride = k). x: [B, H, W, C] -> [B, H/k, W/k, C]."""
  b, h, w, c = x.shape
  return x.reshape(b, h // k, k, w // k, k, c).mean(axis=(2, 4))


def upsample(x: jax.Array, k: int) -> jax.Array:
  """Nearest upsampling by k. x: [B, H, W, C] -> [B, kH, kW, C]."""
  return jnp.repeat(jnp.repeat(x, k, axis=1), k, axis=2)


class Block(nnx.Module):
  """The bottleneck block: 1x1, 3x3, 3x3, 1x1 convs, each after a GELU; optionally residual,
  then average-pooled by ``down_rate``. The 3x3s are 1x1s where ``use_3x3`` is False (VDVAE
  uses 1x1s at resolution <= 2). The convs compute in ``dtype``.
  x: [B, H, W, cin] -> [B, H/down, W/down, cout] (in ``dtype``)."""

  def __init__(self, cin: int, mid: int, cout: int, *, rngs: nnx.Rngs,
               down_rate: int | None = None, residual: bool = False, use_3x3: bool = True,
               zero_last: bool = False, last_scale: float = 1.0, dtype=jnp.float32):
    k = 3 if use_3x3 else 1
    self.c1 = conv(cin, mid, 1, rngs=rngs, dtype=dtype)
    self.c2 = conv(mid, mid, k, rngs=rngs, dtype=dtype)
    self.c3 = conv(mid, mid, k, rngs=rngs, dtype=dtype)
    self.c4 = conv(mid, cout, 1, rngs=rngs, scale=last_scale, zero=zero_last, dtype=dtype)
    self.down_rate, self.residual = down_rate, residual

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.c1(jax.nn.gelu(x))
    h = self.c2(jax.nn.gelu(h))
    h = self.c3(jax.nn.gelu(h))
    h = self.c4(jax.nn.gelu(h))
    out = x + h if self.residual else h
    return avg_pool(out, self.down_rate) if self.down_rate else out


def gaussian_kl(mu_q: jax.Array, log_sigma_q: jax.Array, mu_p: jax.Array,
                log_sigma_p: jax.Array) -> jax.Array:
  """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) elementwise, in nats (diagonal Gaussians;
  the log standard deviations parametrize the scales, as in VDVAE)."""
  return (log_sigma_p - log_sigma_q - 0.5
          + 0.5 * (jnp.exp(2.0 * log_sigma_q) + (mu_q - mu_p) ** 2) * jnp.exp(-2.0 * log_sigma_p))


def row_normal(keys: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """One standard normal array per key: keys [B, 2] -> [B, *shape], row b from keys[b] only."""
  return jax.vmap(lambda k: jax.random.normal(k, shape))(keys)


class DecBlock(nnx.Module):
  """A top-down block at resolution ``res``: prior p(z | x) and posterior q(z | x, encoder
  activations) over ``zdim`` channels per pixel, then ``x + proj(z)`` through a residual block.

  The prior block outputs ``[mu_p, log_sigma_p, x update]`` and starts at zero; ``proj`` and the
  residual block's last conv are scaled by ``sqrt(1 / num_blocks)`` (openai/vdvae ``DecBlock``).
  The convs and the feature maps are in ``dtype``; the latents' means and log scales are cast
  to float32 where they start, so z is drawn and the KL computed in float32.
  """

  def __init__(self, res: int, mixin: int | None, width: int, zdim: int, bottleneck: float,
               num_blocks: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
    use_3x3 = res > 2
    mid = int(width * bottleneck)
    scale = math.sqrt(1.0 / num_blocks)
    self.res, self.mixin, self.zdim, self.dtype = res, mixin, zdim, dtype
    self.enc = Block(2 * width, mid, 2 * zdim, use_3x3=use_3x3, rngs=rngs, dtype=dtype)
    self.prior = Block(width, mid, 2 * zdim + width, use_3x3=use_3x3, zero_last=True, rngs=rngs,
                       dtype=dtype)
    self.z_proj = conv(zdim, width, 1, rngs=rngs, scale=scale, dtype=dtype)
    self.resnet = Block(width, mid, width, residual=True, use_3x3=use_3x3, last_scale=scale,
                        rngs=rngs, dtype=dtype)

  def input(self, xs: dict[int, jax.Array], batch: int, width: int) -> jax.Array:
    """This block's input [batch, res, res, width] (in ``dtype``): the running map at ``res``
    (zeros where there is none yet) plus the upsampled map of the mixin resolution."""
    x = xs.get(self.res)
    if x is None:
      x = jnp.zeros((batch, self.res, self.res, width), self.dtype)
    x = jnp.broadcast_to(x, (batch,) + x.shape[1:])
    if self.mixin is not None:
      x = x + upsample(xs[self.mixin][..., :x.shape[-1]], self.res // self.mixin)
    return x

  def _prior(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    f = self.prior(x)
    z = self.zdim
    return f32(f[..., :z]), f32(f[..., z:2 * z]), x + f[..., 2 * z:]

  def step(self, x: jax.Array, acts: jax.Array, keys: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
    """With the posterior, from this block's input x [B, res, res, width] (see :meth:`input`)
    and the encoder's activations there: (the new map at ``res``, KL [B, res, res, zdim] in
    float32)."""
    q = self.enc(jnp.concatenate([x, acts], axis=-1))
    mu_q, ls_q = f32(q[..., :self.zdim]), f32(q[..., self.zdim:])
    mu_p, ls_p, x = self._prior(x)
    z = mu_q + jnp.exp(ls_q) * row_normal(keys, mu_q.shape[1:])
    kl = gaussian_kl(mu_q, ls_q, mu_p, ls_p)
    return self.resnet(x + self.z_proj(z.astype(self.dtype))), kl

  def __call__(self, xs: dict[int, jax.Array], acts: jax.Array, keys: jax.Array
               ) -> tuple[dict[int, jax.Array], jax.Array]:
    """With the posterior: (xs with this resolution updated, KL [B, res, res, zdim])."""
    x, kl = self.step(self.input(xs, acts.shape[0], acts.shape[-1]), acts, keys)
    return {**xs, self.res: x}, kl

  def sample(self, xs: dict[int, jax.Array], keys: jax.Array, width: int,
             temperature: float) -> dict[int, jax.Array]:
    """From the prior, its standard deviation times ``temperature``; one key per row."""
    x = self.input(xs, keys.shape[0], width)
    mu_p, ls_p, x = self._prior(x)
    z = mu_p + temperature * jnp.exp(ls_p) * row_normal(keys, mu_p.shape[1:])
    return {**xs, self.res: self.resnet(x + self.z_proj(z.astype(self.dtype)))}

