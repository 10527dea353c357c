"""The models of the Neural Collage codec: where they are found, and a model made ready for
coding (:class:`LoadedModel`: jitted analysis and synthesis, integer entropy tables, the
fingerprint a file names it by).

Where: the shipped variable-rate model (``collage/assets/neural_variable/*``,
:data:`VARIABLE_DIR`, the default), the shipped fixed-rate models (``collage/assets/neural/*``,
:data:`ASSET_DIR`, one per quality band, the set ``mix`` picks from), the retired ones
that only decode old files (:data:`RETIRED_DIR`), or a user's ``PATH``: an exported model
directory (``model.json`` + ``params.npz``, :mod:`collage.nn.neural_collage_io`), a training workdir
holding one in ``artifacts/model``, or a folder of either. A set of models is ordered lowest
rate first (:func:`load_models`); which of them a quality takes, and at what code quality:
:mod:`collage.codec.neural_quality`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import os

import numpy as np

from collage.codec.base import CodecError

TABLE_PRECISION = 16  # bits of the integer frequency tables (rows sum to 2**TABLE_PRECISION)
ASSET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "assets", "neural")
# Models that shipped with earlier versions and are no longer offered for encoding: kept so
# that files written with them still decode with the default models.
RETIRED_DIR = os.path.join(os.path.dirname(ASSET_DIR), "neural_retired")
# The variable-rate model, one model for every quality: the default for encoding without
# ``mix`` (``collage/assets/README.md``).
VARIABLE_DIR = os.path.join(os.path.dirname(ASSET_DIR), "neural_variable")
# Shipped model sets a codec may name instead of a path: ``model="variable"`` (the default
# without ``mix``) and ``model="fixed"`` (the five fixed-rate models, one per quality band; the
# set ``mix`` picks from).
NAMED_MODELS = {"variable": VARIABLE_DIR, "fixed": ASSET_DIR}
ENCODE_BATCH = 64  # tiles per jitted forward pass (the rest in power-of-two chunks)
# Threads running the encoder's chunks side by side: one jitted pass does not keep two CPU
# cores busy, two threads do (kodim23's forward pass: 0.105 s -> 0.07 s on 2 cores). The
# chunks are independent, so the code is the same.
ENCODE_THREADS = max(1, min(4, os.cpu_count() or 1))


class LoadedModel:
  """A model ready for coding: jitted analysis/synthesis, integer tables, fingerprint."""

  def __init__(self, directory: str):
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    from flax import nnx  # pylint: disable=import-outside-toplevel
    from collage.nn import neural_collage_io  # pylint: disable=import-outside-toplevel
    from collage.codec import refinement  # pylint: disable=import-outside-toplevel
    try:
      self.model, self.meta = neural_collage_io.load_model(directory)
    except ValueError as e:
      raise CodecError(str(e)) from None
    self.directory = directory
    self.cfg = self.model.cfg
    self.layout = self.model.layout
    flat = neural_collage_io.flat_params(self.model)
    h = hashlib.sha256(json.dumps(self.cfg.to_dict(), sort_keys=True).encode())
    for k in sorted(flat):
      h.update(k.encode())
      h.update(np.ascontiguousarray(flat[k], np.float32).tobytes())
    self.fingerprint = h.digest()[:8]
    self.levels = self.model.levels
    self._tables: dict[int | None, np.ndarray | dict] = {}
    graphdef, state = nnx.split(self.model)
    self._state = state

    def rows(level, x):  # a variable-rate model's one level, for every row of x
      return None if level is None else jnp.full(x.shape[:1], level, jnp.float32)

    @functools.partial(jax.jit, static_argnums=(4,))
    def analyse(state, x, lam, level, refine_steps):
      mdl = nnx.merge(graphdef, state)
      y = mdl.analyse(x, rows(level, x))
      if refine_steps:
        y = refinement.refine_code(mdl, x, y, lam, refine_steps, level=rows(level, x))
      return mdl.quantize(y).astype("int32")

    @functools.partial(jax.jit, static_argnums=(2, 3))
    def synthesise(state, q, channels, scale, level):
      mdl = nnx.merge(graphdef, state)
      return mdl.synthesise(q.astype("float32"), channels, scale, rows(level, q))

    self._analyse, self._synthesise = analyse, synthesise

  @property
  def name(self) -> str:
    """The model's directory name (e.g. ``r4_lam0.009``)."""
    return os.path.basename(os.path.normpath(self.directory))

  @property
  def lam(self) -> float:
    """A fixed-rate model's training lam (0 if unknown); a variable-rate model's largest."""
    if self.levels:
      return float(self.cfg.rate_lams[-1])
    return float(self.meta.get("lam", 0.0))

  def level(self, quality: int | None) -> np.float32 | None:
    """The rate level of ``quality`` 1..100 for a variable-rate model (1: level 0, 100: the
    top level, linear between); None for a fixed-rate model (which must get no quality)."""
    if not self.levels:
      if quality is not None:
        raise CodecError(f"model {self.name} has a fixed rate; it takes no quality")
      return None
    if quality is None or not 1 <= int(quality) <= 100:
      raise CodecError(f"variable-rate model {self.name} needs a quality in 1..100, "
                       f"got {quality!r}")
    return np.float32((int(quality) - 1) / 99.0 * (self.levels - 1))

  def level_lam(self, quality: int) -> float:
    """A variable-rate model's trade-off at ``quality`` (log-linear between its levels)."""
    return float(self.model.level_lam(self.level(quality))[0])

  def tables(self, quality: int | None = None) -> np.ndarray | dict:
    """The integer frequency tables the range coder uses (a variable-rate model: those of
    ``quality``; built once per quality, deterministically from the weights): [S, 2M+1] for
    the factorized prior, a context model's dict of tables
    (:func:`collage.nn.entropy_model.context_tables`)."""
    from collage.nn import entropy_model as em  # pylint: disable=import-outside-toplevel
    key = None if quality is None else int(quality)
    if key not in self._tables:
      level = self.level(key)
      if self.cfg.context_model:
        self._tables[key] = self.model.context_tables(None if level is None else float(level),
                                                      TABLE_PRECISION)
      else:
        logits = self.model.level_logits(0.0 if level is None else float(level))
        self._tables[key] = em.integer_tables(logits, TABLE_PRECISION)
    return self._tables[key]

  def encode_into(self, coder, q: np.ndarray, channels: int, quality: int | None = None) -> None:
    """Append the codes q [n_tiles, N_channels] to a range coder under this model's entropy
    model (:mod:`collage.codec.neural_coding`)."""
    from collage.codec import neural_coding as nc  # pylint: disable=import-outside-toplevel
    if np.shape(q)[-1] != self.layout.num_values(channels):
      raise CodecError(f"a {channels}-channel code of model {self.name} has "
                       f"{self.layout.num_values(channels)} values per tile, got {np.shape(q)[-1]}")
    if self.cfg.context_model:
      nc.encode_context(coder, q, self.layout, self.tables(quality))
    else:
      nc.encode_slots(coder, q, self.layout.slots_for(channels), self.tables(quality))

  def decode_from(self, coder, n_tiles: int, channels: int,
                  quality: int | None = None) -> np.ndarray:
    """Inverse of :meth:`encode_into` -> int64 [n_tiles, N_channels]."""
    from collage.codec import neural_coding as nc  # pylint: disable=import-outside-toplevel
    if self.cfg.context_model:
      return nc.decode_context(coder, n_tiles, self.layout.num_values(channels), self.layout,
                               self.tables(quality))
    return nc.decode_slots(coder, n_tiles, self.layout.slots_for(channels), self.tables(quality))

  def analyse(self, tiles: np.ndarray, refine_steps: int = 0, lam: float | None = None,
              quality: int | None = None) -> np.ndarray:
    """tiles: float32 [n, T, T, 3] in [0, 1] -> int64 [n, N] (the full colour code).

    ``quality``: a variable-rate model's quality 1..100 (None for a fixed-rate model).
    ``refine_steps`` > 0: that many steps of test-time refinement of the code
    (``collage.codec.refinement.refine_code``) after the forward pass, at the rate-distortion
    trade-off ``lam`` (default: the model's own, or that of ``quality``)."""
    level = self.level(quality)
    if not refine_steps:
      lam = 0.0  # unused by the forward pass alone
    elif lam is None:
      lam = self.lam if level is None else self.level_lam(quality)
    def one(chunk):
      return np.asarray(self._analyse(self._state, chunk, np.float32(lam), level,
                                      int(refine_steps)))

    out = list(_encode_pool().map(one, _chunks(tiles)))
    return np.concatenate(out)[:len(tiles)].astype(np.int64)

  def synthesise(self, q: np.ndarray, channels: int, scale: int = 1,
                 quality: int | None = None) -> np.ndarray:
    """q: int [n, N_channels] -> float32 [n, kT, kT, channels] (not clipped)."""
    return np.concatenate([tiles for _, tiles in
                           self.synthesise_chunks(q, channels, scale, quality)])

  def synthesise_chunks(self, q: np.ndarray, channels: int, scale: int = 1,
                        quality: int | None = None):
    """:meth:`synthesise` a chunk of ENCODE_BATCH tiles at a time, for decoding in bounded
    memory. Yields (start, float32 [m, kT, kT, channels]): the tiles q[start:start + m]."""
    level = self.level(quality)
    start = 0
    for chunk in _chunks(q.astype(np.int32)):
      tiles = np.asarray(self._synthesise(self._state, chunk, channels, scale, level))
      yield start, tiles[:len(q) - start]
      start += len(chunk)

  def code_bits(self, q: np.ndarray, channels: int, quality: int | None = None) -> np.ndarray:
    """The ideal code length in bits of each tile's code q [n, N_channels] under this model's
    integer tables (what the range coder spends, up to its few bytes of overhead) -> [n]."""
    from collage.nn import entropy_model as em  # pylint: disable=import-outside-toplevel
    slots = self.layout.slots_for(channels)
    if self.cfg.context_model:
      return em.context_row_bits(q, slots, self.layout.is_weight[:len(slots)],
                                 self.layout.code_contexts(np.asarray(q)), self.tables(quality))
    return em.row_bits(q, slots, self.tables(quality))


