"""The file format of the Neural Collage codec: what a file holds inside the container, and
the integer code it holds (:class:`TileCode`).

File (inside :mod:`collage.codec.container`, codec id 2):
  params v1 (one model) = u8 version (1) | 8-byte model fingerprint | varint tile | u8 coding
                          (0 entropy, 1 bitpack)
  payload v1            = the coded symbols (range-coder words, little-endian uint32, in the
                          model's scheme, :mod:`collage.codec.neural_coding`; or packed bits)
  params v2 (per tile)  = u8 version (2) | varint K (2..MAX_MIX_MODELS) | K 8-byte
                          fingerprints | varint tile | u8 coding (0: entropy)
  payload v2            = range-coder words: each tile's model index (uniform over K, raster
                          order), then model 0's tiles' symbols as in v1, then model 1's, ...
  params v3 (variable   = u8 version (3) | 8-byte model fingerprint | varint tile | u8 coding
    rate)                 (0) | u8 quality (1..100)
  payload v3            = as v1, under the model's tables at that quality
  params v4 (variable   = u8 version (4) | varint K (2..MAX_MIX_MODELS) | K x (8-byte model
    rate, per tile)       fingerprint, u8 quality) | varint tile | u8 coding (0)
  payload v4            = as v2, entry k's codes under its model's tables at its quality
  params v5 (coded at   = u8 version (5) | u8 downscale D (2..MAX_DOWNSCALE) | the params of
    1/D resolution)       one of the versions 1-4
  payload v5            = that version's payload for the image downscaled D times, of
                          ceil(H / D) x ceil(W / D) pixels (the container keeps H x W)
  params v6 (coded at   = u8 version (6) | u8 p | u8 q | the params of one of the versions
    q/p resolution)       1-4; D = p/q in lowest terms, q in 2 or 4 (a whole D is version 5)
  payload v6            = that version's payload for the image resampled to ceil(H q / p) x
                          ceil(W q / p) pixels

The fingerprint (SHA-256 of the model's architecture and weights,
:class:`~collage.codec.neural_models.LoadedModel`) names the model that decodes the file.
Writing: :func:`write_parts` (a code -> params and payload); reading: :func:`read_params`,
then :func:`read_code` with the models the fingerprints name.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from collage.codec.base import CodecError
from collage.codec.entropy import ByteReader, ByteWriter, pack_bits, unpack_bits
from collage.codec.neural_coding import (decode_per_tile, decode_symbols, encode_per_tile,
                                         encode_symbols)
from collage.codec.neural_models import LoadedModel
from collage.codec.neural_tiles import (DOWNSCALE_DENOMINATORS, MAX_DOWNSCALE, check_downscale,
                                        coded_size, tile_grid)

PARAMS_VERSION = 1  # one model for every tile
MIXED_VERSION = 2   # a model per tile (``mix=True``)
RATE_VERSION = 3    # one variable-rate model at a quality
RATE_MIXED_VERSION = 4  # a variable-rate model at a quality per tile (``mix=True``)
DOWNSCALED_VERSION = 5  # any of the above, coded at 1/D resolution (``downscale=D``)
FRACTIONAL_VERSION = 6  # any of the above, coded at q/p resolution (``downscale=p/q``)
MAX_MIX_MODELS = 64
CODING_IDS = {"entropy": 0, "bitpack": 1}


@dataclasses.dataclass(frozen=True)
class TileCode:
  """The integer code of an image: which model codes each tile, and each model's codes.

  Attributes:
    models: the K >= 1 entries' models (K = 1: one model for every tile, a version-1 or 3
      file; a variable-rate model may fill several entries, at different qualities).
    choice: int [n_tiles], the entry index of every tile, in raster order.
    codes: ``codes[k]`` is int64 [tiles with choice k, N_k], those tiles' codes in raster
      order (N_k: the model's code length for the image's channel count).
    qualities: per entry, the quality 1..100 of a variable-rate model's code; None for a
      fixed-rate model (default: all None).
    downscale: D (a Fraction), the tiles cover the image downscaled D times (1: at full
      resolution); its denominator divides the model's tile.
  """
  models: tuple[LoadedModel, ...]
  choice: np.ndarray
  codes: tuple[np.ndarray, ...]
  qualities: tuple[int | None, ...] = ()
  downscale: Fraction = Fraction(1)

  def __post_init__(self):
    if not self.qualities:
      object.__setattr__(self, "qualities", (None,) * len(self.models))
    if len(self.qualities) != len(self.models):
      raise ValueError(f"{len(self.models)} models but {len(self.qualities)} qualities")
    d = check_downscale(self.downscale)
    object.__setattr__(self, "downscale", d)
    tile = self.models[0].cfg.tile
    if tile % d.denominator:
      raise CodecError(f"downscale {d} needs a tile that is a multiple of {d.denominator} (its "
                       f"decoded tiles are averaged over {d.denominator} x {d.denominator} "
                       f"pixels); model {self.models[0].name} has tiles of {tile}")

  @classmethod
  def single(cls, model: LoadedModel, q: np.ndarray, quality: int | None = None) -> "TileCode":
    return cls((model,), np.zeros(len(q), np.int64), (q,), (quality,))

  @property
  def quality(self) -> int | None:
    """The quality of a one-entry code (None: a fixed-rate model)."""
    if len(self.models) != 1:
      raise ValueError(f"this code has {len(self.models)} entries; use .qualities")
    return self.qualities[0]

  @property
  def q(self) -> np.ndarray:
    """The code of a one-model image, int64 [n_tiles, N]."""
    if len(self.models) != 1:
      raise ValueError(f"this code mixes {len(self.models)} models; use .codes")
    return self.codes[0]


@dataclasses.dataclass(frozen=True)
class Params:
  """A file's codec parameters, read (:func:`read_params`).

  Attributes:
    version: 1-4, the version of the code (inside version 5 or 6 for a downscaled one).
    fingerprints: the entries' 8-byte model fingerprints (one for versions 1 and 3).
    tile: the models' tile size.
    coding: the coding id (:data:`CODING_IDS`).
    qualities: per entry, the quality 1..100 of a variable-rate entry; None for fixed-rate.
    downscale: D (a Fraction); 1 unless the code is inside version 5 or 6.
  """
  version: int
  fingerprints: tuple[bytes, ...]
  tile: int
  coding: int
  qualities: tuple[int | None, ...]
  downscale: Fraction

  @property
  def rated(self) -> bool:
    """Whether the file's entries are variable-rate models at qualities (versions 3, 4)."""
    return self.version in (RATE_VERSION, RATE_MIXED_VERSION)


