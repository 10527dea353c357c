"""MAGIC: memory attentive generation of image collages (Jetchev, Bergmann, Yildirim 2019).

A set of K memory templates M [B, K, H, W, 3] (crops sampled independently from template
images) becomes a collage:

    logits, warp = STUNet(M [, I_c])          logits [B, K, H, W]; per-element warp
    A   = softmax_K(logits)                    blending weights, sum_k A_k = 1 at every pixel
    I_M = sum_k A_k * warp(M_k)                set pooling: a convex combination, invariant to
                                               permuting the K templates (with their warps)
    I   = R(I_M)                               refinement U-Net, purely convolutional

The ST-U-Net is a U-Net (:mod:`collage.nn.unet`: 5x5 conv + instance norm + ReLU, ``width``
channels at full resolution doubling per level) applied to every set element with shared
weights; after every level's blocks a Set Transformer layer (SAB, or ISAB with inducing points
for large K; :mod:`collage.nn.set_transformer`) attends across the K elements at each spatial
position (a set of K per pixel). In guided mode the content patch I_c [B, H, W, 3] is given to
every set element as three extra input channels. Sets of different sizes share one array
shape through ``set_mask`` [B, K] (1 for real templates): padded templates get zero weight and
are never attended to.

The discriminator is a PatchGAN: 5x5 stride-2 convs from ``width`` channels doubling per layer,
LeakyReLU(0.2), and a 5x5 conv to one logit per patch. The losses are in :mod:`collage.nn.magic`
too (:func:`entropy`, :func:`total_variation`, :func:`largest_area`, :func:`lowpass`).

Choices where the paper is silent (a reimplementation's, stated here):
- U-Net: one conv block per level each way, 2x2 average pooling down, nearest-neighbour up;
  a Set Transformer layer after every level's blocks (encoder and decoder), 4 heads, LayerNorm
  inside the blocks as in Lee et al.; the logits come from a 1x1 conv per element.
- Warps: ``affine`` predicts per element a 2x3 matrix from the bottleneck features averaged
  over space (after the last set layer, so it sees the other elements), bounded as
  ``I + 0.25 tanh(.)`` and translation ``0.5 tanh(.)`` in units of half the training crop, and
  initialised to the identity; ``flow`` predicts per element and pixel a displacement bounded by
  ``max_flow`` pixels (``max_flow * tanh``), initialised to zero. Both sample bilinearly in
  image coordinates and clamp at the image border (the border pixels repeat).
- Refinement: ``I = sigmoid(logit(I_M) + r(I_M))`` with r a U-Net whose last layer starts at
  zero, so R starts as the identity and its output stays in (0, 1).
- Discriminator channels double per layer up to ``disc_max_width`` (the paper's doubling from
  128 over 6 layers would reach 4096 channels).
- Tiles (:mod:`collage.nn.magic_render`): the instance-norm statistics and the affine warps are
  the only non-local quantities; they are computed once on a reference window and replayed in
  every tile.

Precision and memory (``dtype``, ``remat``, ``set_chunk``): the ST-U-Net, the refinement U-Net,
the warp head and the discriminator compute in ``dtype`` on float32 parameters; the softmax over
templates (the convex set pooling), the warps' sampling coordinates, the refinement's logit and
sigmoid, the instance-norm statistics and everything the losses see stay float32. The set layers
act on B * h * w independent sets of K; ``set_chunk`` pixels of every example go through a set
layer at a time (``apply_in_chunks``; the batch axis, which data parallelism splits, stays
whole in every chunk), each chunk recomputed in the backward pass when ``remat`` is not
``none``, so the [sets, heads, K, K] scores and the per-set activations of all pixels never
live at once.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from collage.nn import precision
from collage.nn.set_transformer import apply_in_chunks, set_layer
from collage.nn.unet import Norms, UNet

WARPS = ("none", "affine", "flow")


@dataclasses.dataclass(frozen=True)
class MagicConfig:
  """The architecture. Every field is documented on its line."""
  guided: bool = True            # content patch I_c given to every set element
  width: int = 48                # ST-U-Net channels at full resolution (doubling per level)
  depth: int = 5                 # ST-U-Net resolution levels
  blocks: int = 1                # conv blocks per level, down and up
  heads: int = 4                 # attention heads of the set layers
  inducing: int = 0              # ISAB inducing points (0: SAB)
  warp: str = "none"             # none | affine | flow
  max_flow: float = 4.0          # flow warp: largest displacement in pixels
  crop: int = 256                # training crop side (the affine translation unit is crop / 2)
  refine_width: int = 32         # refinement U-Net channels at full resolution
  refine_depth: int = 3          # refinement U-Net levels (0: no refinement, I = I_M)
  disc_width: int = 128          # discriminator channels of the first layer
  disc_depth: int = 6            # discriminator stride-2 conv layers
  disc_max_width: int = 512      # discriminator channel cap
  dtype: str = "float32"         # compute dtype: float32 | bfloat16
  param_dtype: str = "float32"   # parameters (and optimizer state, EMA, checkpoints): float32
  remat: str = "none"            # backward-pass recomputation of U-Net blocks and set-layer chunks
  set_chunk: int = 0             # pixels of every example per set-layer chunk (0: all at once)

  def __post_init__(self):
    if self.warp not in WARPS:
      raise ValueError(f"unknown warp {self.warp!r}; valid: {', '.join(WARPS)}")
    precision.compute_dtype(self.dtype)
    precision.param_dtype(self.param_dtype)
    precision.check_remat(self.remat)
    if self.set_chunk < 0:
      raise ValueError(f"MagicConfig.set_chunk must be >= 0 (0: all sets at once), got "
                       f"{self.set_chunk}")
    for name in ("width", "depth", "blocks", "heads", "crop", "disc_width", "disc_depth"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"MagicConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.refine_depth < 0 or (self.refine_depth and self.refine_width < 1):
      raise ValueError("MagicConfig.refine_depth must be >= 0 and refine_width >= 1, got "
                       f"{self.refine_depth}, {self.refine_width}")
    if self.crop % 2 ** (max(self.depth, self.refine_depth, 1) - 1):
      raise ValueError(f"crop {self.crop} must be a multiple of 2**(depth-1) = "
                       f"{2 ** (max(self.depth, self.refine_depth, 1) - 1)}")


class Warp(NamedTuple):
  """Per-element warp parameters: ``affine`` [B, K, 2, 3] or ``flow`` [B, K, H, W, 2] (y, x)."""
  affine: jax.Array | None = None
  flow: jax.Array | None = None


class Collage(NamedTuple):
  """A generator's output. Shapes for B sets of K templates of H x W."""
  image: jax.Array       # I   [B, H, W, 3] in (0, 1)
  collage: jax.Array     # I_M [B, H, W, 3]
  weights: jax.Array     # A   [B, K, H, W], softmax over K
  logits: jax.Array      # [B, K, H, W]
  warped: jax.Array      # warp(M) [B, K, H, W, 3]
  warp: Warp


