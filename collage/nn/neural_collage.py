"""The Neural Collage compression model: a hypernetwork that encodes an image tile into the
quantized parameters of a collage operator, whose fixed point is the decoded tile.

Method: Poli et al. 2022, "Self-Similarity Priors: Neural Collages as Differentiable Fractal
Representations" (hypernetwork encoder, contractive collage decoder, learned auxiliary
sources), with the rate term of Ballé et al. 2018 (additive-noise quantization proxy and a
learned factorized entropy model, :mod:`collage.nn.entropy_model`).

Structure of one ``T x T`` tile (``ModelConfig`` defaults, T = 32):

* Colour: RGB -> YCbCr (JPEG full range), each channel centred by -0.5. Luma and chroma
  are two independent collage operators (:mod:`collage.ops.collage`): luma with ``ry x ry``
  ranges, chroma (Cb, Cr) with coarser ``rc x rc`` ranges, as in 4:2:0-style codecs.
* Candidates per range: pooled domains under a few isometries, then learned auxiliary
  patches (model parameters shared by all images).
* Code: a flat vector per tile of N integers. For each of Y, Cb, Cr: the raw
  (unconstrained) weights ``[R, K]`` range-major, then the bias field's 2-D DCT
  coefficients ``[R]`` (an orthonormal transform of the ``range_grid`` of biases, so
  smooth bias fields cost few bits). Every position has a *slot* (candidate index or DCT
  coefficient, per channel); each slot has a learned quantization step and a learned pmf.
* Dequantize: ``raw = q * step[slot]``; weights through the contractive parametrization
  ``collage.params_from_raw``; the decode is ``decode_steps`` iterations of the operator
  from a flat (zero) start, so it is exactly reproducible and differentiable.
* Grayscale images use the luma part of the code only.
* Variable rate (``ModelConfig.rate_lams``, L >= 2 levels): one model for a range of
  trade-offs. Every row carries a continuous level ``t`` in ``[0, L - 1]``; the quantization
  steps, the prior's pmfs and a FiLM scale/shift of the encoder's trunk are learned per level
  and interpolated between levels (steps geometrically, pmfs as mixtures), so any ``t`` is one
  forward pass; the encoder's output is rescaled by the level's step (:meth:`analyse`): the
  gain-unit approach of Cui et al. 2021 ("Asymmetric gained deep image compression with
  continuous rate adaptation") applied to the collage code. Training draws
  ``t`` per crop with its lam ``exp(interp(log rate_lams, t))``.
* Context model (``ModelConfig.context_model``): the weights are coded as significance flags
  under a discrete context of already decoded flags (activity of the left and upper ranges,
  the same candidate there, earlier candidates of the range) and the nonzero values under the
  slot's pmf without zero (:mod:`collage.nn.entropy_model`); bias coefficients keep the
  factorized prior.

Saving, loading and placeholder models: :mod:`collage.nn.neural_collage_io`; test-time refinement
of a code: :mod:`collage.codec.refinement`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from collage.nn import entropy_model as em
from collage.nn import layers
from collage.ops import collage as col
from collage.ops import color
from collage.ops import dct


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of a Neural Collage codec model (hashable; saved with the weights).

  Attributes:
    tile: T, the side of a square tile (the codec tiles images into T x T crops).
    luma_range, luma_domain, luma_stride: range size, domain size and domain stride of the
      luma operator (domain None: the whole tile).
    luma_isometries: isometries of the luma domain candidates.
    luma_aux: number of learned luma auxiliary patches.
    chroma_range, chroma_domain, chroma_stride, chroma_isometries, chroma_aux: the same
      for the chroma (Cb, Cr) operator.
    s_max: contraction bound of the weight parametrization.
    decode_steps: operator iterations of the decode (train and codec alike).
    width: channels of the hypernetwork's conv trunk.
    depth: residual blocks at the luma range grid.
    hidden: width of the global (dense) head.
    support: M; quantized values are integers in [-M, M].
    coding: "entropy" (learned entropy model, range coded: the factorized prior, or the
      context model with ``context_model``) or "bitpack" (the paper's baseline: fixed bits
      per value, L2 magnitude regularizer in training).
    bitpack_bits: bits per value for "bitpack" (values clipped to its signed range).
    rate_lams: a variable-rate model's trade-off at each of its L >= 2 levels, increasing
      (loss = bpp + lam * 255^2 * MSE); empty for a fixed-rate model (every model before
      session 7), whose one lam is a training setting kept in its metadata.
    context_model: code the collage weights with the context model
      (:func:`collage.nn.entropy_model.context_bits`: a significance flag per weight under a
      context of decoded neighbours, then the nonzero value) instead of the factorized prior;
      False for every model before session 8.
  """
  tile: int = 32
  luma_range: int = 8
  luma_domain: int | None = 16
  luma_stride: int | None = 16
  luma_isometries: tuple[int, ...] = (0, 4)
  luma_aux: int = 24
  chroma_range: int = 16
  chroma_domain: int | None = None
  chroma_stride: int | None = None
  chroma_isometries: tuple[int, ...] = (0, 4)
  chroma_aux: int = 8
  s_max: float = 0.8
  decode_steps: int = 12
  width: int = 64
  depth: int = 2
  hidden: int = 128
  support: int = 127
  coding: str = "entropy"
  bitpack_bits: int = 6
  rate_lams: tuple[float, ...] = ()
  context_model: bool = False

  def __post_init__(self):
    object.__setattr__(self, "luma_isometries", tuple(int(k) for k in self.luma_isometries))
    object.__setattr__(self, "chroma_isometries", tuple(int(k) for k in self.chroma_isometries))
    object.__setattr__(self, "rate_lams", tuple(float(v) for v in self.rate_lams))
    lams = self.rate_lams
    if lams and (len(lams) < 2 or min(lams) <= 0 or any(b <= a for a, b in zip(lams, lams[1:]))
                 or self.coding != "entropy"):
      raise ValueError(f"rate_lams must be empty (fixed rate) or >= 2 increasing positive lams "
                       f"of an entropy-coded model, got {list(lams)} (coding {self.coding!r})")
    object.__setattr__(self, "context_model", bool(self.context_model))
    if self.context_model and self.coding != "entropy":
      raise ValueError("context_model needs coding='entropy'")
    if self.coding not in ("entropy", "bitpack"):
      raise ValueError(f"coding must be 'entropy' or 'bitpack', got {self.coding!r}")
    if not 1 <= self.bitpack_bits <= 16:
      raise ValueError(f"bitpack_bits must be in 1..16, got {self.bitpack_bits}")
    r = self.luma_range
    if r < 2 or r & (r - 1) or self.tile % r or self.tile % self.chroma_range:
      raise ValueError(f"luma_range must be a power of two >= 2 dividing tile={self.tile}, and "
                       f"chroma_range must divide the tile; got {r} and {self.chroma_range}")

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["luma_isometries"] = list(self.luma_isometries)
    d["chroma_isometries"] = list(self.chroma_isometries)
    # A fixed-rate model's dict is what it was before variable-rate models existed: the
    # codec's model fingerprints (file -> model) hash it.
    if self.rate_lams:
      d["rate_lams"] = list(self.rate_lams)
    else:
      del d["rate_lams"]
    if not self.context_model:  # likewise for every model before the context model
      del d["context_model"]
    return d

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
      raise ValueError(f"unknown model config keys {sorted(unknown)}; valid: {sorted(names)}")
    return cls(**d)


