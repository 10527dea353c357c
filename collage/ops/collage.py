"""Collage operators (Neural Collages, Poli et al. 2022, Def. 3.1) as pure functions.

A collage operator ``T`` maps an image ``z: [B, H, W, C]`` to an image of the same shape:

1. Partition ``z`` into *range* blocks ``rh x rw`` (non-overlapping, tiling the image) and
   *domain* blocks ``dh x dw`` at a stride (non-overlapping by default; ``domain_size=None``
   makes the whole image the single domain). Each domain is mean-pooled to range size.
2. *Candidates*: every pooled domain under each chosen isometry (``blocks.isometry``
   numbering), then the ``num_aux`` auxiliary sources: fixed range-size arrays given by the
   caller (e.g. learned patches), independent of ``z``.
3. Range block ``r`` of channel ``ch`` is ``sum_c w[b, ch, r, c] * cand_c[..., ch] +
   bias[b, ch, r]`` (the bias is constant over the block's pixels); the range blocks are
   stitched back into the image.

Parameter layout (:class:`CollageParams`), for ``B`` images, ``C`` channels:
  ``weight: [B, C, R, K]`` and ``bias: [B, C, R]`` where
  ``R = spec.num_ranges``: range blocks in row-major order over the ``(H/rh) x (W/rw)`` grid;
  ``K = spec.num_candidates``: candidate ``c = d * I + i`` for domain ``d`` (row-major over
  the domain grid) under the ``i``-th entry of ``spec.isometries`` (``I`` of them), for
  ``c < spec.num_domain_candidates``; then auxiliary source ``a`` at
  ``c = spec.num_domain_candidates + a``.

Contractivity. If ``s = max over (b, ch, r) of sum over domain candidates of |w|`` is < 1,
``T`` is a contraction with factor ``s`` in the sup norm: pooling and isometries do not
increase the sup norm, and auxiliary terms and biases cancel in ``T(x) - T(y)``. So the
iteration converges from any start (Banach), and for any ``x`` the collage theorem
(Barnsley 1988, *Fractals Everywhere*) bounds ``|x - x*| <= |x - T(x)| / (1 - s)``.
:func:`params_from_raw` maps unconstrained values to weights with ``s < spec.s_max < 1``.

Resolution. At integer ``scale = k`` the image is ``kH x kW``, every block and stride is
``k`` times larger and auxiliary sources are upsampled by ``k`` (``blocks.upsample_smooth``:
bilinear, corrected to pool back exactly); ``R`` and ``K``
are unchanged, so the same parameters apply. Since mean-pooling by ``k`` commutes with the
operator (``pool_k(T_k(y)) = T_1(pool_k(y))``), the converged scale-``k`` decode
mean-pooled by ``k`` equals the converged scale-1 decode exactly.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from einops import rearrange

from collage.ops import blocks
from collage.ops import fixed_point as fp


def _pair(v, name: str) -> tuple[int, int]:
  if isinstance(v, (int,)) and not isinstance(v, bool):
    return (int(v), int(v))
  try:
    a, b = v
    return (int(a), int(b))
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None


class CollageParams(NamedTuple):
  """The affine maps of a batch of collage operators (a pytree).

  Attributes:
    weight: [B, C, R, K] candidate weights (see module doc for the R and K order).
    bias: [B, C, R] per-range, per-channel offsets.
  """
  weight: jax.Array
  bias: jax.Array


@dataclasses.dataclass(frozen=True)
class CollageSpec:
  """The static structure of a collage operator (hashable: usable as a jit static arg).

  Attributes:
    image_size: (H, W) at scale 1.
    range_size: (rh, rw) range block size; must tile the image.
    domain_size: (dh, dw) domain block size, a multiple of the range size; None: the
      whole image is the single domain (then H, W must be multiples of rh, rw).
    domain_stride: (sh, sw) step between domains; None: ``domain_size`` (non-overlapping).
      Domains must cover the image exactly: ``(H - dh) % sh == 0`` and likewise for W.
    isometries: which of the 8 block isometries (``collage.ops.blocks`` numbering) make
      candidates; 90-degree rotations (odd indices) need square range blocks.
    num_aux: number of auxiliary sources (range-size arrays independent of the image).
    channels: C, the image channel count.
    s_max: bound on the contraction factor enforced by :func:`params_from_raw`, in (0, 1).
  """
  image_size: tuple[int, int]
  range_size: tuple[int, int]
  domain_size: tuple[int, int] | None = None
  domain_stride: tuple[int, int] | None = None
  isometries: tuple[int, ...] = (0,)
  num_aux: int = 0
  channels: int = 3
  s_max: float = 0.9

  def __post_init__(self):
    setattr_ = lambda k, v: object.__setattr__(self, k, v)  # frozen dataclass
    h, w = _pair(self.image_size, "image_size")
    rh, rw = _pair(self.range_size, "range_size")
    setattr_("image_size", (h, w))
    setattr_("range_size", (rh, rw))
    if h <= 0 or w <= 0:
      raise ValueError(f"image_size must be positive, got {h}x{w}")
    blocks.check_tiles(h, w, rh, rw, "range block")
    if self.domain_size is None:
      dh, dw = h, w
    else:
      dh, dw = _pair(self.domain_size, "domain_size")
      setattr_("domain_size", (dh, dw))
    if not (0 < dh <= h and 0 < dw <= w):
      raise ValueError(f"domain size {dh}x{dw} must be positive and fit the {h}x{w} image")
    if dh % rh or dw % rw:
      raise ValueError(
          f"domain size {dh}x{dw} must be a multiple of the range size {rh}x{rw} "
          f"(domains are mean-pooled to range size by an integer factor)")
    if self.domain_stride is not None:
      setattr_("domain_stride", _pair(self.domain_stride, "domain_stride"))
    sh, sw = self.domain_stride or (dh, dw)
    if sh <= 0 or sw <= 0:
      raise ValueError(f"domain stride must be positive, got {sh}x{sw}")
    if (h - dh) % sh or (w - dw) % sw:
      raise ValueError(
          f"domains of {dh}x{dw} at stride {sh}x{sw} do not tile a {h}x{w} image: "
          f"need (H - dh) % sh == 0 and (W - dw) % sw == 0")
    isos = tuple(int(k) for k in self.isometries)
    setattr_("isometries", isos)
    if not isos:
      raise ValueError("isometries must name at least one of 0..7")
    if len(set(isos)) != len(isos) or not all(0 <= k < blocks.NUM_ISOMETRIES for k in isos):
      raise ValueError(f"isometries must be distinct indices in 0..7, got {isos}")
    if rh != rw and any(k % 2 for k in isos):
      raise ValueError(f"90-degree rotations {[k for k in isos if k % 2]} need square range "
                       f"blocks, got {rh}x{rw}; valid for non-square: {blocks.SHAPE_PRESERVING}")
    if int(self.num_aux) < 0:
      raise ValueError(f"num_aux must be >= 0, got {self.num_aux}")
    setattr_("num_aux", int(self.num_aux))
    if int(self.channels) < 1:
      raise ValueError(f"channels must be >= 1, got {self.channels}")
    setattr_("channels", int(self.channels))
    if not 0.0 < float(self.s_max) < 1.0:
      raise ValueError(f"s_max must be in (0, 1) for a contraction, got {self.s_max}")
    setattr_("s_max", float(self.s_max))

  # -- derived sizes ---------------------------------------------------------------
  @property
  def domain_block(self) -> tuple[int, int]:
    """(dh, dw), the whole image when ``domain_size`` is None."""
    return self.domain_size or self.image_size

  @property
  def stride(self) -> tuple[int, int]:
    """(sh, sw), the effective domain stride."""
    return self.domain_stride or self.domain_block

  @property
  def pool_factor(self) -> tuple[int, int]:
    """(dh // rh, dw // rw): the mean-pooling window that shrinks a domain to range size."""
    (dh, dw), (rh, rw) = self.domain_block, self.range_size
    return (dh // rh, dw // rw)

  @property
  def range_grid(self) -> tuple[int, int]:
    """(H // rh, W // rw)."""
    return (self.image_size[0] // self.range_size[0], self.image_size[1] // self.range_size[1])

  @property
  def domain_grid(self) -> tuple[int, int]:
    """Domains per column and per row: ((H - dh) // sh + 1, (W - dw) // sw + 1)."""
    (h, w), (dh, dw), (sh, sw) = self.image_size, self.domain_block, self.stride
    return ((h - dh) // sh + 1, (w - dw) // sw + 1)

  @property
  def num_ranges(self) -> int:
    """R, the number of range blocks."""
    return self.range_grid[0] * self.range_grid[1]

  @property
  def num_domains(self) -> int:
    return self.domain_grid[0] * self.domain_grid[1]

  @property
  def num_domain_candidates(self) -> int:
    """Candidates that depend on the image: num_domains * len(isometries)."""
    return self.num_domains * len(self.isometries)

  @property
  def num_candidates(self) -> int:
    """K = num_domain_candidates + num_aux."""
    return self.num_domain_candidates + self.num_aux

  def param_shapes(self, batch_size: int) -> CollageParams:
    """Shapes of :class:`CollageParams` (and of the raw values) for ``batch_size`` images."""
    c, r, k = self.channels, self.num_ranges, self.num_candidates
    return CollageParams(weight=(batch_size, c, r, k), bias=(batch_size, c, r))

  def aux_shape(self, scale: int = 1) -> tuple[int, int, int, int]:
    """[A, rh, rw, C] at ``scale`` (a leading batch axis B is also accepted)."""
    rh, rw = self.range_size
    return (self.num_aux, rh * scale, rw * scale, self.channels)

  def at_scale(self, scale: int) -> "CollageSpec":
    """The same operator structure with image, blocks and strides ``scale`` times larger."""
    k = _check_scale(scale)
    mul = lambda p: None if p is None else (p[0] * k, p[1] * k)
    return dataclasses.replace(
        self, image_size=mul(self.image_size), range_size=mul(self.range_size),
        domain_size=mul(self.domain_size), domain_stride=mul(self.domain_stride))


def num_ranges(spec: CollageSpec) -> int:
  """R for ``spec`` (see :class:`CollageSpec`)."""
  return spec.num_ranges


def num_candidates(spec: CollageSpec) -> int:
  """K for ``spec`` (see :class:`CollageSpec`)."""
  return spec.num_candidates


def _check_scale(scale) -> int:
  if isinstance(scale, bool) or int(scale) != scale or int(scale) < 1:
    raise ValueError(f"scale must be a positive integer, got {scale!r}")
  return int(scale)


# -- parameters ----------------------------------------------------------------------
def params_from_raw(spec: CollageSpec, raw_weight: jax.Array, raw_bias: jax.Array) -> CollageParams:
  """Contractive parameters from unconstrained values.

  The domain-candidate weights of each (image, channel, range) are
  ``w = s_max * u / (1 + sum_c |u_c|)`` (a multi-dimensional softsign), so
  ``sum_c |w_c| = s_max * S / (1 + S) < s_max`` with ``S = sum_c |u_c|``: the operator is
  a contraction with factor below ``s_max`` for any raw values. Auxiliary-source weights
  and biases do not affect contractivity and are returned unchanged.

  Args:
    raw_weight: [B, C, R, K] unconstrained.
    raw_bias: [B, C, R].

  Returns:
    ``CollageParams`` with the same shapes.
  """
  _check_param_shapes(spec, raw_weight, raw_bias, "raw ")
  kd = spec.num_domain_candidates
  u, aux_w = raw_weight[..., :kd], raw_weight[..., kd:]
  w = spec.s_max * u / (1.0 + jnp.sum(jnp.abs(u), axis=-1, keepdims=True))
  return CollageParams(jnp.concatenate([w, aux_w], axis=-1), raw_bias)


def raw_from_params(spec: CollageSpec, params: CollageParams) -> tuple[jax.Array, jax.Array]:
  """Inverse of :func:`params_from_raw` (needs ``sum |w| < s_max`` over domain candidates).

  ``u = w / (s_max - sum |w|)``. Returns ``(raw_weight [B, C, R, K], raw_bias [B, C, R])``.
  """
  _check_param_shapes(spec, params.weight, params.bias)
  kd = spec.num_domain_candidates
  w, aux_w = params.weight[..., :kd], params.weight[..., kd:]
  u = w / (spec.s_max - jnp.sum(jnp.abs(w), axis=-1, keepdims=True))
  return jnp.concatenate([u, aux_w], axis=-1), params.bias


def init_raw(spec: CollageSpec, key: jax.Array, batch_size: int,
             stddev: float = 0.1, bias: float = 0.5) -> tuple[jax.Array, jax.Array]:
  """Random raw values: weights ~ N(0, stddev^2), biases constant ``bias``.

  Returns ``(raw_weight [B, C, R, K], raw_bias [B, C, R])`` (float32).
  """
  wshape, bshape = spec.param_shapes(batch_size)
  return (stddev * jax.random.normal(key, wshape, jnp.float32),
          jnp.full(bshape, bias, jnp.float32))


def contraction_factor(spec: CollageSpec, params: CollageParams) -> jax.Array:
  """Sup-norm Lipschitz bound of each operator: [B], max over (ch, r) of sum |w_domain|."""
  w = params.weight[..., :spec.num_domain_candidates]
  return jnp.max(jnp.sum(jnp.abs(w), axis=-1), axis=(1, 2))


def _check_param_shapes(spec, weight, bias, what=""):
  b = weight.shape[0] if weight.ndim else None
  want_w, want_b = spec.param_shapes(b)
  if weight.ndim != 4 or tuple(weight.shape) != want_w:
    raise ValueError(f"{what}weight must be [B, C, R, K] = [B, {want_w[1]}, {want_w[2]}, "
                     f"{want_w[3]}] for this spec, got {tuple(weight.shape)}")
  if tuple(bias.shape) != want_b:
    raise ValueError(f"{what}bias must be [B, C, R] = {want_b}, got {tuple(bias.shape)}")


# -- the operator ----------------------------------------------------------------------
def _pooled_domains(spec: CollageSpec, z: jax.Array) -> jax.Array:
  """z: [B, H, W, C] (spec's size) -> [B, D, rh, rw, C], domains mean-pooled to range size."""
  (h, w), (dh, dw), (sh, sw) = spec.image_size, spec.domain_block, spec.stride
  (rh, rw), (fh, fw) = spec.range_size, spec.pool_factor
  if h % fh == 0 and w % fw == 0 and sh % fh == 0 and sw % fw == 0:
    # Pool the image once, then cut (possibly overlapping) blocks: same numbers, less work.
    pooled = blocks.mean_pool(z, (fh, fw))
    doms = blocks.strided_blocks(pooled, rh, rw, sh // fh, sw // fw)
  else:
    doms = blocks.mean_pool(blocks.strided_blocks(z, dh, dw, sh, sw), (fh, fw))
  return rearrange(doms, "b nh nw rh rw c -> b (nh nw) rh rw c")


def _resize_aux(spec: CollageSpec, aux, scale: int, batch: int):
  """aux: None | [A, rh, rw, C] | [B, A, rh, rw, C] at scale 1 -> [B or 1, A, k*rh, k*rw, C]."""
  if spec.num_aux == 0:
    if aux is not None and aux.size:
      raise ValueError(f"spec has num_aux=0 but aux of shape {tuple(aux.shape)} was given")
    return None
  if aux is None:
    raise ValueError(f"spec has num_aux={spec.num_aux}: give aux of shape "
                     f"{spec.aux_shape()} or [B, *{spec.aux_shape()}]")
  want = spec.aux_shape()
  if aux.ndim == 4:
    aux = aux[None]
  if aux.ndim != 5 or tuple(aux.shape[1:]) != want or aux.shape[0] not in (1, batch):
    raise ValueError(f"aux must be [A, rh, rw, C] = {want} or [B={batch}, *{want}] "
                     f"(at scale 1), got {tuple(aux.shape)}")
  return blocks.upsample_smooth(aux, scale) if scale > 1 else aux


def candidates(spec: CollageSpec, z: jax.Array, aux: jax.Array | None = None,
               scale: int = 1) -> jax.Array:
  """All candidates of ``z`` in the parameter order.

  Args:
    z: [B, k*H, k*W, C] with ``k = scale``.
    aux: None, [A, rh, rw, C] or [B, A, rh, rw, C] auxiliary sources at scale 1.
    scale: integer resolution factor.

  Returns:
    [B, K, k*rh, k*rw, C].
  """
  k = _check_scale(scale)
  sk = spec.at_scale(k) if k > 1 else spec
  want = (sk.image_size[0], sk.image_size[1], spec.channels)
  if z.ndim != 4 or tuple(z.shape[1:]) != want:
    raise ValueError(f"z must be [B, {want[0]}, {want[1]}, {want[2]}] (image at scale {k}), "
                     f"got {tuple(z.shape)}")
  b = z.shape[0]
  doms = _pooled_domains(sk, z)  # [B, D, kr, kr, C]
  cands = blocks.isometries(doms, spec.isometries)  # [B, D, I, kr, kr, C]
  cands = rearrange(cands, "b d i h w c -> b (d i) h w c")  # domain-major, then isometry
  aux = _resize_aux(spec, aux, k, b)
  if aux is not None:
    aux = jnp.broadcast_to(aux, (b,) + aux.shape[1:]).astype(cands.dtype)
    cands = jnp.concatenate([cands, aux], axis=1)
  return cands


def apply(spec: CollageSpec, params: CollageParams, z: jax.Array,
          aux: jax.Array | None = None, scale: int = 1) -> jax.Array:
  """One application of the collage operator.

  Args:
    spec: the operator structure.
    params: ``weight [B, C, R, K]``, ``bias [B, C, R]`` (e.g. from :func:`params_from_raw`).
    z: [B, k*H, k*W, C] with ``k = scale``.
    aux: None, [A, rh, rw, C] (shared) or [B, A, rh, rw, C] auxiliary sources, at scale 1.
    scale: integer resolution factor ``k``.

  Returns:
    T(z): [B, k*H, k*W, C].
  """
  _check_param_shapes(spec, params.weight, params.bias)
  if params.weight.shape[0] != z.shape[0]:
    raise ValueError(f"params are for {params.weight.shape[0]} images, z has {z.shape[0]}")
  cands = candidates(spec, z, aux, scale)  # [B, K, kh, kw, C]
  out = jnp.einsum("bcrk,bkhwc->brhwc", params.weight.astype(cands.dtype), cands)
  out = out + rearrange(params.bias, "b c r -> b r 1 1 c").astype(out.dtype)
  nh, nw = spec.range_grid
  return rearrange(out, "b (nh nw) h w c -> b (nh h) (nw w) c", nh=nh, nw=nw)


def collage_error(spec: CollageSpec, params: CollageParams, x: jax.Array,
                  aux: jax.Array | None = None, scale: int = 1) -> jax.Array:
  """Per-image mean squared collage error ``mean (x - T(x))^2``. x: [B, k*H, k*W, C] -> [B]."""
  return jnp.mean((x - apply(spec, params, x, aux, scale)) ** 2, axis=(1, 2, 3))


# -- decoding --------------------------------------------------------------------------
def _start(spec: CollageSpec, batch: int, scale: int, start, dtype) -> jax.Array:
  h, w = spec.image_size
  shape = (batch, h * scale, w * scale, spec.channels)
  if start is None:
    start = 0.5
  start = jnp.asarray(start, dtype)
  if start.ndim == 0:
    return jnp.full(shape, start, dtype)
  if tuple(start.shape) != shape:
    raise ValueError(f"start must be a scalar or {list(shape)}, got {tuple(start.shape)}")
  return start


def _step(spec: CollageSpec, scale: int, theta, z):
  params, aux = theta
  return apply(spec, params, z, aux, scale)


def decode(spec: CollageSpec, params: CollageParams, aux: jax.Array | None = None, *,
           steps: int | None = None, tol: float | None = None, max_steps: int = 1000,
           scale: int = 1, start: jax.Array | float | None = None,
           implicit: bool | None = None) -> jax.Array:
  """Decode by iterating the operator from ``start`` (``lax`` loops; jit/vmap/grad safe).

  Args:
    spec, params, aux: as for :func:`apply` (aux at scale 1).
    steps: iterate exactly this many times; or
    tol: iterate until no pixel changes by more than ``tol`` (at most ``max_steps``).
    max_steps: cap for ``tol``.
    scale: integer resolution factor ``k``.
    start: scalar (constant image; default 0.5) or [B, k*H, k*W, C].
    implicit: gradient through the fixed point by the implicit function theorem
      (memory independent of steps; see ``collage.ops.fixed_point``). Default: implicit
      for ``tol``, unrolled backpropagation for ``steps``.

  Returns:
    [B, k*H, k*W, C].
  """
  k = _check_scale(scale)
  _check_param_shapes(spec, params.weight, params.bias)
  x0 = _start(spec, params.weight.shape[0], k, start, params.weight.dtype)
  step = lambda theta, z: _step(spec, k, theta, z)
  return fp.fixed_point(step, (params, aux), x0, steps=steps, tol=tol,
                        max_steps=max_steps, implicit=implicit)


def decode_trajectory(spec: CollageSpec, params: CollageParams, aux: jax.Array | None = None,
                      *, steps: int, scale: int = 1,
                      start: jax.Array | float | None = None) -> jax.Array:
  """Every iterate of the decode: [steps + 1, B, k*H, k*W, C] (index 0 is the start)."""
  k = _check_scale(scale)
  _check_param_shapes(spec, params.weight, params.bias)
  x0 = _start(spec, params.weight.shape[0], k, start, params.weight.dtype)

  def body(z, _):
    z = apply(spec, params, z, aux, k)
    return z, z

  _, zs = jax.lax.scan(body, x0, None, length=int(steps))
  return jnp.concatenate([x0[None], zs], axis=0)