# -- warps: pure functions of image coordinates -------------------------------------------------

def bilinear(image: jax.Array, y: jax.Array, x: jax.Array,
             bounds: tuple[float, float, float, float] | None = None) -> jax.Array:
  """Samples image [H, W, C] at real coordinates y, x [...] -> [..., C].

  Coordinates are clamped to ``bounds`` = (y_lo, y_hi, x_lo, x_hi) (the image's own extent when
  None, and never beyond it), so the border pixels repeat.
  """
  h, w = image.shape[:2]
  y_lo, y_hi, x_lo, x_hi = (0.0, h - 1.0, 0.0, w - 1.0) if bounds is None else bounds
  y = jnp.clip(y, jnp.maximum(y_lo, 0.0), jnp.minimum(y_hi, h - 1.0))
  x = jnp.clip(x, jnp.maximum(x_lo, 0.0), jnp.minimum(x_hi, w - 1.0))
  y0 = jnp.clip(jnp.floor(y), 0, max(h - 2, 0)).astype(jnp.int32)
  x0 = jnp.clip(jnp.floor(x), 0, max(w - 2, 0)).astype(jnp.int32)
  y1, x1 = jnp.minimum(y0 + 1, h - 1), jnp.minimum(x0 + 1, w - 1)
  fy, fx = (y - y0)[..., None], (x - x0)[..., None]
  top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
  bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
  return top * (1 - fy) + bottom * fy