class Layout:
  """Where every value of a tile's code lives, and its slot. Pure Python / numpy.

  Attributes:
    spec_y, spec_c: the luma (1 channel) and chroma (2 channels) ``CollageSpec``.
    n_y, n_c: code length of the luma part and of one chroma channel.
    num_values(channels): N for a 1- or 3-channel image.
    slots: int [N] for a colour tile (a grayscale tile uses ``slots[:n_y]``).
    num_slots: S.
  """

  def __init__(self, cfg: ModelConfig):
    t = cfg.tile
    self.cfg = cfg
    self.spec_y = col.CollageSpec(
        image_size=(t, t), range_size=cfg.luma_range, domain_size=cfg.luma_domain,
        domain_stride=cfg.luma_stride, isometries=cfg.luma_isometries, num_aux=cfg.luma_aux,
        channels=1, s_max=cfg.s_max)
    self.spec_c = col.CollageSpec(
        image_size=(t, t), range_size=cfg.chroma_range, domain_size=cfg.chroma_domain,
        domain_stride=cfg.chroma_stride, isometries=cfg.chroma_isometries,
        num_aux=cfg.chroma_aux, channels=2, s_max=cfg.s_max)
    ry, ky = self.spec_y.num_ranges, self.spec_y.num_candidates
    rc, kc = self.spec_c.num_ranges, self.spec_c.num_candidates
    self.ry, self.ky, self.rc, self.kc = ry, ky, rc, kc
    self.n_y = ry * ky + ry
    self.n_c = rc * kc + rc
    slots = [np.tile(np.arange(ky), ry), ky + np.arange(ry)]
    base = ky + ry
    for ch in range(2):
      b = base + ch * (kc + rc)
      slots += [b + np.tile(np.arange(kc), rc), b + kc + np.arange(rc)]
    self.slots = np.concatenate(slots).astype(np.int32)
    self.num_slots = base + 2 * (kc + rc)
    # Which slots hold bias DCT coefficients (DC first in each channel).
    is_bias = np.zeros(self.num_slots, bool)
    is_bias[ky:ky + ry] = True
    for ch in range(2):
      b = base + ch * (kc + rc) + kc
      is_bias[b:b + rc] = True
    self.is_bias_slot = is_bias
    self.is_weight = ~is_bias[self.slots]                             # [N] per position
    # The weight blocks of the code: (offset, range grid, candidates, bias values after it).
    gy, gc = self.spec_y.range_grid, self.spec_c.range_grid
    self.weight_groups = [(0, gy, ky, ry)] + [(self.n_y + ch * self.n_c, gc, kc, rc)
                                              for ch in range(2)]
    self.dct_y = [dct.dct_matrix(n) for n in self.spec_y.range_grid]
    self.dct_c = [dct.dct_matrix(n) for n in self.spec_c.range_grid]

  def num_values(self, channels: int) -> int:
    if channels not in (1, 3):
      raise ValueError(f"channels must be 1 or 3, got {channels}")
    return self.n_y if channels == 1 else self.n_y + 2 * self.n_c

  def slots_for(self, channels: int) -> np.ndarray:
    return self.slots[:self.num_values(channels)]

  def weight_blocks(self, n: int) -> list[tuple[int, int, int, int, int]]:
    """The weight blocks inside a code of length n (the colour length or its luma prefix):
    (offset, grid rows, grid columns, candidates, bias values after the block)."""
    return [(off, gh, gw, k, n_bias) for off, (gh, gw), k, n_bias in self.weight_groups
            if off < n]

  def code_contexts(self, q, xp=np):
    """The context model's context of every position of codes q [B, n] (n: the colour
    length or its luma prefix) -> int32 [B, n] (:func:`collage.nn.entropy_model.weight_contexts`
    on each weight block; 0 at bias positions, which have none). xp: numpy or jax.numpy."""
    b, n = q.shape[0], q.shape[-1]
    parts = []
    for off, gh, gw, k, n_bias in self.weight_blocks(n):
      sig = (q[:, off:off + gh * gw * k] != 0).reshape(b, gh, gw, k)
      parts += [em.weight_contexts(sig, xp).reshape(b, -1), xp.zeros((b, n_bias), xp.int32)]
    return xp.concatenate(parts, axis=-1)


