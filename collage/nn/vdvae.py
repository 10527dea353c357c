"""VDVAE (Child 2021, "Very Deep VAEs Generalize Autoregressive Models and Can Outperform Them
on Images"; openai/vdvae) and Collage-VDVAE (Poli et al. 2022): one Flax NNX module.

The encoder is a stack of bottleneck residual blocks (``vdvae_blocks.Block``) described by a
block string; it keeps the last activation at each resolution. The decoder runs top-down blocks
(``vdvae_blocks.DecBlock``) from learned bias tensors at the resolutions <= ``no_bias_above``;
each block samples ``zdim`` latent channels per pixel from its posterior (training) or prior
(sampling). Its top feature map, after a learned per-channel gain and bias, goes to a head that
gives the per-pixel parameters of a discretized mixture of logistics (``collage.ops.dmol``):

  ``head="pixels"``   a 1x1 conv (VDVAE's ``DmolNet``);
  ``head="collage"``  a collage operator (``collage.ops.collage``) over the whole likelihood-
                      parameter map: the image is the single domain, range blocks of
                      ``range_size``, ``num_aux`` learned auxiliary sources; each range block's
                      weights and bias come from a 1x1 conv of the feature map mean-pooled over
                      that block; the map is ``decode_steps`` iterations from 0. At ``scale=K``
                      the same collage parameters decode a K times larger map, whose K x K
                      mean-pools are the scale-1 map.

The loss is the negative ELBO in nats per dimension: ``-log p(x | z) / D + sum_l KL_l / D``.
Images enter as ``2 x - 1`` (openai/vdvae also standardises by dataset statistics; we do not).

Precision (``collage.nn.precision``): the encoder and decoder blocks (their convolutions and the
feature maps between them) run in ``dtype``; parameters are float32. The latents' means and log
scales, the z draws and the Gaussian KLs, the decoder's top feature map after its gain and bias,
the head (a 1x1 conv, or the collage head's projection and its fixed-point decode), the DMoL
likelihood with its log-sum-exps and every reduction of the loss are float32 whatever ``dtype``.
``remat="blocks"`` recomputes each encoder block and each decoder block from its input in the
backward pass (a ``jax.checkpoint_policies`` name does the same, keeping what it saves).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange
from flax import nnx

from collage.nn import precision
from collage.nn import vdvae_blocks as vb
from collage.ops import collage as co
from collage.ops import dmol

HEADS = ("pixels", "collage")
_PIXEL_SALT = 1 << 20  # fold_in index of the pixel noise (latent blocks use 0, 1, ...)


@dataclasses.dataclass(frozen=True)
class VDVAEConfig:
  """The architecture (hashable).

  Attributes:
    image_size: S, the square training resolution.
    channels: C, 1 (grey) or 3 (RGB).
    width: channels of every feature map.
    zdim: latent channels per pixel of each decoder block.
    enc_blocks, dec_blocks: block strings (see ``collage.nn.vdvae_blocks``).
    bottleneck: the blocks' inner width as a fraction of ``width`` (0.25).
    num_mix: mixture components of the DMoL likelihood.
    no_bias_above: learned decoder bias tensors at resolutions up to this.
    head: "pixels" (VDVAE) or "collage" (Collage-VDVAE).
    range_size, num_aux, isometries, decode_steps, s_max: the collage head's range block side,
      auxiliary sources, number of isometries (0..7) of the domain, decode iterations and
      contraction bound.
    dtype: the compute dtype of the blocks, "float32" or "bfloat16" (see the module docstring).
    param_dtype: the parameters' dtype ("float32" only).
    remat: recomputation in the backward pass, a name of ``collage.nn.precision.REMAT``.
  """
  image_size: int
  channels: int
  width: int
  zdim: int
  enc_blocks: str
  dec_blocks: str
  bottleneck: float = 0.25
  num_mix: int = 10
  no_bias_above: int = 64
  head: str = "pixels"
  range_size: int = 4
  num_aux: int = 8
  isometries: int = 8
  decode_steps: int = 4
  s_max: float = 0.9
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat: str = "none"

  def __post_init__(self):
    precision.compute_dtype(self.dtype)  # each raises naming the valid choices
    precision.param_dtype(self.param_dtype)
    precision.check_remat(self.remat)
    if self.head not in HEADS:
      raise ValueError(f"unknown VDVAE head {self.head!r}; valid: {', '.join(HEADS)}")
    dmol.num_params(self.channels, self.num_mix)  # checks channels and num_mix
    enc, dec = self.encoder_layout, self.decoder_layout
    vb.check_encoder(enc, self.image_size)
    vb.check_decoder(dec, encoder_resolutions(enc, self.image_size), self.image_size)
    if self.width < 1 or self.zdim < 1 or int(self.width * self.bottleneck) < 1:
      raise ValueError(f"width ({self.width}), zdim ({self.zdim}) and width * bottleneck "
                       f"({self.width * self.bottleneck}) must be >= 1")
    if self.head == "collage":
      self.collage_spec()  # checks range_size, isometries, s_max

  @property
  def encoder_layout(self) -> list[tuple[int, int | None]]:
    return vb.parse_blocks(self.enc_blocks, "enc")

  @property
  def decoder_layout(self) -> list[tuple[int, int | None]]:
    return vb.parse_blocks(self.dec_blocks, "dec")

  @property
  def compute_dtype(self):
    """The jnp dtype the blocks compute in."""
    return precision.compute_dtype(self.dtype)

  @property
  def likelihood_params(self) -> int:
    """P, the DMoL parameters per pixel."""
    return dmol.num_params(self.channels, self.num_mix)

  def collage_spec(self) -> co.CollageSpec:
    """The collage operator of the head, over the [S, S, P] likelihood-parameter map."""
    if not 1 <= self.isometries <= 8:
      raise ValueError(f"isometries must be in 1..8, got {self.isometries}")
    return co.CollageSpec(image_size=self.image_size, range_size=self.range_size,
                          domain_size=None, isometries=tuple(range(self.isometries)),
                          num_aux=self.num_aux, channels=self.likelihood_params,
                          s_max=self.s_max)


def encoder_resolutions(layout, image_size: int) -> set[int]:
  """The resolutions at which the encoder leaves activations."""
  res, out = image_size, {image_size}
  for _, down in layout:
    res //= down or 1
    out.add(res)
  return out


class Encoder(nnx.Module):
  """x: [B, S, S, C] in [0, 1] -> {resolution: [B, r, r, width]} (the last activation at r, in
  the compute dtype; each block recomputed in the backward pass as ``cfg.remat`` says)."""

  def __init__(self, cfg: VDVAEConfig, *, rngs: nnx.Rngs):
    layout = cfg.encoder_layout
    scale = math.sqrt(1.0 / len(layout))
    mid = int(cfg.width * cfg.bottleneck)
    dtype = cfg.compute_dtype
    self.dtype, self.remat = dtype, cfg.remat
    self.in_conv = vb.conv(cfg.channels, cfg.width, 3, rngs=rngs, dtype=dtype)
    self.blocks = nnx.List([
        vb.Block(cfg.width, mid, cfg.width, down_rate=down, residual=True, use_3x3=res > 2,
                 last_scale=scale, rngs=rngs, dtype=dtype) for res, down in layout])

  def __call__(self, x: jax.Array) -> dict[int, jax.Array]:
    h = self.in_conv(dmol.to_unit(x).astype(self.dtype))
    acts = {h.shape[1]: h}
    run = precision.remat(lambda block, h: block(h), self.remat)
    for block in self.blocks:
      h = run(block, h)
      acts[h.shape[1]] = h
    return acts


class CollageHead(nnx.Module):
  """Feature map [B, S, S, width] -> collage parameters of the likelihood-parameter map (all
  float32: the projection, the contraction and the fixed-point decode)."""

  def __init__(self, cfg: VDVAEConfig, *, rngs: nnx.Rngs):
    self.spec = cfg.collage_spec()
    self.range_size, self.steps = cfg.range_size, cfg.decode_steps
    p, k = self.spec.channels, self.spec.num_candidates
    self.proj = vb.conv(cfg.width, p * (k + 1), 1, rngs=rngs)
    self.aux = nnx.Param(0.1 * jax.random.normal(rngs.params(), self.spec.aux_shape()))

  def params(self, h: jax.Array) -> co.CollageParams:
    """h: [B, S, S, width] -> weight [B, P, R, K], bias [B, P, R] (contractive, float32)."""
    p, k = self.spec.channels, self.spec.num_candidates
    raw = self.proj(vb.avg_pool(precision.f32(h), self.range_size))  # [B, S/r, S/r, P (K + 1)]
    raw = rearrange(raw, "b gh gw (p k) -> b p (gh gw) k", p=p, k=k + 1)
    return co.params_from_raw(self.spec, raw[..., :k], raw[..., k])

  def __call__(self, h: jax.Array, scale: int = 1) -> jax.Array:
    """h: [B, S, S, width] -> [B, scale S, scale S, P]."""
    return co.decode(self.spec, self.params(h), self.aux[...], steps=self.steps, scale=scale,
                     start=0.0, implicit=False)


class VDVAE(nnx.Module):
  """The VDVAE of ``cfg`` (see the module docstring). Keys are one per image, [B, 2]."""

  def __init__(self, cfg: VDVAEConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    layout = cfg.decoder_layout
    self.encoder = Encoder(cfg, rngs=rngs)
    self.blocks = nnx.List([
        vb.DecBlock(res, mixin, cfg.width, cfg.zdim, cfg.bottleneck, len(layout), rngs=rngs,
                    dtype=cfg.compute_dtype)
        for res, mixin in layout])
    self.bias_res = tuple(sorted({r for r, _ in layout if r <= cfg.no_bias_above}))
    self.bias_xs = nnx.List([nnx.Param(jnp.zeros((1, r, r, cfg.width))) for r in self.bias_res])
    self.gain = nnx.Param(jnp.ones((cfg.width,)))
    self.bias = nnx.Param(jnp.zeros((cfg.width,)))
    if cfg.head == "collage":
      self.head = CollageHead(cfg, rngs=rngs)
    else:
      self.head = vb.conv(cfg.width, cfg.likelihood_params, 1, rngs=rngs)

  # -- pieces ---------------------------------------------------------------------------------
  def _start(self) -> dict[int, jax.Array]:
    dtype = self.cfg.compute_dtype
    return {r: b[...].astype(dtype) for r, b in zip(self.bias_res, self.bias_xs)}

  def _top(self, xs: dict[int, jax.Array]) -> jax.Array:
    """The decoder's map at the image size -> the head's input [B, S, S, width], float32."""
    return precision.f32(xs[self.cfg.image_size]) * self.gain[...] + self.bias[...]

  def likelihood(self, top: jax.Array, scale: int = 1) -> jax.Array:
    """The head: top [B, S, S, width] -> DMoL parameters [B, scale S, scale S, P] (float32)."""
    if self.cfg.head == "collage":
      return self.head(top, scale)
    if scale != 1:
      raise ValueError(f"scale={scale}: only the collage head (head='collage') decodes at "
                       "another resolution; the pixel head is fixed at scale 1")
    return self.head(top)

  # -- training -------------------------------------------------------------------------------
  def __call__(self, x: jax.Array, keys: jax.Array) -> dict[str, jax.Array]:
    """The negative ELBO of each image, in nats per dimension.

    Args:
      x: [B, S, S, C] in [0, 1] (8-bit values).
      keys: [B, 2], the posterior noise of image b from keys[b] only.

    Returns:
      ``{"elbo", "distortion", "rate"}``, each [B]: ``elbo = distortion + rate`` with the
      distortion ``-log p(x | z) / D`` and the rate ``sum KL / D``, ``D = S * S * C``.
    """
    acts = self.encoder(x)
    xs, rate = self._start(), jnp.zeros(x.shape[:1])

    def step(block, h, acts, keys):  # one decoder block: (new map, its KL summed per image)
      h, kl = block.step(h, acts, keys)
      return h, jnp.sum(kl, axis=(1, 2, 3))

    run = precision.remat(step, self.cfg.remat)
    for i, block in enumerate(self.blocks):
      acts_r = acts[block.res]
      h, kl = run(block, block.input(xs, acts_r.shape[0], acts_r.shape[-1]), acts_r,
                  _fold(keys, i))
      xs = {**xs, block.res: h}
      rate = rate + kl
    rate = rate / math.prod(x.shape[1:])
    distortion = dmol.nll_per_dim(x, self.likelihood(self._top(xs)), self.cfg.num_mix)
    return {"elbo": distortion + rate, "distortion": distortion, "rate": rate}

  # -- sampling -------------------------------------------------------------------------------
  def prior_features(self, keys: jax.Array, temperature: float = 1.0) -> jax.Array:
    """Latents from the prior (standard deviation times ``temperature``) -> the decoder's top
    feature map [N, S, S, width]; row n depends on keys[n] only."""
    xs = self._start()
    for i, block in enumerate(self.blocks):
      xs = block.sample(xs, _fold(keys, i), self.cfg.width, temperature)
    return self._top(xs)

  def prior_likelihood(self, keys: jax.Array, temperature: float = 1.0,
                       scale: int = 1) -> jax.Array:
    """DMoL parameters [N, scale S, scale S, P] of prior samples; the latents do not depend on
    ``scale``, only their decoding does."""
    return self.likelihood(self.prior_features(keys, temperature), scale)

  def sample_pixels(self, keys: jax.Array, params: jax.Array) -> jax.Array:
    """Pixels from DMoL parameters [N, h, w, P] -> [N, h, w, C] in [0, 1]; one key per row."""
    return jax.vmap(lambda k, p: dmol.sample(k, p, self.cfg.channels, self.cfg.num_mix))(
        _fold(keys, _PIXEL_SALT), params)

  def sample(self, keys: jax.Array, temperature: float = 1.0, scale: int = 1) -> jax.Array:
    """Images [N, scale S, scale S, C] in [0, 1]: latents, then pixels from the likelihood."""
    return self.sample_pixels(keys, self.prior_likelihood(keys, temperature, scale))

  def partial_posterior_features(self, x: jax.Array, keys: jax.Array, groups: int,
                                 temperature: float = 1.0) -> jax.Array:
    """The latents of the first ``groups`` decoder blocks (the top, coarsest ones) from the
    posterior of x [N, S, S, C] in [0, 1], the rest from the prior (standard deviation times
    ``temperature``) -> the decoder's top feature map [N, S, S, width]; row n depends on
    x[n] and keys[n] only. ``groups = 0`` is a prior sample, all blocks a reconstruction."""
    acts = self.encoder(x)
    xs = self._start()
    for i, block in enumerate(self.blocks):
      if i < groups:
        acts_r = acts[block.res]
        h, _ = block.step(block.input(xs, acts_r.shape[0], acts_r.shape[-1]), acts_r,
                          _fold(keys, i))
        xs = {**xs, block.res: h}
      else:
        xs = block.sample(xs, _fold(keys, i), self.cfg.width, temperature)
    return self._top(xs)

  def reconstruct(self, x: jax.Array, keys: jax.Array, groups: int,
                  temperature: float = 1.0) -> jax.Array:
    """Images [N, S, S, C] in [0, 1] decoded from a partial posterior
    (:meth:`partial_posterior_features`), pixels drawn from the likelihood as in :meth:`sample`."""
    return self.sample_pixels(keys, self.likelihood(
        self.partial_posterior_features(x, keys, groups, temperature)))

  def architecture(self) -> tuple[str, str]:
    """The (encoder, decoder) block strings read back from the built modules."""
    enc = [(None, b.down_rate) for b in self.encoder.blocks]
    res, layout = self.cfg.image_size, []
    for _, down in enc:
      layout.append((res, down))
      res //= down or 1
    dec = [(b.res, b.mixin) for b in self.blocks]
    return vb.format_blocks(layout, "enc"), vb.format_blocks(dec, "dec")


class _HostCount(np.ndarray):
  """An RNG stream's counter held on the host: reading it gives a copy, so a key folded with
  it under a trace keeps the value it had then."""

  def __getitem__(self, index):
    return np.array(np.asarray(self)[index])


def init_rngs(key: jax.Array | int) -> nnx.Rngs:
  """``nnx.Rngs(params=key)`` whose counter is a host integer: the same keys, in the same order.

  Under a trace (``jax.jit``, ``jax.eval_shape``: how the runtime and ``--mode plan`` build the
  parameters) each draw from a plain ``nnx.Rngs`` updates a traced counter, and flax 0.12's
  ``Variable.set_value`` then asks the tracer for its sharding, whose error message walks every
  equation traced so far: building a paper-sized VDVAE took minutes (quadratic in its
  ~1,000 parameter arrays). With the counter on the host it takes seconds.
  """
  rngs = nnx.Rngs(params=key)
  count = rngs.params.count
  count.set_raw_value(np.zeros(np.shape(count.get_raw_value()), np.uint32).view(_HostCount))
  return rngs


def _fold(keys: jax.Array, i: int) -> jax.Array:
  """keys [B, 2] -> [B, 2], each folded with ``i``."""
  return jax.vmap(lambda k: jax.random.fold_in(k, i))(keys)


def count_params(cfg: VDVAEConfig) -> int:
  """The number of trained parameters of ``VDVAE(cfg)`` (shapes only: nothing is allocated)."""
  abstract = nnx.eval_shape(lambda: VDVAE(cfg, rngs=init_rngs(0)))
  return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def param_count(cfg: VDVAEConfig) -> int:
  """The number of trained parameters of ``VDVAE(cfg)``, by arithmetic on the architecture
  (instant even for paper-sized models; equal to :func:`count_params`, which the tests check)."""
  w, z, mid = cfg.width, cfg.zdim, int(cfg.width * cfg.bottleneck)
  conv = lambda cin, cout, k: cin * cout * k * k + cout
  block = lambda cin, cout, res: (conv(cin, mid, 1) + 2 * conv(mid, mid, 3 if res > 2 else 1)
                                  + conv(mid, cout, 1))
  n = conv(cfg.channels, w, 3)
  res = cfg.image_size
  for _, down in cfg.encoder_layout:
    n += block(w, w, res)
    res //= down or 1
  layout = cfg.decoder_layout
  for r, _ in layout:
    n += block(2 * w, 2 * z, r) + block(w, 2 * z + w, r) + conv(z, w, 1) + block(w, w, r)
  n += sum(w * r * r for r in {r for r, _ in layout if r <= cfg.no_bias_above}) + 2 * w
  p = cfg.likelihood_params
  if cfg.head == "collage":
    spec = cfg.collage_spec()
    n += conv(w, p * (spec.num_candidates + 1), 1) + math.prod(spec.aux_shape())
  else:
    n += conv(w, p, 1)
  return n
