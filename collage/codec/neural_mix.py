"""The per-tile model choice of the Neural Collage codec (``mix=True``): tiles are decoded
independently, so every tile may take a different entry of the quality's setting (a model of
the fixed-rate set, or a quality of the one variable-rate model:
:class:`~collage.codec.neural_quality.QualitySetting`).

The encoder codes every tile with every entry, and keeps for each tile the entry with the
lowest rate-distortion cost ``bits + lam * 255^2 * SSE / C`` (:func:`collage.metrics.rd.rd_cost`,
the training objective per tile; SSE of the decoded 8-bit tile over its real pixels) at the
setting's ``lam``. Smooth tiles then take the cheap 8x8-range models and detailed ones the
4x4-range models: the neural analogue of PIFS's adaptive quadtree. The choice costs at most
``log2(K)`` bits per tile (under 0.003 bpp for 5 models and 32x32 tiles).
"""

from __future__ import annotations

import numpy as np

from collage.codec.base import check_image
from collage.codec.neural_format import TileCode
from collage.codec.neural_quality import QualitySetting
from collage.codec.neural_tiles import image_tiles, valid_pixels
from collage.metrics.rd import rd_cost


def tile_costs(image: np.ndarray, setting: QualitySetting) -> tuple[np.ndarray, list[np.ndarray]]:
  """Every entry's one-pass code of every tile of ``image`` (uint8 [H, W, C]) and its
  rate-distortion cost at ``setting.lam``.

  Returns (cost float64 [K, n_tiles] = bits + lam * 255^2 * SSE / C, codes: K arrays
  int64 [n_tiles, N_k]); SSE is that of the decoded 8-bit tile over its real pixels."""
  image = check_image(image)
  tile = setting.entries[0][0].cfg.tile
  return _costs(image, image_tiles(image, tile), setting)


def _costs(image: np.ndarray, tiles: np.ndarray,
           setting: QualitySetting) -> tuple[np.ndarray, list[np.ndarray]]:
  """:func:`tile_costs` on the image's model input ``tiles`` (``image_tiles``)."""
  h, w, c = image.shape
  target = tiles[..., :c].astype(np.float64)
  valid = valid_pixels(h, w, setting.entries[0][0].cfg.tile)[..., None]
  costs, codes = [], []
  for m, quality in setting.entries:
    q = m.analyse(tiles, quality=quality)[:, :m.layout.num_values(c)]
    rec = np.round(np.clip(m.synthesise(q, c, quality=quality), 0.0, 1.0) * 255.0) / 255.0
    sse = np.sum((rec - target) ** 2 * valid, axis=(1, 2, 3))
    costs.append(rd_cost(m.code_bits(q, c, quality), sse, setting.lam, c))
    codes.append(q)
  return np.stack(costs), codes


def choose(image: np.ndarray, setting: QualitySetting, refine: int = 0) -> TileCode:
  """uint8 [H, W, C] -> the code that gives every tile its cheapest entry (the entries no
  tile takes are left out); ``refine`` > 0: each tile's code refined that many steps under
  its entry at ``setting.lam``."""
  entries = setting.entries
  tiles = image_tiles(image, entries[0][0].cfg.tile)
  costs, codes = _costs(image, tiles, setting)
  choice = np.argmin(costs, axis=0)
  used = [k for k in range(len(entries)) if np.any(choice == k)]
  if refine:
    for k in used:
      sel = choice == k
      m, qk = entries[k]
      codes[k][sel] = m.analyse(tiles[sel], refine, setting.lam, qk)[:, :codes[k].shape[1]]
  index = np.full(len(entries), -1, np.int64)
  index[used] = np.arange(len(used))
  return TileCode(tuple(entries[k][0] for k in used), index[choice],
                  tuple(codes[k][choice == k] for k in used),
                  tuple(entries[k][1] for k in used))
