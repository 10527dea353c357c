"""The quality policy of the Neural Collage codec: what a ``quality`` 1..100 asks of a set of
models, decided once per image (:meth:`QualityPolicy.setting` -> :class:`QualitySetting`).

A quality is checked (:func:`collage.codec.base.check_quality`) and becomes
* one model and its code quality, without ``mix``: a variable-rate model is used alone, and
  codes at the quality itself (its rate level: :meth:`LoadedModel.level
  <collage.codec.neural_models.LoadedModel.level>`, written in the file); a set of fixed-rate
  models, lowest rate first, is cut into equal quality bands (:func:`band`), one model per
  band, which codes without a quality;
* the entries a tile may take, with ``mix``: every entropy-coded fixed-rate model of the set
  (one tile size), or the variable-rate model at each of :data:`MIX_QUALITIES`;
* the rate-distortion trade-off ``lam`` (loss = bits + lam * 255^2 * SSE / C): the one model's
  own (a fixed-rate model's training lam; a variable-rate model's at the quality); with
  ``mix`` and fixed-rate models, geometric from the smallest model lam (quality 1) to
  :data:`MIX_LAM_TOP` times the largest (quality 100). Test-time refinement optimises the
  code at it, and ``mix`` picks every tile's entry by it.
"""

from __future__ import annotations

import dataclasses
import functools

from collage.codec.base import CodecError, check_quality
from collage.codec.neural_format import MAX_MIX_MODELS
from collage.codec.neural_models import LoadedModel

# The qualities a variable-rate model's per-tile choice picks from (one forward pass each).
MIX_QUALITIES = (1, 8, 15, 22, 29, 36, 43, 50, 57, 64, 71, 78, 85, 92, 100)
MIX_LAM_TOP = 3.0   # mix mode: quality 100 is lam = MIX_LAM_TOP * the largest model lam


@dataclasses.dataclass(frozen=True)
class QualitySetting:
  """What one quality asks of a codec's models.

  Attributes:
    quality: the checked quality 1..100.
    entries: the (model, code quality) pairs a tile's code may use: one without ``mix``
      (the quality's model), the per-tile choice's candidates with it; the code quality is
      a variable-rate model's quality 1..100, None for a fixed-rate model.
    lam_range: with ``mix`` among fixed-rate models, the trade-offs (lo, hi) of qualities 1
      and 100, between which :attr:`lam` is geometric; None otherwise.
  """
  quality: int
  entries: tuple[tuple[LoadedModel, int | None], ...]
  lam_range: tuple[float, float] | None = None

  @functools.cached_property
  def lam(self) -> float:
    """The rate-distortion trade-off the code is refined at and (``mix``) every tile's entry
    is chosen by: geometric in :attr:`lam_range`, else the model's own (a variable-rate
    model's at the quality; computed once, when asked)."""
    if self.lam_range is not None:
      lo, hi = self.lam_range
      return float(lo * (hi / lo) ** ((self.quality - 1) / 99.0))
    m = self.entries[0][0]
    return m.level_lam(self.quality) if m.levels else m.lam

  @property
  def model(self) -> LoadedModel:
    """The model of a one-entry setting (without ``mix``)."""
    if len(self.entries) != 1:
      raise ValueError(f"this setting has {len(self.entries)} entries; use .entries")
    return self.entries[0][0]


def band(quality: int, n: int) -> int:
  """The index, among ``n`` models lowest rate first, of the model that ``quality`` 1..100
  picks: equal bands from the lowest rate (1) to the highest (100)."""
  return min(n - 1, (int(quality) - 1) * n // 100)


def band_qualities(model: LoadedModel, models: tuple[LoadedModel, ...]) -> str:
  """The qualities that pick ``model`` from ``models`` (its set, lowest rate first), matched
  by fingerprint (the set may be a fresh load): "41-60"; "" if none does."""
  qs = [q for q in range(1, 101)
        if models[band(q, len(models))].fingerprint == model.fingerprint]
  return f"{qs[0]}-{qs[-1]}" if qs else ""


class QualityPolicy:
  """How a set of models (lowest rate first) serves a quality.

  Args:
    models: the codec's models (:func:`collage.codec.neural_models.load_models`).
    where: the folder they were found in (for messages).
  """

  def __init__(self, models: tuple[LoadedModel, ...], where: str):
    self.models = models
    self.where = where

  def setting(self, quality: int, mix: bool = False) -> QualitySetting:
    """quality 1..100 -> everything the models need for it (see the module docstring)."""
    quality = check_quality(quality)
    if not mix:
      m = self.band_model(quality)
      return QualitySetting(quality, ((m, quality if m.levels else None),))
    entries = self._mix_entries()
    if entries[0][0].levels:  # one variable-rate model: its own trade-off
      return QualitySetting(quality, entries)
    lams = [m.lam for m, _ in entries]
    return QualitySetting(quality, entries, (min(lams), MIX_LAM_TOP * max(lams)))

  def band_model(self, quality: int) -> LoadedModel:
    """The model of ``quality``'s band (a variable-rate model: the one model, for every
    quality)."""
    quality = check_quality(quality)
    n = len(self.models)
    if any(m.levels for m in self.models) and n > 1:
      raise CodecError(f"a variable-rate model is used alone, but {self.where} holds {n} "
                       f"models ({', '.join(m.name for m in self.models)}); pass the one "
                       "model's directory as model=PATH (--model)")
    return self.models[band(quality, n)]

  def _mix_entries(self) -> tuple[tuple[LoadedModel, int | None], ...]:
    """What the per-tile choice picks from: one variable-rate model at each of
    :data:`MIX_QUALITIES`, or every entropy-coded fixed-rate model (one tile size, each
    with its training lam) at no quality."""
    if any(m.levels for m in self.models):
      return tuple((self.band_model(1), q) for q in MIX_QUALITIES)
    ms = tuple(m for m in self.models if m.cfg.coding == "entropy")
    if not ms:
      raise CodecError(f"mix needs entropy-coded models; those at {self.where} are all "
                       "bit-packing baselines")
    if len({m.cfg.tile for m in ms}) > 1:
      raise CodecError("mix needs models of one tile size, got tiles "
                       f"{sorted({m.cfg.tile for m in ms})} at {self.where}")
    if min(m.lam for m in ms) <= 0:
      raise CodecError("mix needs every model's training lam (> 0) in its model.json")
    return tuple((m, None) for m in ms[:MAX_MIX_MODELS])