def affine_warp(templates: jax.Array, affine: jax.Array, center: tuple[float, float],
                unit: float) -> jax.Array:
  """Each template resampled through its affine map, in pixel coordinates.

  Output pixel p reads the template at ``center + unit * (L (p - center) / unit + t)`` with
  ``affine = [L | t]``: L acts about ``center``, t is in units of ``unit`` pixels.
  templates [K, H, W, C], affine [K, 2, 3] (rows act on (y, x)) -> [K, H, W, C].
  """
  h, w = templates.shape[1:3]
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  u = jnp.stack([(yy - center[0]) / unit, (xx - center[1]) / unit], axis=-1)  # [H, W, 2]

  def one(image, a):
    src = jnp.einsum("ij,hwj->hwi", a[:, :2], u) + a[:, 2]
    return bilinear(image, center[0] + unit * src[..., 0], center[1] + unit * src[..., 1])

  return jax.vmap(one)(templates, affine)


def flow_warp(templates: jax.Array, flow: jax.Array,
              bounds: tuple[float, float, float, float] | None = None) -> jax.Array:
  """templates [K, H, W, C] sampled at p + flow(p), flow [K, H, W, 2] (y, x) -> [K, H, W, C].

  ``bounds`` (y_lo, y_hi, x_lo, x_hi) clamps the reads to the whole image when the arrays are a
  tile of it (in the tile's coordinates); None: the arrays are the whole image.
  """
  h, w = templates.shape[1:3]
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  return jax.vmap(lambda im, f: bilinear(im, yy + f[..., 0], xx + f[..., 1], bounds))(
      templates, flow)


def set_pool(weights: jax.Array, warped: jax.Array) -> jax.Array:
  """I_M = sum_k A_k warp(M_k). weights [B, K, H, W], warped [B, K, H, W, C] -> [B, H, W, C]."""
  return jnp.einsum("bkhw,bkhwc->bhwc", weights, warped)


def blend_weights(logits: jax.Array, set_mask: jax.Array | None) -> jax.Array:
  """softmax over K of logits [B, K, H, W]; padded elements (set_mask [B, K] = 0) get 0."""
  logits = precision.f32(logits)  # the softmax normaliser stays float32
  if set_mask is not None:
    logits = jnp.where(set_mask[:, :, None, None] > 0, logits, jnp.finfo(logits.dtype).min)
  return jax.nn.softmax(logits, axis=1)


# -- the regularisers on A and the content loss (the definitions the tests check) -------------

def entropy(weights: jax.Array) -> jax.Array:
  """L_E: mean over pixels of -sum_k A log A. weights [B, K, H, W] -> [B]; 0 for one-hot A."""
  plogp = jnp.where(weights > 0, weights * jnp.log(jnp.where(weights > 0, weights, 1.0)), 0.0)
  return -jnp.mean(jnp.sum(plogp, axis=1), axis=(1, 2))


def total_variation(weights: jax.Array) -> jax.Array:
  """L_TV: mean over pixels of sum_k (|A(y+1, x) - A(y, x)| + |A(y, x+1) - A(y, x)|).

  weights [B, K, H, W] -> [B]; 0 for an A constant over space.
  """
  dy = jnp.abs(weights[:, :, 1:, :] - weights[:, :, :-1, :]).sum(axis=(1, 2, 3))
  dx = jnp.abs(weights[:, :, :, 1:] - weights[:, :, :, :-1]).sum(axis=(1, 2, 3))
  return (dy + dx) / (weights.shape[2] * weights.shape[3])


def largest_area(weights: jax.Array) -> jax.Array:
  """L_M = max_k sum_hw A_khw: the area of the largest template. [B, K, H, W] -> [B]; H*W when
  one template is copied everywhere."""
  return jnp.max(jnp.sum(weights, axis=(2, 3)), axis=1)


def lowpass(images: jax.Array, factor: int) -> jax.Array:
  """The low-pass view of the content loss: ``factor`` x ``factor`` box averages
  (downsampling). images [B, H, W, C] -> [B, H/factor, W/factor, C]."""
  b, h, w, c = images.shape
  if h % factor or w % factor:
    raise ValueError(f"content low-pass factor {factor} does not divide the image {h}x{w}")
  return images.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


# -- networks -----------------------------------------------------------------------------------