# -- writing ----------------------------------------------------------------------------------
def write_parts(code: TileCode, height: int, width: int, channels: int) -> tuple[bytes, bytes]:
  """A :class:`TileCode` of an image of that size -> (the codec parameters, the payload):
  version-1 params for one model, version 2 for several, version 3 for a variable-rate model,
  version 4 for its qualities per tile; inside version 5 for a code downscaled by a whole D,
  version 6 for a fractional one."""
  h, w, c = height, width, channels
  hs, ws = coded_size(h, w, code.downscale)
  tile = code.models[0].cfg.tile
  if len(code.choice) != np.prod(tile_grid(h, w, code.downscale, tile)):
    raise CodecError(f"a code of {len(code.choice)} tiles does not cover a {w}x{h} image "
                     f"coded at {ws}x{hs} (downscale {code.downscale}, tiles of {tile})")
  params, payload = _code_parts(code, c)
  d = code.downscale
  if d.denominator > 1:
    params = (ByteWriter().u8(FRACTIONAL_VERSION).u8(d.numerator).u8(d.denominator)
              .getvalue() + params)
  elif d > 1:
    params = ByteWriter().u8(DOWNSCALED_VERSION).u8(int(d)).getvalue() + params
  return params, payload


def _code_parts(code: TileCode, c: int) -> tuple[bytes, bytes]:
  """The codec parameters (versions 1-4) and the payload of a code."""
  if len(code.models) == 1:
    m, q = code.models[0], code.codes[0]
    m.level(code.quality)  # a quality for a variable-rate model, none for a fixed-rate one
    version = RATE_VERSION if m.levels else PARAMS_VERSION
    writer = (ByteWriter().u8(version).raw(m.fingerprint).varint(m.cfg.tile)
              .u8(CODING_IDS[m.cfg.coding]))
    params = (writer.u8(code.quality) if m.levels else writer).getvalue()
    if m.cfg.coding == "entropy":
      payload = encode_symbols(m, q, c, code.quality)
    else:
      bits = m.cfg.bitpack_bits
      payload = pack_bits(q.reshape(-1) + 2 ** (bits - 1), bits)
    return params, payload
  k = len(code.models)
  if (k > MAX_MIX_MODELS or len({m.cfg.tile for m in code.models}) > 1
      or any(m.cfg.coding != "entropy" for m in code.models)):
    raise CodecError(f"a per-tile code needs 2..{MAX_MIX_MODELS} entropy-coded models of one "
                     f"tile size, got {k}")
  rated = [bool(m.levels) for m in code.models]
  if any(rated) and not all(rated):
    raise CodecError("a per-tile code mixes fixed-rate models or qualities of variable-rate "
                     "models, not both")
  for m, quality in zip(code.models, code.qualities):
    m.level(quality)  # a quality exactly for the variable-rate entries
  writer = ByteWriter().u8(RATE_MIXED_VERSION if all(rated) else MIXED_VERSION).varint(k)
  for m, quality in zip(code.models, code.qualities):
    writer.raw(m.fingerprint)
    if m.levels:
      writer.u8(quality)
  params = writer.varint(code.models[0].cfg.tile).u8(CODING_IDS["entropy"]).getvalue()
  return params, encode_per_tile(code.models, code.qualities, code.choice, code.codes, c)


