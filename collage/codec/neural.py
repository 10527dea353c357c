"""The Neural Collage codec: a trained hypernetwork encodes tiles into collage parameters,
which are entropy-coded with the model's learned probabilities (Poli et al. 2022; rate model
after Ballé et al. 2018).

Compression of an ``H x W`` image (1 or 3 channels):

1. Pad (edge replication) to multiples of the model's tile ``T`` and cut ``T x T`` tiles.
2. Encode all tiles in batched forward passes; optionally refine each tile's code by a few
   gradient steps on the model's rate-distortion loss (``refine``); round and clip to
   integers ``q``.
3. Entropy coding (``coding = "entropy"`` models): every slot of the code has an integer
   frequency table (``collage.nn.entropy_model.integer_tables``, deterministic, 16-bit);
   the symbols are range coded slot by slot (all tiles' values of slot 0, then slot 1, ...)
   with ``constriction``. Baseline models (``coding = "bitpack"``) bit-pack the values.
4. Decoding runs the same synthesis on the decoded integers, so the decoder reproduces the
   encoder's reconstruction bit-exactly; ``scale=K`` decodes every tile at ``K`` times the
   resolution (resolution-agnostic decoding of the collage operator).

File (inside :mod:`collage.codec.container`, codec id 2):
  params  = u8 version (1) | 8-byte model fingerprint | varint tile | u8 coding
            (0 entropy, 1 bitpack)
  payload = the coded symbols (range-coder words, little-endian uint32; or packed bits)

The fingerprint (SHA-256 of the model's architecture and weights) selects the model when
decoding: the shipped models (``collage/assets/neural/*``, and for old files the retired ones
in ``collage/assets/neural_retired/*``) or those under ``model=PATH``.

Models: ``NeuralCollageCodec()`` uses the shipped models, one per trained rate point; the
``quality`` 1..100 picks among them from the lowest rate (1) to the highest (100) in equal
bands (rate order: the models' ``lam``, or their ``order`` rank when every model has one).
``NeuralCollageCodec(model=PATH)``: PATH is an exported model directory
(``model.json`` + ``params.npz``, written by ``experiments/tasks/compress.py`` to
``WORKDIR/artifacts/model``), a training workdir holding one, or a folder of such model
directories (then quality picks among them as for the shipped ones).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Sequence

import numpy as np

from collage.codec import container
from collage.codec.base import Codec, CodecError, check_quality, check_scale, register
from collage.codec.entropy import ByteReader, ByteWriter, pack_bits, unpack_bits
from collage.ops import blocks

PARAMS_VERSION = 1
TABLE_PRECISION = 16
ASSET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "assets", "neural")
# Models that shipped with earlier versions and are no longer offered for encoding: kept so
# that files written with them still decode with the default models.
RETIRED_DIR = os.path.join(os.path.dirname(ASSET_DIR), "neural_retired")
_CODING_IDS = {"entropy": 0, "bitpack": 1}
ENCODE_BATCH = 64  # tiles per jitted forward pass (the last chunk is padded)
MAX_REFINE = 10_000  # bound on test-time refinement steps (``refine``)


# -- entropy coding of slot-structured integer codes ------------------------------------------
def encode_symbols(q: np.ndarray, slots: np.ndarray, tables: np.ndarray) -> bytes:
  """Range-code integer codes, one learned categorical model per slot.

  Args:
    q: int [n_tiles, N] in ``[-M, M]``.
    slots: int [N], the slot of every position.
    tables: int [S, 2M + 1] frequency tables, rows summing to ``2**TABLE_PRECISION``.

  Returns:
    The coder's words as little-endian uint32 bytes.
  """
  import constriction  # pylint: disable=import-outside-toplevel
  m = (tables.shape[1] - 1) // 2
  q = np.asarray(q, np.int64)
  if q.size and (q.min() < -m or q.max() > m):
    raise CodecError(f"code values must be in [-{m}, {m}], got [{q.min()}, {q.max()}]")
  coder = constriction.stream.queue.RangeEncoder()
  for s in np.unique(slots):
    sym = (q[:, slots == s] + m).reshape(-1).astype(np.int32)
    if sym.size:
      model = constriction.stream.model.Categorical(
          tables[s].astype(np.float64) / float(1 << TABLE_PRECISION), perfect=False)
      coder.encode(sym, model)
  return coder.get_compressed().astype("<u4").tobytes()


def decode_symbols(data: bytes, n_tiles: int, slots: np.ndarray,
                   tables: np.ndarray) -> np.ndarray:
  """Inverse of :func:`encode_symbols` -> int64 [n_tiles, N]. Raises CodecError on bad data."""
  import constriction  # pylint: disable=import-outside-toplevel
  m = (tables.shape[1] - 1) // 2
  if len(data) % 4:
    raise CodecError(f"corrupt neural payload: {len(data)} bytes is not a multiple of 4")
  q = np.zeros((n_tiles, len(slots)), np.int64)
  try:
    words = np.frombuffer(data, "<u4").astype(np.uint32)
    coder = constriction.stream.queue.RangeDecoder(words)
    for s in np.unique(slots):
      cols = np.flatnonzero(slots == s)
      count = n_tiles * cols.size
      if count:
        model = constriction.stream.model.Categorical(
            tables[s].astype(np.float64) / float(1 << TABLE_PRECISION), perfect=False)
        sym = np.asarray(coder.decode(model, count), np.int64)
        q[:, cols] = sym.reshape(n_tiles, cols.size) - m
  except CodecError:
    raise
  except Exception as e:  # constriction reports bad data as various errors  # noqa: BLE001
    raise CodecError(f"corrupt neural payload: {e}") from None
  return q


# -- models ----------------------------------------------------------------------------------
class LoadedModel:
  """A model ready for coding: jitted analysis/synthesis, integer tables, fingerprint."""

  def __init__(self, directory: str):
    import jax  # pylint: disable=import-outside-toplevel
    from flax import nnx  # pylint: disable=import-outside-toplevel
    from collage.nn import entropy_model as em  # pylint: disable=import-outside-toplevel
    from collage.nn import hypernet as hn  # pylint: disable=import-outside-toplevel
    try:
      self.model, self.meta = hn.load_model(directory)
    except ValueError as e:
      raise CodecError(str(e)) from None
    self.directory = directory
    self.cfg = self.model.cfg
    self.layout = self.model.layout
    flat = hn._flat_params(self.model)  # pylint: disable=protected-access
    h = hashlib.sha256(json.dumps(self.cfg.to_dict(), sort_keys=True).encode())
    for k in sorted(flat):
      h.update(k.encode())
      h.update(np.ascontiguousarray(flat[k], np.float32).tobytes())
    self.fingerprint = h.digest()[:8]
    self.tables = em.integer_tables(np.asarray(self.model.prior.logits[...]), TABLE_PRECISION)
    graphdef, state = nnx.split(self.model)
    self._state = state

    lam = float(self.meta.get("lam", 0.0))

    @functools.partial(jax.jit, static_argnums=(2,))
    def analyse(state, x, refine_steps):
      mdl = nnx.merge(graphdef, state)
      y = mdl.analyse(x)
      if refine_steps:
        y = hn.refine_code(mdl, x, y, lam, refine_steps)
      return mdl.quantize(y).astype("int32")

    @functools.partial(jax.jit, static_argnums=(2, 3))
    def synthesise(state, q, channels, scale):
      mdl = nnx.merge(graphdef, state)
      return mdl.synthesise(q.astype("float32"), channels, scale)

    self._analyse, self._synthesise = analyse, synthesise

  @property
  def lam(self) -> float:
    return float(self.meta.get("lam", 0.0))

  def analyse(self, tiles: np.ndarray, refine_steps: int = 0) -> np.ndarray:
    """tiles: float32 [n, T, T, 3] in [0, 1] -> int64 [n, N] (the full colour code).

    ``refine_steps`` > 0: that many steps of test-time refinement of the code
    (``collage.nn.hypernet.refine_code``) after the forward pass."""
    out = [np.asarray(self._analyse(self._state, chunk, int(refine_steps)))
           for chunk in _chunks(tiles)]
    return np.concatenate(out)[:len(tiles)].astype(np.int64)

  def synthesise(self, q: np.ndarray, channels: int, scale: int = 1) -> np.ndarray:
    """q: int [n, N_channels] -> float32 [n, kT, kT, channels] (not clipped)."""
    out = [np.asarray(self._synthesise(self._state, chunk, channels, scale))
           for chunk in _chunks(q.astype(np.int32))]
    return np.concatenate(out)[:len(q)]


def _chunks(a: np.ndarray) -> list[np.ndarray]:
  """Split the leading axis into ENCODE_BATCH chunks, zero-padding the last."""
  n = len(a)
  size = min(ENCODE_BATCH, max(1, n))
  out = []
  for i in range(0, n, size):
    c = a[i:i + size]
    if len(c) < size:
      c = np.concatenate([c, np.zeros((size - len(c),) + c.shape[1:], c.dtype)])
    out.append(c)
  return out


def _model_dirs(path: str) -> list[str]:
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
def _load_models(path: str) -> tuple[LoadedModel, ...]:
  dirs = _model_dirs(path)
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


def _pad_to_tiles(image: np.ndarray, tile: int) -> np.ndarray:
  h, w = image.shape[:2]
  ph, pw = -h % tile, -w % tile
  return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")


def image_tiles(image: np.ndarray, tile: int) -> np.ndarray:
  """uint8 [H, W, C] (C = 1 or 3) -> the model's input: float32 RGB tiles [n, T, T, 3] in
  [0, 1], edge-padded to whole tiles, in raster order (gray is repeated to RGB)."""
  x = image.astype(np.float32) / 255.0
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return np.asarray(blocks.to_blocks(_pad_to_tiles(x, tile)[None], tile, tile)).reshape(
      -1, tile, tile, 3)


@register
class NeuralCollageCodec(Codec):
  """Neural Collage codec (see the module docstring).

  Args:
    model: None for the shipped models, or a PATH (exported model directory, training
      workdir, or a folder of model directories).
    refine: steps of test-time refinement of the code per image (0: the encoder's single
      forward pass). Refinement lowers the rate-distortion cost of the code at an encode
      cost of about one decode and its gradient per step; the file format and the decoder
      are the same (``benchmarks/neural_codec.md`` has the measured gains).
  """

  name = "neural"
  codec_id = 2

  def __init__(self, model: str | None = None, refine: int = 0):
    self.model_path = os.path.abspath(model) if model else ASSET_DIR
    if isinstance(refine, bool) or int(refine) != refine or not 0 <= int(refine) <= MAX_REFINE:
      raise CodecError(f"refine must be an integer number of steps in 0..{MAX_REFINE}, "
                       f"got {refine!r}")
    self.refine = int(refine)
    self._models: tuple[LoadedModel, ...] | None = None

  @property
  def models(self) -> tuple[LoadedModel, ...]:
    """The available models, lowest rate first."""
    if self._models is None:
      self._models = _load_models(self.model_path)
    return self._models

  def model_for_quality(self, quality: int) -> LoadedModel:
    """quality 1..100 -> one of :attr:`models`, in equal bands from lowest to highest rate."""
    quality = check_quality(quality)
    n = len(self.models)
    return self.models[min(n - 1, (int(quality) - 1) * n // 100)]

  # -- encoding ---------------------------------------------------------------------------
  def encode_code(self, image: np.ndarray, quality: int) -> tuple[LoadedModel, np.ndarray]:
    """The integer code of an image. image: uint8 [H, W, C] -> (model, int64 [tiles, N])."""
    image = _check_image(image)
    m = self.model_for_quality(quality)
    tiles = image_tiles(image, m.cfg.tile)
    q = m.analyse(tiles, self.refine)[:, :m.layout.num_values(image.shape[-1])]
    return m, q

  def compress(self, image: np.ndarray, quality: int = 50) -> bytes:
    """image: uint8 [H, W, C] (C = 1 or 3), quality 1..100 -> container bytes."""
    image = _check_image(image)
    m, q = self.encode_code(image, quality)
    h, w, c = image.shape
    params = (ByteWriter().u8(PARAMS_VERSION).raw(m.fingerprint).varint(m.cfg.tile)
              .u8(_CODING_IDS[m.cfg.coding]).getvalue())
    slots = m.layout.slots_for(c)
    if m.cfg.coding == "entropy":
      payload = encode_symbols(q, slots, m.tables)
    else:
      bits = m.cfg.bitpack_bits
      payload = pack_bits(q.reshape(-1) + 2 ** (bits - 1), bits)
    return container.pack(self.codec_id, h, w, c, params, payload)

  # -- decoding ---------------------------------------------------------------------------
  def decode_code(self, data: bytes) -> tuple[LoadedModel, np.ndarray, container.Header]:
    """Parse a file -> (model, int64 code [tiles, N], header)."""
    header, params, payload = container.unpack(data, expected_codec_id=self.codec_id)
    r = ByteReader(params, "neural codec parameters")
    version = r.u8()
    if version != PARAMS_VERSION:
      raise CodecError(f"unsupported neural codec parameter version {version}; this build "
                       f"reads version {PARAMS_VERSION}")
    fingerprint = r.raw(8)
    tile = r.varint(max_value=4096)
    coding = r.u8()
    r.expect_end()
    matches = [m for m in self.models if m.fingerprint == fingerprint]
    if not matches and self.model_path == ASSET_DIR and _model_dirs(RETIRED_DIR):
      matches = [m for m in _load_models(RETIRED_DIR) if m.fingerprint == fingerprint]
    if not matches:
      raise CodecError(
          f"the file was written with neural model {fingerprint.hex()}, which is not among "
          f"the models at {self.model_path} "
          f"({', '.join(m.fingerprint.hex() for m in self.models)}); pass model=PATH "
          "(--model) with the model that wrote it")
    m = matches[0]
    if tile != m.cfg.tile or coding != _CODING_IDS[m.cfg.coding]:
      raise CodecError(f"corrupt neural codec parameters: tile {tile} / coding {coding} do "
                       f"not match model {fingerprint.hex()}")
    c = header.channels
    nh, nw = -(-header.height // tile), -(-header.width // tile)
    n_tiles = nh * nw
    slots = m.layout.slots_for(c)
    if m.cfg.coding == "entropy":
      q = decode_symbols(payload, n_tiles, slots, m.tables)
    else:
      bits = m.cfg.bitpack_bits
      q = unpack_bits(payload, n_tiles * len(slots), bits).reshape(n_tiles, len(slots))
      q = q - 2 ** (bits - 1)
    return m, q, header

  def reconstruct(self, m: LoadedModel, q: np.ndarray, height: int, width: int,
                  channels: int, scale: int = 1) -> np.ndarray:
    """Decode a code to uint8 [height * scale, width * scale, channels]."""
    t = m.cfg.tile
    nh, nw = -(-height // t), -(-width // t)
    tiles = m.synthesise(q, channels, scale)
    tiles = np.asarray(tiles)
    grid = tiles.reshape(1, nh, nw, *tiles.shape[1:])
    img = np.asarray(blocks.from_blocks(grid))[0, :height * scale, :width * scale]
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)

  def decompress(self, data: bytes, scale: int = 1) -> np.ndarray:
    """Container bytes -> uint8 [H * scale, W * scale, C]."""
    scale = check_scale(scale)
    m, q, header = self.decode_code(data)
    return self.reconstruct(m, q, header.height, header.width, header.channels, int(scale))


def _check_image(image) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise CodecError(f"image must be uint8, got {image.dtype}")
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise CodecError(f"image must be [H, W, C] with C = 1 or 3, got shape {image.shape}")
  if image.shape[0] < 1 or image.shape[1] < 1:
    raise CodecError(f"image must be non-empty, got shape {image.shape}")
  return image


def available_models(path: str | None = None) -> Sequence[str]:
  """Directories of the models a codec with ``model=path`` would use, lowest rate first."""
  return [m.directory for m in _load_models(os.path.abspath(path) if path else ASSET_DIR)]
