"""Rendering a MAGIC collage of any size in overlapping tiles (posters).

    templates [K, H, W, 3], content [H, W, 3] -> {"image", "collage", "weights_rgb", ...}

Two things in the generator look at the whole image: instance-norm statistics and the affine
warp (predicted from features averaged over space). Both are computed once, on a reference
window of the canvas (by default the central window of the training crop's size, the context
the statistics had in training; the whole canvas when ``window`` covers it), and replayed in
every tile. Everything else is local: an output pixel depends on inputs within
``Generator.radius()`` pixels. Each tile is therefore computed on its interior plus a ``halo``
of that radius, outside-image features are zeroed before every convolution as a whole-image
'SAME' convolution pads them, and only the interior is kept: the tiles equal the whole-image
rendering with the same statistics, so there are no seams. A smaller ``halo`` saves memory and
time at the cost of exactness (the difference decays with distance; measure it before using).

Sides that are not multiples of the U-Nets' alignment (2**(depth-1)) are padded by repeating
the border, and the padding is cropped from the outputs.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from collage.nn.magic import Generator, blend_weights, flow_warp, set_pool, affine_warp
from collage.nn.unet import Norms


def template_colours(k: int, seed: int = 0) -> np.ndarray:
  """One random colour per template, [k, 3] in [0.15, 1] (seeded), for showing A."""
  return np.random.default_rng(seed).uniform(0.15, 1.0, (k, 3)).astype(np.float32)


def _round_up(x: int, m: int) -> int:
  return -(-x // m) * m


def _pad_edge(x: np.ndarray, h: int, w: int, axis: int) -> np.ndarray:
  """Pads spatial axes (axis, axis + 1) at the end to h x w by repeating the border."""
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, h - x.shape[axis])
  pad[axis + 1] = (0, w - x.shape[axis + 1])
  return np.pad(x, pad, mode="edge") if any(p[1] for p in pad) else x


class TiledRenderer:
  """Renders one generator at any size. Build once per generator; jitted pieces are reused.

  Args:
    generator: a :class:`collage.nn.magic.Generator` (its parameters are captured).
  """

  def __init__(self, generator: Generator):
    self.gen = generator
    self.cfg = generator.cfg
    self.align = generator.alignment
    gen = generator

    def window_pass(templates, content):
      norms = Norms()
      logits, raw = gen.stunet(templates, content, None, norms)
      return logits, raw, norms.recorded

    def refine_stats(weights_logits, warped):
      collage = set_pool(blend_weights(weights_logits, None), warped)
      norms = Norms()
      gen.refine(collage, norms)
      return norms.recorded

    def tile_pass(templates, content, warped, valid, stats_g, stats_r, bounds, colours):
      logits, raw = gen.stunet(templates, content, None, Norms(stats_g), valid)
      weights = blend_weights(logits, None)
      if gen.cfg.warp == "flow":
        warped = jax.vmap(lambda t, f: flow_warp(t, f, bounds))(templates,
                                                                gen.head(raw).flow)
      collage = set_pool(weights, warped)
      image = gen.refine(collage, Norms(stats_r), valid)
      return {"image": image[0], "collage": collage[0], "weights": weights[0],
              "weights_rgb": jnp.einsum("khw,kc->hwc", weights[0], colours)}

    def warp_window(templates, raw, bounds):
      return flow_warp(templates, gen.head(raw).flow, bounds)

    self._window_pass = jax.jit(window_pass)
    self._refine_stats = jax.jit(refine_stats)
    self._tile_pass = jax.jit(tile_pass)
    self._warp_window = jax.jit(warp_window)
    self._affine = jax.jit(affine_warp, static_argnums=(2, 3))

  def halo(self) -> int:
    """The exact halo: the generator's radius rounded up to the alignment."""
    return _round_up(self.gen.radius(), self.align)

  def __call__(self, templates: np.ndarray, content: np.ndarray | None = None, *,
               tile: int | None = 256, window: int | None = None, halo: int | None = None,
               keep_weights: bool = False, colour_seed: int = 0,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Renders the collage of ``templates`` (guided by ``content``).

    Args:
      templates: [K, H, W, 3] float32 in [0, 1], the set at the canvas size.
      content: [H, W, 3] float32 (guided generators), else None.
      tile: interior tile side (rounded up to the alignment); None: the whole canvas at once.
      window: side of the central window whose statistics (instance norms, affine warps) are
        replayed everywhere; None: the training crop; 0 or >= the canvas: the whole canvas.
      halo: context pixels around each tile; None: exact (:meth:`halo`).
      keep_weights: also return A [K, H, W] (large for posters).
      colour_seed: seed of the template colours of ``weights_rgb``.
      progress: called as ``progress(tiles done, tiles in all)`` after each tile.

    Returns:
      ``{"image": I [H, W, 3], "collage": I_M [H, W, 3], "weights_rgb": A coloured [H, W, 3],
      "max_weight": max_k A [H, W], "argmax": argmax_k A [H, W], "tiles": count, "halo"}``
      (numpy), plus ``"weights"`` with ``keep_weights``.
    """
    templates = np.asarray(templates, np.float32)
    if templates.ndim != 4 or templates.shape[-1] != 3:
      raise ValueError(f"templates must be [K, H, W, 3], got {templates.shape}")
    k, h0, w0, _ = templates.shape
    if self.cfg.guided:
      if content is None or np.shape(content) != (h0, w0, 3):
        raise ValueError(f"a guided generator needs content [H, W, 3] = ({h0}, {w0}, 3), got "
                         f"{None if content is None else np.shape(content)}")
      content = np.asarray(content, np.float32)
    a = self.align
    h, w = _round_up(h0, a), _round_up(w0, a)
    templates = _pad_edge(templates, h, w, 1)
    content = _pad_edge(content, h, w, 0) if content is not None else None
    colours = jnp.asarray(template_colours(k, colour_seed))

    # 1. The reference window: instance-norm statistics and the warp parameters.
    win = self.cfg.crop if window is None else int(window)
    wh = h if win <= 0 or win >= h else _round_up(win, a)
    ww = w if win <= 0 or win >= w else _round_up(win, a)
    y0, x0 = (h - wh) // 2 // a * a, (w - ww) // 2 // a * a
    t_win = jnp.asarray(templates[None, :, y0:y0 + wh, x0:x0 + ww])
    c_win = None if content is None else jnp.asarray(content[None, y0:y0 + wh, x0:x0 + ww])
    logits, raw, stats_g = self._window_pass(t_win, c_win)
    full_warped = None
    if self.cfg.warp == "affine":
      affine = self.gen.head(raw).affine[0]
      center, unit = ((h0 - 1) / 2.0, (w0 - 1) / 2.0), self.cfg.crop / 2.0
      full_warped = np.asarray(self._affine(jnp.asarray(templates), affine, center, unit))
      warped_win = jnp.asarray(full_warped[None, :, y0:y0 + wh, x0:x0 + ww])
    elif self.cfg.warp == "flow":
      bounds = (float(-y0), float(h0 - 1 - y0), float(-x0), float(w0 - 1 - x0))
      warped_win = self._warp_window(t_win[0], raw[0], bounds)[None]
    else:
      warped_win = t_win
    stats_r = self._refine_stats(logits, warped_win) if self.gen.refiner is not None else []

    # 2. The tiles: interior `tile`, context `halo` on every side, features zeroed outside.
    halo = self.halo() if halo is None else _round_up(int(halo), a)
    if tile is None or tile >= max(h, w):
      ty, tx, halo = h, w, 0
    else:
      ty = tx = _round_up(int(tile), a)
    ny, nx = math.ceil(h / ty), math.ceil(w / tx)
    ph, pw = ny * ty + 2 * halo, nx * tx + 2 * halo
    source = full_warped if full_warped is not None else templates
    pad_t = np.zeros((k, ph, pw, 3), np.float32)
    pad_t[:, halo:halo + h, halo:halo + w] = templates
    pad_w = pad_t
    if full_warped is not None:
      pad_w = np.zeros_like(pad_t)
      pad_w[:, halo:halo + h, halo:halo + w] = _pad_edge(source, h, w, 1)
    pad_c = None
    if content is not None:
      pad_c = np.zeros((ph, pw, 3), np.float32)
      pad_c[halo:halo + h, halo:halo + w] = content
    valid = np.zeros((ph, pw), np.float32)
    valid[halo:halo + h, halo:halo + w] = 1.0
    side_y, side_x = ty + 2 * halo, tx + 2 * halo
    out = {"image": np.zeros((h, w, 3), np.float32), "collage": np.zeros((h, w, 3), np.float32),
           "weights_rgb": np.zeros((h, w, 3), np.float32),
           "max_weight": np.zeros((h, w), np.float32), "argmax": np.zeros((h, w), np.int32)}
    if keep_weights:
      out["weights"] = np.zeros((k, h, w), np.float32)
    for i in range(ny):
      for j in range(nx):
        ys, xs = i * ty, j * tx  # tile start in padded coordinates = interior start - halo
        sl = (slice(ys, ys + side_y), slice(xs, xs + side_x))
        t_tile = jnp.asarray(pad_t[None, :, sl[0], sl[1]])
        c_tile = None if pad_c is None else jnp.asarray(pad_c[None, sl[0], sl[1]])
        # Whole-image coordinates of the tile's pixel (0, 0) are (ys - halo, xs - halo).
        bounds = (float(halo - ys), float(halo - ys + h0 - 1),
                  float(halo - xs), float(halo - xs + w0 - 1))
        res = self._tile_pass(t_tile, c_tile, jnp.asarray(pad_w[None, :, sl[0], sl[1]]),
                              jnp.asarray(valid[sl]), stats_g, stats_r, bounds, colours)
        res = jax.device_get(res)
        iy = slice(halo, halo + min(ty, h - ys))
        ix = slice(halo, halo + min(tx, w - xs))
        oy, ox = slice(ys, ys + iy.stop - iy.start), slice(xs, xs + ix.stop - ix.start)
        for name in ("image", "collage", "weights_rgb"):
          out[name][oy, ox] = res[name][iy, ix]
        wts = res["weights"][:, iy, ix]
        out["max_weight"][oy, ox] = wts.max(axis=0)
        out["argmax"][oy, ox] = wts.argmax(axis=0)
        if keep_weights:
          out["weights"][:, oy, ox] = wts
        if progress is not None:
          progress(i * nx + j + 1, ny * nx)
    crop = {n: (v[:, :h0, :w0] if n == "weights" else v[:h0, :w0]) for n, v in out.items()}
    crop["tiles"], crop["halo"] = ny * nx, halo
    return crop