# -- reading ----------------------------------------------------------------------------------
def read_params(params: bytes) -> Params:
  """A file's codec parameters -> :class:`Params`. Raises CodecError on anything malformed."""
  r = ByteReader(params, "neural codec parameters")
  version, downscale = r.u8(), Fraction(1)
  outer = version
  if version == DOWNSCALED_VERSION:
    d = r.u8()
    if not 2 <= d <= MAX_DOWNSCALE:
      raise CodecError(f"corrupt neural codec parameters: downscale {d} is not in "
                       f"2..{MAX_DOWNSCALE}")
    downscale, version = Fraction(d), r.u8()
  elif version == FRACTIONAL_VERSION:
    p, q = r.u8(), r.u8()
    if (q not in DOWNSCALE_DENOMINATORS[1:] or np.gcd(p, q) != 1
        or not 1 < p / q <= MAX_DOWNSCALE):
      raise CodecError(f"corrupt neural codec parameters: downscale {p}/{q} is not a "
                       f"fraction in lowest terms in 1..{MAX_DOWNSCALE} with denominator "
                       f"{' or '.join(map(str, DOWNSCALE_DENOMINATORS[1:]))}")
    downscale, version = Fraction(p, q), r.u8()
  versions = (PARAMS_VERSION, MIXED_VERSION, RATE_VERSION, RATE_MIXED_VERSION)
  if version not in versions:
    raise CodecError(f"unsupported neural codec parameter version {version}; this build "
                     f"reads versions {', '.join(map(str, versions))}"
                     + (f" inside {outer}" if downscale > 1 else
                        f", {DOWNSCALED_VERSION} and {FRACTIONAL_VERSION}"))
  k = 1
  if version in (MIXED_VERSION, RATE_MIXED_VERSION):
    k = r.varint(max_value=MAX_MIX_MODELS)
    if k < 2:
      raise CodecError(f"corrupt neural codec parameters: a per-tile file needs 2.."
                       f"{MAX_MIX_MODELS} entries, got {k}")
  rated = version in (RATE_VERSION, RATE_MIXED_VERSION)
  fingerprints, qualities = [], []
  for _ in range(k):
    fingerprints.append(r.raw(8))
    qualities.append(r.u8() if version == RATE_MIXED_VERSION else None)
  tile = r.varint(max_value=4096)
  coding = r.u8()
  if version == RATE_VERSION:
    qualities = [r.u8()]
  r.expect_end()
  for quality in qualities:
    if rated and not 1 <= quality <= 100:
      raise CodecError(f"corrupt neural codec parameters: quality {quality} is not in "
                       "1..100")
  return Params(version, tuple(fingerprints), tile, coding, tuple(qualities), downscale)