@functools.lru_cache(maxsize=1)
def _encode_pool() -> concurrent.futures.ThreadPoolExecutor:
  """The threads of :meth:`LoadedModel.analyse` (ENCODE_THREADS, created once)."""
  return concurrent.futures.ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="collage-encode")


def _chunks(a: np.ndarray) -> list[np.ndarray]:
  """Split the leading axis into chunks of :func:`chunk_sizes`, zero-padding the last."""
  out, i = [], 0
  for size in chunk_sizes(len(a)):
    c = a[i:i + size]
    if len(c) < size:
      c = np.concatenate([c, np.zeros((size - len(c),) + c.shape[1:], c.dtype)])
    out.append(c)
    i += size
  return out


def chunk_sizes(n: int) -> list[int]:
  """The rows of each chunk for ``n`` rows: ENCODE_BATCH at a time, then the rest in
  power-of-two chunks (its binary digits, the rest rounded up to a multiple of 8; a rest
  under 8 padded to the next power of two). The jitted passes see at most about
  log2(ENCODE_BATCH) + 1 batch shapes (the per-tile model choice calls them on tile subsets
  of every size; one shape per size would compile without end), and pad at most 7 rows: 96
  tiles run as 64 + 32, not as 64 + 64 (a D = 2 Kodak image's 16.8 -> 15.1 ms analysis, same
  codes)."""
  full, rest = divmod(n, ENCODE_BATCH)
  if rest > 8:
    rest = -(-rest // 8) * 8
  elif rest:
    rest = 1 << (rest - 1).bit_length()
  return [ENCODE_BATCH] * full + [1 << b for b in range(rest.bit_length() - 1, -1, -1)
                                  if rest >> b & 1]


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


def shipped_dirs() -> tuple[str, ...]:
  """Every folder of models that ships with the package: the default set, the named sets and
  the retired models. A file written by any of them decodes with any of them as the codec's
  model (the fingerprint finds the writer)."""
  return (VARIABLE_DIR, ASSET_DIR, RETIRED_DIR)


def resolve(model: str | None, mix: bool = False) -> str:
  """A codec's ``model`` argument -> a folder: None is the default (the variable-rate model;
  with ``mix`` the fixed-rate set), a name of :data:`NAMED_MODELS` a shipped set, anything
  else a path."""
  if not model:
    return ASSET_DIR if mix else VARIABLE_DIR
  return NAMED_MODELS.get(model, os.path.abspath(model))

