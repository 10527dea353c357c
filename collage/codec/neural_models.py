"""The models of the Neural Collage codec: where they are found, and a model made ready for
coding (:class:`LoadedModel`: jitted analysis and synthesis, integer entropy tables, the
fingerprint a file names it by).

Where: the shipped models (``collage/assets/neural/*``, :data:`ASSET_DIR`), the retired ones
that only decode old files (:data:`RETIRED_DIR`), or a user's ``PATH``: an exported model
directory (``model.json`` + ``params.npz``, :mod:`collage.nn.hypernet_io`), a training workdir
holding one in ``artifacts/model``, or a folder of either. A set of models is ordered lowest
rate first (:func:`load_models`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Sequence

import numpy as np

from collage.codec.base import CodecError

TABLE_PRECISION = 16  # bits of the integer frequency tables (rows sum to 2**TABLE_PRECISION)
ASSET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "assets", "neural")
# Models that shipped with earlier versions and are no longer offered for encoding: kept so
# that files written with them still decode with the default models.
RETIRED_DIR = os.path.join(os.path.dirname(ASSET_DIR), "neural_retired")
ENCODE_BATCH = 64  # tiles per jitted forward pass (the last chunk is padded)


class LoadedModel:
  """A model ready for coding: jitted analysis/synthesis, integer tables, fingerprint."""

  def __init__(self, directory: str):
    import jax  # pylint: disable=import-outside-toplevel
    from flax import nnx  # pylint: disable=import-outside-toplevel
    from collage.nn import entropy_model as em  # pylint: disable=import-outside-toplevel
    from collage.nn import hypernet_io  # pylint: disable=import-outside-toplevel
    from collage.nn import refinement  # pylint: disable=import-outside-toplevel
    try:
      self.model, self.meta = hypernet_io.load_model(directory)
    except ValueError as e:
      raise CodecError(str(e)) from None
    self.directory = directory
    self.cfg = self.model.cfg
    self.layout = self.model.layout
    flat = hypernet_io.flat_params(self.model)
    h = hashlib.sha256(json.dumps(self.cfg.to_dict(), sort_keys=True).encode())
    for k in sorted(flat):
      h.update(k.encode())
      h.update(np.ascontiguousarray(flat[k], np.float32).tobytes())
    self.fingerprint = h.digest()[:8]
    self.tables = em.integer_tables(np.asarray(self.model.prior.logits[...]), TABLE_PRECISION)
    graphdef, state = nnx.split(self.model)
    self._state = state

    @functools.partial(jax.jit, static_argnums=(3,))
    def analyse(state, x, lam, refine_steps):
      mdl = nnx.merge(graphdef, state)
      y = mdl.analyse(x)
      if refine_steps:
        y = refinement.refine_code(mdl, x, y, lam, refine_steps)
      return mdl.quantize(y).astype("int32")

    @functools.partial(jax.jit, static_argnums=(2, 3))
    def synthesise(state, q, channels, scale):
      mdl = nnx.merge(graphdef, state)
      return mdl.synthesise(q.astype("float32"), channels, scale)

    self._analyse, self._synthesise = analyse, synthesise

  @property
  def lam(self) -> float:
    return float(self.meta.get("lam", 0.0))

  def analyse(self, tiles: np.ndarray, refine_steps: int = 0,
              lam: float | None = None) -> np.ndarray:
    """tiles: float32 [n, T, T, 3] in [0, 1] -> int64 [n, N] (the full colour code).

    ``refine_steps`` > 0: that many steps of test-time refinement of the code
    (``collage.nn.refinement.refine_code``) after the forward pass, at the rate-distortion
    trade-off ``lam`` (default: the model's own)."""
    lam = np.float32(self.lam if lam is None else lam)
    out = [np.asarray(self._analyse(self._state, chunk, lam, int(refine_steps)))
           for chunk in _chunks(tiles)]
    return np.concatenate(out)[:len(tiles)].astype(np.int64)

  def synthesise(self, q: np.ndarray, channels: int, scale: int = 1) -> np.ndarray:
    """q: int [n, N_channels] -> float32 [n, kT, kT, channels] (not clipped)."""
    return np.concatenate([tiles for _, tiles in self.synthesise_chunks(q, channels, scale)])

  def synthesise_chunks(self, q: np.ndarray, channels: int, scale: int = 1):
    """:meth:`synthesise` a chunk of ENCODE_BATCH tiles at a time, for decoding in bounded
    memory. Yields (start, float32 [m, kT, kT, channels]): the tiles q[start:start + m]."""
    size = _chunk_size(len(q))
    for start, chunk in zip(range(0, len(q), size), _chunks(q.astype(np.int32))):
      tiles = np.asarray(self._synthesise(self._state, chunk, channels, scale))
      yield start, tiles[:len(q) - start]

  def code_bits(self, q: np.ndarray, channels: int) -> np.ndarray:
    """The ideal code length in bits of each tile's code q [n, N_channels] under this model's
    integer tables (what the range coder spends, up to its few bytes of overhead) -> [n]."""
    from collage.nn import entropy_model as em  # pylint: disable=import-outside-toplevel
    return em.row_bits(q, self.layout.slots_for(channels), self.tables)


def _chunks(a: np.ndarray) -> list[np.ndarray]:
  """Split the leading axis into ENCODE_BATCH chunks, zero-padding the last. Fewer rows than
  that are padded to the next power of two, so the jitted passes see at most
  log2(ENCODE_BATCH) + 1 batch shapes (the per-tile model choice calls them on tile subsets
  of every size; one shape per size would compile without end)."""
  size = _chunk_size(len(a))
  out = []
  for i in range(0, len(a), size):
    c = a[i:i + size]
    if len(c) < size:
      c = np.concatenate([c, np.zeros((size - len(c),) + c.shape[1:], c.dtype)])
    out.append(c)
  return out


def _chunk_size(n: int) -> int:
  """Rows per chunk of :func:`_chunks` for ``n`` rows."""
  return ENCODE_BATCH if n >= ENCODE_BATCH else 1 << max(0, n - 1).bit_length()


def model_dirs(path: str) -> list[str]:
  """Exported model directories at ``path`` (itself, WORKDIR/artifacts/model, or children)."""
  is_model = lambda d: os.path.isfile(os.path.join(d, "model.json"))
  if is_model(path):
    return [path]
  art = os.path.join(path, "artifacts", "model")
  if is_model(art):
    return [art]
  if os.path.isdir(path):
    found = []
    for name in sorted(os.listdir(path)):
      d = os.path.join(path, name)
      if is_model(d):
        found.append(d)
      elif is_model(os.path.join(d, "artifacts", "model")):
        found.append(os.path.join(d, "artifacts", "model"))
    return found
  return []


@functools.lru_cache(maxsize=8)
def load_models(path: str) -> tuple[LoadedModel, ...]:
  """The models at ``path`` (see :func:`model_dirs`), loaded once per path, lowest rate first.
  Raises CodecError if there are none."""
  dirs = model_dirs(path)
  if not dirs:
    raise CodecError(f"no neural collage model at {path!r}: expected a directory with "
                     "model.json + params.npz, a training workdir with artifacts/model, or a "
                     "folder of such directories")
  models = [LoadedModel(d) for d in dirs]
  # Lowest rate first. Within one architecture a larger lam means more bits (loss = bpp +
  # lam * 255^2 * MSE); models of different architectures are ordered by their meta "order"
  # (an integer rank by rate, set when a set of models is shipped) if all of them have one.
  if all("order" in m.meta for m in models):
    models.sort(key=lambda m: (m.cfg.coding != "entropy", float(m.meta["order"]), m.directory))
  else:
    models.sort(key=lambda m: (m.cfg.coding != "entropy", m.lam, m.directory))
  return tuple(models)


def retired_models() -> tuple[LoadedModel, ...]:
  """The retired shipped models (:data:`RETIRED_DIR`), lowest rate first; () if there are none."""
  return load_models(RETIRED_DIR) if model_dirs(RETIRED_DIR) else ()


def available_models(path: str | None = None) -> Sequence[str]:
  """Directories of the models a codec with ``model=path`` would use, lowest rate first."""
  return [m.directory for m in load_models(os.path.abspath(path) if path else ASSET_DIR)]
