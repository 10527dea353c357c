"""Rate–distortion: the cost a learned codec minimises, and reading values off an RD curve."""

from __future__ import annotations

import numpy as np


def rd_cost(rate, squared_error, lam, channels=1):
  """The Lagrangian rate–distortion cost ``rate + lam * 255^2 * squared_error / channels``.

  Images are in [0, 1], so ``255^2 * squared_error`` is on the 8-bit scale. ``rate`` and the
  distortion count the same pixels, in either of two units:

  * per pixel: ``rate`` in bits per pixel and ``squared_error`` the MSE over all pixels and
    channels (``channels = 1``): the training loss ``bpp + lam * 255^2 * MSE``;
  * per region (a tile, an image): ``rate`` in bits and ``squared_error`` the sum of squared
    errors over its pixels and its ``channels`` channels: the same cost times the region's pixel
    count, e.g. the codec's per-tile cost ``bits + lam * 255^2 * SSE / C``.

  ``lam`` is in rate units per unit of 8-bit MSE. Works on Python floats, numpy and jax arrays
  (shapes broadcast), so one formula, evaluated in one order, serves training, refinement and
  the codec's model choice.
  """
  return rate + lam * 255.0 ** 2 * squared_error / channels


def curve_at_rate(points, target_bpp: float) -> float:
  """A rate–distortion curve's value at ``target_bpp``, linear in bpp; NaN outside the curve's
  range of rates (never extrapolated) or for no points.

  points: (bpp, value) pairs in any order, e.g. one per quality setting.
  """
  pts = sorted(points)
  if not pts or not pts[0][0] <= target_bpp <= pts[-1][0]:
    return float("nan")
  bpps, values = zip(*pts)
  return float(np.interp(target_bpp, bpps, values))


def value_at_rate(rows: list[dict], codec: str, target_bpp: float,
                  key: str = "psnr") -> float:
  """``key`` on a codec's curve at ``target_bpp`` (:func:`curve_at_rate`).

  rows: dicts with "codec", "bpp" and ``key``; the rows of ``codec`` are its curve (e.g. one
  row per quality setting holding the means over the images, as CompressAI reports them).
  """
  return curve_at_rate([(a["bpp"], a[key]) for a in rows if a["codec"] == codec], target_bpp)