class STUNet(nnx.Module):
  """The set-transformer U-Net: per-element U-Net with set layers across K at every level.

  templates [B, K, H, W, 3], content [B, H, W, 3] or None, set_mask [B, K] or None ->
  (logits [B, K, H, W], warp head output: [B, K, 6] affine, [B, K, H, W, 2] flow, or None).
  """

  def __init__(self, cfg: MagicConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    dtype = precision.compute_dtype(cfg.dtype)
    cin = 6 if cfg.guided else 3
    cout = 1 + (2 if cfg.warp == "flow" else 0)
    self.unet = UNet(cin, cout, cfg.width, cfg.depth, cfg.blocks, remat=cfg.remat, dtype=dtype,
                     rngs=rngs)
    steps = 2 * cfg.depth - 1
    widths = [*self.unet.widths, *self.unet.widths[-2::-1]]
    self.sets = nnx.List([set_layer(widths[s], cfg.heads, cfg.inducing, dtype=dtype, rngs=rngs)
                          for s in range(steps)])
    if cfg.warp == "affine":
      self.affine = nnx.Linear(self.unet.widths[-1], 6, rngs=rngs, dtype=dtype,
                               param_dtype=jnp.float32,
                               kernel_init=nnx.initializers.zeros_init())
    if cfg.warp == "flow":  # the flow channels start at zero: no warp at initialisation
      kernel = self.unet.head.kernel[...]
      self.unet.head.kernel[...] = kernel.at[..., 1:].set(0.0)

  def __call__(self, templates: jax.Array, content: jax.Array | None = None,
               set_mask: jax.Array | None = None, norms: Norms | None = None,
               valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
    b, k, h, w, c = templates.shape
    x = templates
    if self.cfg.guided:
      if content is None:
        raise ValueError("a guided MAGIC generator needs the content patch I_c")
      x = jnp.concatenate([x, jnp.broadcast_to(content[:, None], (b, k, h, w, 3))], axis=-1)
    x = x.reshape(b * k, h, w, x.shape[-1])
    remat = self.cfg.remat if norms is None else "none"  # replayed statistics: a render path

    def mix(step, feats):
      n, fh, fw, fc = feats.shape
      s = feats.reshape(b, k, fh, fw, fc).transpose(0, 2, 3, 1, 4)      # [B, h, w, K, C]
      s = s.reshape(b, fh * fw, k, fc)                                   # one set per pixel
      m = None
      if set_mask is not None:
        m = jnp.broadcast_to(set_mask[:, None, None, :], (b, fh, fw, k)).reshape(b, -1, k)
      s = apply_in_chunks(self.sets[step], s, m, self.cfg.set_chunk, remat)
      return s.reshape(b, fh, fw, k, fc).transpose(0, 3, 1, 2, 4).reshape(n, fh, fw, fc)

    out, bottleneck = self.unet(x, norms, valid, mix)
    out = precision.f32(out)
    logits = out[..., 0].reshape(b, k, h, w)
    if self.cfg.warp == "affine":
      pooled = jnp.mean(precision.f32(bottleneck), axis=(1, 2)).reshape(b, k, -1)
      return logits, precision.f32(self.affine(pooled))
    if self.cfg.warp == "flow":
      return logits, out[..., 1:].reshape(b, k, h, w, 2)
    return logits, None

  def radius(self) -> int:
    return self.unet.radius()


def affine_matrix(raw: jax.Array) -> jax.Array:
  """The bounded affine map of the warp head. raw [..., 6] -> [..., 2, 3]; raw = 0: identity."""
  linear = jnp.eye(2) + 0.25 * jnp.tanh(raw[..., :4]).reshape(*raw.shape[:-1], 2, 2)
  shift = 0.5 * jnp.tanh(raw[..., 4:])[..., None]
  return jnp.concatenate([linear, shift], axis=-1)


class Refiner(nnx.Module):
  """I = sigmoid(logit(I_M) + r(I_M)); r's last layer starts at zero. [B, H, W, 3] -> same."""

  def __init__(self, cfg: MagicConfig, *, rngs: nnx.Rngs):
    self.unet = UNet(3, 3, cfg.refine_width, cfg.refine_depth, 1, remat=cfg.remat,
                     dtype=precision.compute_dtype(cfg.dtype), rngs=rngs)
    self.unet.head.kernel[...] = jnp.zeros_like(self.unet.head.kernel[...])

  def __call__(self, collage: jax.Array, norms: Norms | None = None,
               valid: jax.Array | None = None) -> jax.Array:
    residual, _ = self.unet(collage, norms, valid)  # in the compute dtype; the rest float32
    residual, collage = precision.f32(residual), precision.f32(collage)
    p = jnp.clip(collage, 1e-3, 1.0 - 1e-3)
    return jax.nn.sigmoid(jnp.log(p) - jnp.log1p(-p) + residual)

  def radius(self) -> int:
    return self.unet.radius()


class Generator(nnx.Module):
  """ST-U-Net + warp + set pooling + refinement: templates -> :class:`Collage`."""

  def __init__(self, cfg: MagicConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.stunet = STUNet(cfg, rngs=rngs)
    self.refiner = Refiner(cfg, rngs=rngs) if cfg.refine_depth else None

  @property
  def alignment(self) -> int:
    return 2 ** (max(self.cfg.depth, self.cfg.refine_depth, 1) - 1)

  def warp_templates(self, templates: jax.Array, warp: Warp) -> jax.Array:
    """warp(M) for whole images: templates [B, K, H, W, 3] -> [B, K, H, W, 3]."""
    h, w = templates.shape[2:4]
    center, unit = ((h - 1) / 2.0, (w - 1) / 2.0), self.cfg.crop / 2.0
    if warp.affine is not None:
      return jax.vmap(lambda t, a: affine_warp(t, a, center, unit))(templates, warp.affine)
    if warp.flow is not None:
      return jax.vmap(flow_warp)(templates, warp.flow)
    return templates

  def head(self, raw: jax.Array | None) -> Warp:
    """The warp head's raw output -> bounded :class:`Warp`."""
    if self.cfg.warp == "affine":
      return Warp(affine=affine_matrix(raw))
    if self.cfg.warp == "flow":
      return Warp(flow=self.cfg.max_flow * jnp.tanh(raw))
    return Warp()

  def refine(self, collage: jax.Array, norms: Norms | None = None,
             valid: jax.Array | None = None) -> jax.Array:
    return collage if self.refiner is None else self.refiner(collage, norms, valid)

  def __call__(self, templates: jax.Array, content: jax.Array | None = None,
               set_mask: jax.Array | None = None) -> Collage:
    """templates [B, K, H, W, 3] in [0, 1] (content [B, H, W, 3] when guided) -> Collage."""
    logits, raw = self.stunet(templates, content, set_mask)
    weights = blend_weights(logits, set_mask)
    warp = self.head(raw)
    warped = self.warp_templates(templates, warp)
    collage = set_pool(weights, warped)
    return Collage(self.refine(collage), collage, weights, logits, warped, warp)

  def radius(self) -> int:
    """Context pixels an output pixel needs, given replayed statistics and affine warps."""
    r = self.stunet.radius()
    if self.cfg.warp == "flow":
      r += int(-(-self.cfg.max_flow // 1)) + 1
    return r + (self.refiner.radius() if self.refiner is not None else 0)


class Discriminator(nnx.Module):
  """PatchGAN: images [B, H, W, 3] -> float32 logits [B, H / 2**depth, W / 2**depth]; the
  convolutions in the compute dtype."""

  def __init__(self, cfg: MagicConfig, *, rngs: nnx.Rngs):
    self.dtype = precision.compute_dtype(cfg.dtype)
    conv = lambda cin, cout, **kw: nnx.Conv(cin, cout, (5, 5), padding="SAME", dtype=self.dtype,
                                            param_dtype=jnp.float32, rngs=rngs, **kw)
    layers, c = [], 3
    for i in range(cfg.disc_depth):
      w = min(cfg.disc_width * 2 ** i, cfg.disc_max_width)
      layers.append(conv(c, w, strides=(2, 2)))
      c = w
    self.layers = nnx.List(layers)
    self.out = conv(c, 1)

  def __call__(self, images: jax.Array) -> jax.Array:
    x = (images * 2.0 - 1.0).astype(self.dtype)
    for layer in self.layers:
      x = jax.nn.leaky_relu(layer(x), 0.2)
    return precision.f32(self.out(x)[..., 0])