def _bias_from_dct(coefs: jax.Array, mats: list[np.ndarray]) -> jax.Array:
  """coefs: [B, gh*gw] DCT coefficients -> [B, gh*gw] biases (row-major range order), by the
  inverse 2-D DCT with ``mats`` = [dct_matrix(gh), dct_matrix(gw)]."""
  dh, dw = (jnp.asarray(d) for d in mats)
  c = coefs.reshape(coefs.shape[0], dh.shape[0], dw.shape[0])
  return jnp.einsum("kh,bkl,lw->bhw", dh, c, dw).reshape(coefs.shape[0], -1)


class Hypernet(nnx.Module):
  """Encoder: a centred YCbCr tile -> the continuous code (quantization units).

  x: [B, T, T, 3] -> y: [B, N] with N = ``Layout.num_values(3)``.
  Trunk: log2(luma_range) stride-2 convs down to the luma range grid, ``depth`` residual
  blocks; per-range 1x1 head for luma weights; a dense head on the flattened grid for the
  luma bias DCT coefficients and all chroma values. A variable-rate model scales and shifts
  the trunk's output channels per rate level (``film`` [L, 2, width], zero: the identity).
  """

  def __init__(self, cfg: ModelConfig, layout: Layout, *, rngs: nnx.Rngs):
    w = cfg.width
    n_down = int(np.log2(cfg.luma_range))
    chans = [3] + [max(w // 2 ** (n_down - 1 - i), 8) for i in range(n_down)]
    self.down = nnx.List([layers.ConvAct(chans[i], chans[i + 1], 4 if i == 0 else 3, 2,
                                         rngs=rngs) for i in range(n_down)])
    self.blocks = nnx.List([layers.ResBlock(w, rngs=rngs) for _ in range(cfg.depth)])
    self.head_w = nnx.Linear(w, layout.ky, rngs=rngs)
    grid = layout.spec_y.range_grid
    n_global = layout.ry + 2 * layout.n_c
    self.head_g1 = nnx.Linear(w * grid[0] * grid[1], cfg.hidden, rngs=rngs)
    self.head_g2 = nnx.Linear(cfg.hidden, n_global, rngs=rngs)
    self.layout = layout
    if cfg.rate_lams:
      self.film = nnx.Param(jnp.zeros((len(cfg.rate_lams), 2, w)))

  def __call__(self, x: jax.Array, level: jax.Array | None = None) -> jax.Array:
    h = x
    for layer in self.down:
      h = layer(h)
    for block in self.blocks:
      h = block(h)
    if level is not None:
      g = em.interpolate_levels(self.film[...], level)[:, :, None, None, :]   # [B, 2, 1, 1, w]
      h = h * (1.0 + g[:, 0]) + g[:, 1]
    h = jax.nn.gelu(h)
    b = x.shape[0]
    lay = self.layout
    wy = self.head_w(h).reshape(b, lay.ry * lay.ky)                  # range-major
    g = self.head_g2(jax.nn.gelu(self.head_g1(h.reshape(b, -1))))
    by, rest = g[:, :lay.ry], g[:, lay.ry:]
    return jnp.concatenate([wy, by, rest], axis=-1)


def initial_steps_and_scales(layout: Layout, levels: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """A new model's quantization steps and prior scales: fine steps for the DCT bias
  coefficients, coarser for the weights; a discrete Laplace pmf of scale 8 for the bias slots
  and 1 for the weights. Returns (steps float32 [S], or [L, S] for ``levels`` L > 0; scales
  [S], or [L * S], level-major: one set per rate level)."""
  step0 = np.where(layout.is_bias_slot, 1.0 / 64, 1.0 / 16).astype(np.float32)
  scale0 = np.where(layout.is_bias_slot, 8.0, 1.0)
  if levels:
    step0, scale0 = np.tile(step0, (levels, 1)), np.tile(scale0, levels)
  return step0, scale0


# A context model stores its entropy model's logits (the prior's and the significance logits)
# divided by CONTEXT_GAIN and uses them multiplied by it. Adam's steps are about the learning
# rate in parameter space, so these logits move CONTEXT_GAIN times faster than the network's
# weights: they are statistics of the code, far from their optimum when a model changes its
# entropy model, while the network starts close to its own (at the network's learning rate the
# significance logits moved by about 0.2 in 600 steps, against the 1-3 they need).
CONTEXT_GAIN = 20.0


def initial_zero_logits(logits) -> np.ndarray:
  """A context model's significance logits [rows, CONTEXTS] from the prior's logits [rows, K]:
  each slot's log-odds of zero in every context (the factorized prior's rates, to start)."""
  z = em.zero_logits_from(np.asarray(logits))
  return np.repeat(z[:, None], em.CONTEXTS, axis=1).astype(np.float32)


def stored_entropy_logits(prior_logits) -> tuple[np.ndarray, np.ndarray]:
  """A context model's stored (prior, significance) logits that start from the factorized
  prior's (effective) logits [rows, K]: both divided by :data:`CONTEXT_GAIN`."""
  prior_logits = np.asarray(prior_logits, np.float32)
  return prior_logits / CONTEXT_GAIN, initial_zero_logits(prior_logits) / CONTEXT_GAIN


class NeuralCollage(nnx.Module):
  """Hypernetwork encoder + learned auxiliary patches + per-slot steps + entropy model."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.layout = lay = Layout(cfg)
    self.encoder = Hypernet(cfg, lay, rngs=rngs)
    ry, rc = cfg.luma_range, cfg.chroma_range
    self.aux_y = nnx.Param(0.1 * jax.random.normal(rngs.params(), (cfg.luma_aux, ry, ry, 1)))
    self.aux_c = nnx.Param(0.1 * jax.random.normal(rngs.params(), (cfg.chroma_aux, rc, rc, 2)))
    self.levels = len(cfg.rate_lams)
    step0, scale0 = initial_steps_and_scales(lay, self.levels)
    self.log_step = nnx.Param(jnp.log(jnp.asarray(step0)))
    self.prior = em.FactorizedPrior(scale0.size, cfg.support, scale0)
    if cfg.context_model:  # [max(L, 1) * S, CONTEXTS], level-major like the prior's logits
      # Stored / CONTEXT_GAIN: self.prior's own bits() and log_pmf() do not apply the gain; a
      # context model's rates and tables go through context_logits().
      prior, zero = stored_entropy_logits(em.laplace_logits(scale0.size, cfg.support, scale0))
      self.prior.logits = nnx.Param(jnp.asarray(prior))
      self.zero_logits = nnx.Param(jnp.asarray(zero))

  # -- rate levels (variable-rate models) ------------------------------------------------
  def _check_level(self, level):
    """None for a fixed-rate model; a variable-rate model's ``level`` as float32 [B]."""
    if not self.levels:
      if level is not None:
        raise ValueError("a fixed-rate model takes no rate level")
      return None
    if level is None:
      raise ValueError(f"a variable-rate model needs a rate level in [0, {self.levels - 1}]")
    return jnp.asarray(level, jnp.float32)

  def level_lam(self, level: jax.Array) -> jax.Array:
    """The trade-off of a variable-rate model at ``level``: log-linear in ``rate_lams``."""
    log_lams = jnp.log(jnp.asarray(self.cfg.rate_lams, jnp.float32))[:, None]
    return jnp.exp(em.interpolate_levels(log_lams, jnp.atleast_1d(level))[:, 0])

  def level_logits(self, level: float) -> np.ndarray:
    """The prior's host logits [S, 2M+1] at one level (a fixed-rate model: its own), for
    :func:`collage.nn.entropy_model.integer_tables`."""
    logits = np.asarray(self._prior_logits(), np.float64)
    if not self.levels:
      return logits
    return em.level_logits(self._per_level(logits), level)

  def _per_level(self, table) -> jax.Array:
    """[max(L, 1) * S, X] -> [max(L, 1), S, X]."""
    return table.reshape(max(self.levels, 1), self.layout.num_slots, -1)

  def _gain(self) -> float:
    """What the stored entropy logits are multiplied by: CONTEXT_GAIN for a context model."""
    return CONTEXT_GAIN if self.cfg.context_model else 1.0

  def _prior_logits(self) -> jax.Array:
    """The prior's effective logits [max(L, 1) * S, K] (stored values * :meth:`_gain`)."""
    return self.prior.logits[...] * self._gain()

  def context_logits(self) -> tuple[jax.Array, jax.Array]:
    """A context model's effective logits: the prior's [max(L, 1), S, K] and the
    significance logits [max(L, 1), S, CONTEXTS] (stored values * CONTEXT_GAIN, in float32:
    one correctly rounded product, the same on every backend)."""
    return (self._per_level(self._prior_logits()),
            self._per_level(self.zero_logits[...] * self._gain()))

  def context_tables(self, level: float | None, precision: int) -> dict:
    """A context model's integer tables of ``precision`` bits at one level (a fixed-rate
    model: None), see :func:`collage.nn.entropy_model.context_tables`."""
    prior, zero = (np.asarray(a) for a in self.context_logits())
    return em.context_tables(prior, zero, 0.0 if level is None else level, precision)

  def bits(self, y: jax.Array, level: jax.Array | None = None,
           q: jax.Array | None = None) -> jax.Array:
    """Relaxed bits [B, N] of codes y [B, N] (colour layout, or its luma prefix) under the
    prior (at each row's level for a variable-rate model). A context model takes the weights'
    contexts from the integer code ``q`` (default: ``round(y)``)."""
    level = self._check_level(level)
    n = y.shape[-1]
    slots = jnp.asarray(self.layout.slots[:n])
    if self.cfg.context_model:
      q = jnp.round(y) if q is None else q
      ctx = self.layout.code_contexts(jax.lax.stop_gradient(q), jnp)
      lv = jnp.zeros(y.shape[:1]) if level is None else level
      prior, zero = self.context_logits()
      return em.context_bits(prior, zero, y, slots, self.layout.is_weight[:n], ctx, lv)
    if level is None:
      return self.prior.bits(y, slots)
    return em.level_bits(self._per_level(self.prior.logits[...]), y, slots, level)

  # -- code <-> collage parameters ----------------------------------------------------
  def analyse(self, rgb: jax.Array, level: jax.Array | None = None) -> jax.Array:
    """rgb: [B, T, T, 3] in [0, 1] -> continuous code y: [B, N] (quantization units).
    ``level`` [B]: the rows' rate levels (variable-rate models only). A variable-rate
    encoder predicts values in units of the geometric mean step over the levels; the code is
    that divided by the level's own step (gain units: a finer step at a higher level gives
    larger integers for the same parameter)."""
    level = self._check_level(level)
    y = self.encoder(color.rgb_to_ycbcr(rgb) - 0.5, level)
    if level is None:
      return y
    log_step = self.log_step[...]
    gain = jnp.exp(jnp.mean(log_step, axis=0) - em.interpolate_levels(log_step, level))
    return y * gain[:, self.layout.slots]

  def clip_range(self) -> tuple[float, float]:
    """The integer range of quantized values."""
    if self.cfg.coding == "bitpack":
      h = 2 ** (self.cfg.bitpack_bits - 1)
      return (-float(h), float(h - 1))
    return (-float(self.cfg.support), float(self.cfg.support))

  def dequantize(self, q: jax.Array, channels: int = 3,
                 level: jax.Array | None = None) -> jax.Array:
    """q: [B, N] (integers, or relaxed values) -> raw parameter values [B, N]."""
    slots = self.layout.slots_for(channels)
    level = self._check_level(level)
    if level is None:
      return q * jnp.exp(self.log_step[...])[slots]
    return q * jnp.exp(em.interpolate_levels(self.log_step[...], level))[:, slots]

  def collage_params(self, raw: jax.Array, channels: int = 3):
    """raw: [B, N] -> (luma CollageParams, chroma CollageParams or None)."""
    lay = self.layout
    b = raw.shape[0]
    wy = raw[:, :lay.ry * lay.ky].reshape(b, 1, lay.ry, lay.ky)
    by = _bias_from_dct(raw[:, lay.ry * lay.ky:lay.n_y], lay.dct_y)[:, None, :]
    py = col.params_from_raw(lay.spec_y, wy, by)
    if channels == 1:
      return py, None
    ws, bs = [], []
    for ch in range(2):
      part = raw[:, lay.n_y + ch * lay.n_c: lay.n_y + (ch + 1) * lay.n_c]
      ws.append(part[:, :lay.rc * lay.kc].reshape(b, lay.rc, lay.kc))
      bs.append(_bias_from_dct(part[:, lay.rc * lay.kc:], lay.dct_c))
    pc = col.params_from_raw(lay.spec_c, jnp.stack(ws, 1), jnp.stack(bs, 1))
    return py, pc

  def synthesise(self, q: jax.Array, channels: int = 3, scale: int = 1,
                 level: jax.Array | None = None) -> jax.Array:
    """Decode a code. q: [B, N] -> image [B, kT, kT, channels] (RGB or gray, not clipped).

    ``decode_steps`` operator iterations from a flat start, at integer ``scale``."""
    raw = self.dequantize(q, channels, level)
    py, pc = self.collage_params(raw, channels)
    steps = self.cfg.decode_steps
    y = col.decode(self.layout.spec_y, py, self.aux_y[...], steps=steps, scale=scale,
                   start=0.0)
    if channels == 1:
      return y + 0.5
    c = col.decode(self.layout.spec_c, pc, self.aux_c[...], steps=steps, scale=scale,
                   start=0.0)
    return color.ycbcr_to_rgb(jnp.concatenate([y, c], axis=-1) + 0.5)

  def quantize(self, y: jax.Array) -> jax.Array:
    """Hard quantization used by the codec: round and clip. [B, N] -> [B, N] float."""
    lo, hi = self.clip_range()
    return jnp.clip(jnp.round(y), lo, hi)

  # -- training objective -----------------------------------------------------------------
  def losses(self, rgb: jax.Array, rng: jax.Array,
             level: jax.Array | None = None) -> dict[str, jax.Array]:
    """Relaxed rate and distortion of a batch. rgb: [B, T, T, 3] in [0, 1]; ``level`` [B]:
    the crops' rate levels (variable-rate models only).

    Distortion uses straight-through rounding (what the codec decodes); the rate uses the
    additive-noise relaxation under the learned prior (Ballé et al. 2018).

    Returns: dict with mse (RGB), bpp (relaxed, entropy coding; fixed for bitpack),
      tile_mse, tile_bpp ([B]: per crop), l2 (mean squared raw value), y_abs (mean |y|).
    """
    lo, hi = self.clip_range()
    y = self.analyse(rgb, level)
    y_c = jnp.clip(y, lo, hi)
    q = em.round_ste(y_c)
    x_hat = self.synthesise(q, 3, level=level)
    tile_mse = jnp.mean((x_hat - rgb) ** 2, axis=(1, 2, 3))
    pixels = rgb.shape[1] * rgb.shape[2]
    if self.cfg.coding == "entropy":
      y_noisy = em.uniform_noise(rng, y_c)
      tile_bpp = jnp.sum(self.bits(y_noisy, level, q), axis=-1) / pixels
    else:
      tile_bpp = jnp.full(y.shape[:1], y.shape[-1] * self.cfg.bitpack_bits / pixels, jnp.float32)
    raw = self.dequantize(q, 3, level)
    return {"mse": jnp.mean(tile_mse), "bpp": jnp.mean(tile_bpp), "tile_mse": tile_mse,
            "tile_bpp": tile_bpp, "l2": jnp.mean(raw ** 2), "y_abs": jnp.mean(jnp.abs(y))}