def read_code(params: Params, models: tuple[LoadedModel, ...], payload: bytes, height: int,
              width: int, channels: int) -> TileCode:
  """The code of a file of that size: its :func:`read_params`, the models its fingerprints
  name (in order) and its payload -> :class:`TileCode`. Raises CodecError unless the models
  fit the parameters and the payload holds exactly the codes of the declared tiles."""
  for m in models:
    if params.tile != m.cfg.tile or params.coding != CODING_IDS[m.cfg.coding]:
      raise CodecError(f"corrupt neural codec parameters: tile {params.tile} / coding "
                       f"{params.coding} do not match model {m.fingerprint.hex()}")
    if bool(m.levels) != params.rated:
      raise CodecError(f"corrupt neural codec parameters: a version-{params.version} file "
                       f"names {'variable' if m.levels else 'fixed'}-rate model {m.name}")
  c = channels
  n_tiles = int(np.prod(tile_grid(height, width, params.downscale, params.tile)))
  what = f"the codes of the {n_tiles} tiles of the {c}-channel image that the header declares"
  try:
    code, recoded = _decode_payload(models, params, payload, n_tiles, c)
  except CodecError as e:
    raise CodecError(f"{e} (reading {what})") from None
  _expect_exact(payload, recoded, what)
  return dataclasses.replace(code, downscale=params.downscale)


def _decode_payload(models: tuple[LoadedModel, ...], params: Params, payload: bytes,
                    n_tiles: int, c: int) -> tuple[TileCode, bytes]:
  """The code in a payload, and the payload its code encodes to (the same bytes for a valid
  file; bit-packed payloads are checked for their exact length as they are read)."""
  qualities = params.qualities
  if params.version in (PARAMS_VERSION, RATE_VERSION):
    m = models[0]
    slots = m.layout.slots_for(c)
    if m.cfg.coding == "entropy":
      q = decode_symbols(m, payload, n_tiles, c, qualities[0])
      return TileCode.single(m, q, qualities[0]), encode_symbols(m, q, c, qualities[0])
    bits = m.cfg.bitpack_bits
    q = unpack_bits(payload, n_tiles * len(slots), bits).reshape(n_tiles, len(slots))
    return TileCode.single(m, q - 2 ** (bits - 1)), payload
  choice, codes = decode_per_tile(models, qualities, payload, n_tiles, c)
  code = TileCode(models, choice, codes, qualities)
  return code, encode_per_tile(models, qualities, choice, codes, c)


def _expect_exact(payload: bytes, recoded: bytes, what: str) -> None:
  """Raises unless ``payload`` is exactly ``recoded``, the coding of the codes decoded from it:
  a range decoder reads past its data without complaint and stops wherever it is told, so
  only this shows a payload that holds other than ``what`` the header declares."""
  if recoded == payload:
    return
  if len(payload) > len(recoded):
    raise CodecError(f"corrupt neural payload: {len(payload) - len(recoded)} unexpected bytes "
                     f"left over after {what}")
  if len(payload) < len(recoded):
    raise CodecError(f"corrupt neural payload: it ends before {what}")
  raise CodecError(f"corrupt neural payload: it does not hold exactly {what}")
