"""The Neural Collage codec: a trained hypernetwork encodes tiles into collage parameters,
which are entropy-coded with the model's learned probabilities (Poli et al. 2022; rate model
after Ballé et al. 2018).

Compression of an ``H x W`` image (1 or 3 channels):

1. Pad (edge replication) to multiples of the model's tile ``T`` and cut ``T x T`` tiles.
2. Encode all tiles in batched forward passes; optionally refine each tile's code by a few
   gradient steps on the model's rate-distortion loss (``refine``); round and clip to
   integers ``q``.
3. Entropy coding (``coding = "entropy"`` models) with ``constriction``'s range coder under
   the model's integer tables (deterministic, 16-bit; :mod:`collage.codec.neural_coding`):
   with a factorized prior, slot by slot (all tiles' values of slot 0, then slot 1, ...);
   with the context model (``ModelConfig.context_model``, the default model since session
   8), first every weight's significance flag under its context of decoded flags, then the
   nonzero values and the bias coefficients slot by slot. Baseline models
   (``coding = "bitpack"``) bit-pack the values.
4. Decoding runs the same synthesis on the decoded integers, so the decoder reproduces the
   encoder's reconstruction bit-exactly; ``scale=K`` decodes every tile at ``K`` times the
   resolution (resolution-agnostic decoding of the collage operator).

Coding at a lower resolution (``downscale=D``, 1 < D <= MAX_DOWNSCALE in steps of 1/4):
the encoder codes the image resampled to 1/D of its size by area averaging (for D = p/q: each
pixel repeated q x q times, the result edge-padded to a multiple of p and averaged over p x p
blocks; for a whole D, the mean of every D x D block), and the decoder decodes every tile at
``p * scale`` (the collage operator has no native resolution), averages q x q pixel blocks of
it and crops to ``H x W``. D^2 times fewer tiles: a smaller file and a faster encode (on
Kodak 1.7 times at D = 1.5, 2.6 times at D = 2: the fixed costs remain); at low rates the
trade-off is better than coding every pixel (on Kodak D = 2 below about 0.15 bpp, D = 1.5 up
to 0.25 bpp; on larger photographs up to 0.45 bpp; ``benchmarks/neural_codec.md``, sessions
9 and 10).

Per-tile model choice (``mix=True``): tiles are decoded independently, so every tile may use
a different model (with a variable-rate model: a different quality of the one model, among
:data:`MIX_QUALITIES`; the choice is then a per-tile rate control, file version 4). The
encoder codes every tile with every (entropy-coded) model of the set, and keeps for each tile
the model with the lowest rate-distortion cost ``bits + lam * 255^2 * SSE / C``
(:func:`collage.metrics.rd.rd_cost`, the training objective per tile; SSE of the decoded 8-bit
tile over its real pixels), at one ``lam`` that ``quality`` sets on a geometric scale
(:meth:`NeuralCollageCodec.mix_lam`). Smooth tiles then take the cheap 8x8-range models and
detailed ones the 4x4-range models: the neural analogue of PIFS's adaptive quadtree. The choice
costs at most ``log2(K)`` bits per tile (under 0.003 bpp for 5 models and 32x32 tiles).

File (inside :mod:`collage.codec.container`, codec id 2):
  params v1 (one model) = u8 version (1) | 8-byte model fingerprint | varint tile | u8 coding
                          (0 entropy, 1 bitpack)
  payload v1            = the coded symbols (range-coder words, little-endian uint32, in the
                          model's scheme, see 3.; or packed bits)
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

The fingerprint (SHA-256 of the model's architecture and weights) selects the model when
decoding: the shipped models (``collage/assets/neural/*``, the variable-rate
``collage/assets/neural_variable/*`` that ``model="variable"`` names, and for old files the
retired ones in ``collage/assets/neural_retired/*``: a codec with any shipped set decodes the
files of all of them) or those under ``model=PATH``.

Models: ``NeuralCollageCodec()`` uses the shipped variable-rate model
(``collage/assets/neural_variable``): a variable-rate model (``ModelConfig.rate_lams``) is
used alone, ``quality`` is an input of its encoder and decoder (one forward pass at any
quality) and is written in the file (v3). A set of fixed-rate models (``model="fixed"``: the
five shipped ones, which ``mix=True`` uses by default; or a folder of one's own) is one model
per trained rate point; the ``quality`` 1..100 picks among them from the lowest rate (1) to
the highest (100) in equal bands (rate order: the models' ``lam``, or their ``order`` rank
when every model has one).
``NeuralCollageCodec(model=PATH)``: PATH is an exported model directory
(``model.json`` + ``params.npz``, written by ``experiments/tasks/compress.py`` to
``WORKDIR/artifacts/model``), a training workdir holding one, or a folder of such model
directories (then quality picks among them as for the shipped ones). Finding and loading
the models: :mod:`collage.codec.neural_models`.
"""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction

import numpy as np
from einops import rearrange

from collage.codec import container, neural_models
from collage.codec.base import (Codec, CodecError, check_image, check_quality, check_scale,
                                 register)
from collage.codec.entropy import ByteReader, ByteWriter, pack_bits, unpack_bits
from collage.codec.memory import FIXED_BYTES, check_decode_fits
from collage.codec.neural_coding import categorical
from collage.codec.neural_models import LoadedModel
from collage.metrics.rd import rd_cost

PARAMS_VERSION = 1  # one model for every tile
MIXED_VERSION = 2   # a model per tile (``mix=True``)
RATE_VERSION = 3    # one variable-rate model at a quality
RATE_MIXED_VERSION = 4  # a variable-rate model at a quality per tile (``mix=True``)
# The qualities a variable-rate model's per-tile choice picks from (one forward pass each).
MIX_QUALITIES = (1, 8, 15, 22, 29, 36, 43, 50, 57, 64, 71, 78, 85, 92, 100)
MAX_MIX_MODELS = 64
DOWNSCALED_VERSION = 5  # any of the above, coded at 1/D resolution (``downscale=D``)
FRACTIONAL_VERSION = 6  # any of the above, coded at q/p resolution (``downscale=p/q``)
MAX_DOWNSCALE = 4
DOWNSCALE_DENOMINATORS = (1, 2, 4)  # D in steps of 1/4 (a model's tile is a multiple of q)
MIX_LAM_TOP = 3.0   # mix mode: quality 100 is lam = MIX_LAM_TOP * the largest model lam
_CODING_IDS = {"entropy": 0, "bitpack": 1}
MAX_REFINE = 10_000  # bound on test-time refinement steps (``refine``)


# -- entropy coding (each model's scheme: collage.codec.neural_coding) ----------------------
def _range_decoder(data: bytes):
  import constriction  # pylint: disable=import-outside-toplevel
  if len(data) % 4:
    raise CodecError(f"corrupt neural payload: {len(data)} bytes is not a multiple of 4")
  return constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))


def encode_symbols(model: LoadedModel, q: np.ndarray, channels: int,
                   quality: int | None = None) -> bytes:
  """Range-code a model's integer codes q [n_tiles, N_channels] (values in ``[-M, M]``) under
  its entropy model at ``quality`` -> the coder's words as little-endian uint32 bytes."""
  import constriction  # pylint: disable=import-outside-toplevel
  coder = constriction.stream.queue.RangeEncoder()
  model.encode_into(coder, q, channels, quality)
  return coder.get_compressed().astype("<u4").tobytes()


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


def decode_symbols(model: LoadedModel, data: bytes, n_tiles: int, channels: int,
                   quality: int | None = None) -> np.ndarray:
  """Inverse of :func:`encode_symbols` -> int64 [n_tiles, N]. Raises CodecError on bad data."""
  coder = _range_decoder(data)
  try:
    return model.decode_from(coder, n_tiles, channels, quality)
  except Exception as e:  # constriction reports bad data as various errors  # noqa: BLE001
    raise CodecError(f"corrupt neural payload: {e}") from None


def _mixed_payload(code: "TileCode", channels: int) -> bytes:
  """The payload of a per-tile (version-2 or 4) file: each tile's entry index, uniform over
  the K entries, then every entry's codes as in :func:`encode_symbols`, in one range coder."""
  import constriction  # pylint: disable=import-outside-toplevel
  coder = constriction.stream.queue.RangeEncoder()
  coder.encode(code.choice.astype(np.int32), categorical(np.ones(len(code.models))))
  for m, quality, q in zip(code.models, code.qualities, code.codes):
    m.encode_into(coder, q, channels, quality)
  return coder.get_compressed().astype("<u4").tobytes()


def _pad_to_tiles(image: np.ndarray, tile: int) -> np.ndarray:
  h, w = image.shape[:2]
  ph, pw = -h % tile, -w % tile
  return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")


def _cut_tiles(a: np.ndarray, tile: int) -> np.ndarray:
  """[H, W, ...] with H and W multiples of ``tile`` -> [n, T, T, ...]: its tiles in raster
  order (inverse: the tile placement in :meth:`NeuralCollageCodec.reconstruct`)."""
  return rearrange(a, "(nh th) (nw tw) ... -> (nh nw) th tw ...", th=tile, tw=tile)


def image_tiles(image: np.ndarray, tile: int) -> np.ndarray:
  """uint8 [H, W, C] (C = 1 or 3) -> the model's input: float32 RGB tiles [n, T, T, 3] in
  [0, 1], edge-padded to whole tiles, in raster order (gray is repeated to RGB)."""
  x = image.astype(np.float32) / 255.0
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return _cut_tiles(_pad_to_tiles(x, tile), tile)


def _valid_pixels(height: int, width: int, tile: int) -> np.ndarray:
  """float32 [n_tiles, T, T]: 1 where a tile pixel lies inside the image, 0 on the padding
  (cut like :func:`image_tiles`)."""
  mask = np.pad(np.ones((height, width), np.float32), ((0, -height % tile), (0, -width % tile)))
  return _cut_tiles(mask, tile)


def check_downscale(downscale) -> Fraction:
  """Validates ``downscale``: a number in 1..MAX_DOWNSCALE in steps of 1/4 (an int, a float,
  a Fraction, or text such as "1.5" or "3/2") -> Fraction."""
  value = None
  try:
    if isinstance(downscale, bool):
      pass
    elif isinstance(downscale, (int, np.integer)):
      value = Fraction(int(downscale))
    elif isinstance(downscale, Fraction):
      value = downscale
    elif isinstance(downscale, (float, np.floating)):
      value = Fraction(float(downscale))
    elif isinstance(downscale, str):
      value = Fraction(downscale.strip())
  except (ValueError, ZeroDivisionError, OverflowError):
    value = None
  if (value is None or value.denominator not in DOWNSCALE_DENOMINATORS
      or not 1 <= value <= MAX_DOWNSCALE):
    raise CodecError(f"downscale must be a number in 1..{MAX_DOWNSCALE} in steps of 1/4 "
                     f"(1: code every pixel; e.g. 1.5 or 3/2, 2), got {downscale!r}")
  return value


def coded_size(height: int, width: int, downscale) -> tuple[int, int]:
  """The size of the image that a file of ``height x width`` at ``downscale`` D = p/q codes:
  ceil(height * q / p) x ceil(width * q / p)."""
  d = Fraction(downscale)
  return -(-height * d.denominator // d.numerator), -(-width * d.denominator // d.numerator)


def tile_grid(height: int, width: int, downscale, tile: int) -> tuple[int, int]:
  """The rows and columns of ``tile`` x ``tile`` tiles that code an image of ``height x
  width`` at ``downscale`` (those of its :func:`coded_size`, the edges padded)."""
  hs, ws = coded_size(height, width, downscale)
  return -(-hs // tile), -(-ws // tile)


def _block_sums(x: np.ndarray, p: int, q: int, axis: int) -> np.ndarray:
  """Along ``axis``: every element repeated q times, the result edge-padded to a multiple of
  p and summed over blocks of p; int32. Computed without the repeat: output i is the sum of
  the few input rows that its block overlaps, each weighted by the overlap (in repeats)."""
  x = np.moveaxis(x, axis, 0)
  n = x.shape[0]
  i = np.arange(-(-n * q // p))
  start = i * p // q
  taps = -(-p // q) + 1  # input rows one block can overlap
  if int(start[-1]) + taps > n:  # the edge padding
    x = np.concatenate([x, np.repeat(x[-1:], int(start[-1]) + taps - n, axis=0)])
  out = np.zeros((len(i), *x.shape[1:]), np.int32)
  for t in range(taps):
    r = start + t
    w = np.clip(np.minimum((i + 1) * p, (r + 1) * q) - np.maximum(i * p, r * q), 0, None)
    if w.any():
      out += w.reshape(-1, *(1,) * (x.ndim - 1)).astype(np.int32) * x[r]
  return np.moveaxis(out, 0, axis)


def downscale_image(image: np.ndarray, downscale) -> np.ndarray:
  """uint8 [H, W, C] -> uint8 :func:`coded_size` [H', W', C]: the image resampled to 1/D of
  its size by area averaging, rounded. For D = p/q: every pixel repeated q x q times, the
  result edge-padded to a multiple of p and averaged over p x p blocks (a whole D: the mean of
  every D x D block), in exact integer sums."""
  d = Fraction(downscale)
  if d == 1:
    return image
  p, q = d.numerator, d.denominator
  sums = _block_sums(_block_sums(image.astype(np.int32), p, q, 0), p, q, 1)
  return np.round(sums.astype(np.float32) / np.float32(p * p)).astype(np.uint8)


def _decode_payload(models, version: int, payload: bytes, n_tiles: int, c: int,
                    qualities: tuple) -> tuple["TileCode", bytes]:
  """The code in a payload, and the payload its code encodes to (the same bytes for a valid
  file; bit-packed payloads are checked for their exact length as they are read)."""
  if version in (PARAMS_VERSION, RATE_VERSION):
    m = models[0]
    slots = m.layout.slots_for(c)
    if m.cfg.coding == "entropy":
      q = decode_symbols(m, payload, n_tiles, c, qualities[0])
      return TileCode.single(m, q, qualities[0]), encode_symbols(m, q, c, qualities[0])
    bits = m.cfg.bitpack_bits
    q = unpack_bits(payload, n_tiles * len(slots), bits).reshape(n_tiles, len(slots))
    return TileCode.single(m, q - 2 ** (bits - 1)), payload
  coder = _range_decoder(payload)
  try:
    choice = np.asarray(coder.decode(categorical(np.ones(len(models))), n_tiles), np.int64)
    codes = tuple(m.decode_from(coder, int(np.sum(choice == i)), c, qualities[i])
                  for i, m in enumerate(models))
  except Exception as e:  # constriction reports bad data as various errors  # noqa: BLE001
    raise CodecError(f"corrupt neural payload: {e}") from None
  code = TileCode(models, choice, codes, qualities)
  return code, _mixed_payload(code, c)


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


@register
class NeuralCollageCodec(Codec):
  """Neural Collage codec (see the module docstring).

  Args:
    model: None for the shipped default (the variable-rate model; with ``mix``, the five
      fixed-rate models), "variable" or "fixed" for either shipped set, or a PATH (exported
      model directory, training workdir, or a folder of model directories).
    refine: steps of test-time refinement of the code per image (0: the encoder's single
      forward pass). Refinement lowers the rate-distortion cost of the code at an encode
      cost of about one decode and its gradient per step; the file format and the decoder
      are the same (``benchmarks/neural_codec.md`` has the measured gains).
    mix: choose the model per tile by rate-distortion cost (see the module docstring) instead
      of one model per quality band; with a variable-rate model, its quality per tile. Costs
      one forward pass and one decode per model (or quality) at encode time; decoding costs
      the same as with one model.
    downscale: D in 1..MAX_DOWNSCALE in steps of 1/4 (1.5, "3/2", 2, ...): code the image at
      1/D of its resolution and decode it at D times (see the module docstring): a faster
      encode and fewer bits, for low rates. 1 (the default) codes every pixel.
  """

  name = "neural"
  codec_id = 2

  def __init__(self, model: str | None = None, refine: int = 0, mix: bool = False,
               downscale: int | float | str | Fraction = 1):
    self.model_path = neural_models.resolve(model, mix is True)
    if isinstance(refine, bool) or int(refine) != refine or not 0 <= int(refine) <= MAX_REFINE:
      raise CodecError(f"refine must be an integer number of steps in 0..{MAX_REFINE}, "
                       f"got {refine!r}")
    if not isinstance(mix, bool):
      raise CodecError(f"mix must be True or False, got {mix!r}")
    self.refine = int(refine)
    self.mix = mix
    self.downscale = check_downscale(downscale)
    self._models: tuple[LoadedModel, ...] | None = None

  @property
  def models(self) -> tuple[LoadedModel, ...]:
    """The available models, lowest rate first."""
    if self._models is None:
      self._models = neural_models.load_models(self.model_path)
    return self._models

  def model_for_quality(self, quality: int) -> LoadedModel:
    """quality 1..100 -> one of :attr:`models`, in equal bands from lowest to highest rate
    (a variable-rate model: the one model, for every quality)."""
    quality = check_quality(quality)
    n = len(self.models)
    if any(m.levels for m in self.models) and n > 1:
      raise CodecError(f"a variable-rate model is used alone, but {self.model_path} holds {n} "
                       f"models ({', '.join(m.name for m in self.models)}); pass the one "
                       "model's directory as model=PATH (--model)")
    return self.models[min(n - 1, (int(quality) - 1) * n // 100)]

  @staticmethod
  def quality_band(model: LoadedModel) -> str:
    """The qualities that pick a fixed-rate ``model`` from the set it belongs to (the folder
    it is in: "41-60"); "" if none does."""
    if os.path.dirname(model.directory) == neural_models.RETIRED_DIR:
      return ""  # no longer picked by any quality
    models = neural_models.load_models(os.path.dirname(model.directory))
    qs = [q for q in range(1, 101)  # by fingerprint: the set may be a fresh load
          if models[min(len(models) - 1, (q - 1) * len(models) // 100)].fingerprint
          == model.fingerprint]
    return f"{qs[0]}-{qs[-1]}" if qs else ""

  def mix_candidates(self) -> tuple[tuple[LoadedModel, int | None], ...]:
    """What the per-tile choice picks from, as (model, quality) pairs: every fixed-rate
    model of :meth:`mix_models` (quality None), or one variable-rate model at each of
    :data:`MIX_QUALITIES`."""
    if any(m.levels for m in self.models):
      return tuple((self.model_for_quality(1), q) for q in MIX_QUALITIES)
    return tuple((m, None) for m in self.mix_models())

  def mix_models(self) -> tuple[LoadedModel, ...]:
    """The fixed-rate models the per-tile choice picks from: the entropy-coded ones (one
    tile size)."""
    ms = tuple(m for m in self.models if m.cfg.coding == "entropy")
    if not ms:
      raise CodecError(f"mix needs entropy-coded models; those at {self.model_path} are all "
                       "bit-packing baselines")
    if len({m.cfg.tile for m in ms}) > 1:
      raise CodecError("mix needs models of one tile size, got tiles "
                       f"{sorted({m.cfg.tile for m in ms})} at {self.model_path}")
    if min(m.lam for m in ms) <= 0:
      raise CodecError("mix needs every model's training lam (> 0) in its model.json")
    return ms[:MAX_MIX_MODELS]

  def mix_lam(self, quality: int) -> float:
    """The rate-distortion trade-off of ``quality`` in mix mode: geometric from the smallest
    model lam (quality 1) to MIX_LAM_TOP times the largest (quality 100); for a variable-rate
    model, its own trade-off at ``quality``."""
    quality = check_quality(quality)
    if any(m.levels for m in self.models):
      return self.model_for_quality(quality).level_lam(int(quality))
    lams = [m.lam for m in self.mix_models()]
    lo, hi = min(lams), MIX_LAM_TOP * max(lams)
    return float(lo * (hi / lo) ** ((int(quality) - 1) / 99.0))

  # -- encoding ---------------------------------------------------------------------------
  def encode_code(self, image: np.ndarray, quality: int) -> TileCode:
    """The integer code of an image (of it downscaled, with ``downscale``).
    image: uint8 [H, W, C] -> :class:`TileCode`."""
    image = check_image(image)
    if self.downscale > 1:
      code = self._encode_full(downscale_image(image, self.downscale), quality)
      return dataclasses.replace(code, downscale=self.downscale)
    return self._encode_full(image, quality)

  def _encode_full(self, image: np.ndarray, quality: int) -> TileCode:
    if self.mix:
      return self._encode_mixed(image, quality)
    m = self.model_for_quality(quality)
    tiles = image_tiles(image, m.cfg.tile)
    code_quality = int(quality) if m.levels else None
    q = m.analyse(tiles, self.refine, quality=code_quality)
    return TileCode.single(m, q[:, :m.layout.num_values(image.shape[-1])], code_quality)

  def tile_costs(self, image: np.ndarray, lam: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every mix candidate's one-pass code of every tile and its rate-distortion cost.

    Returns (cost float64 [K, n_tiles] = bits + lam * 255^2 * SSE / C, codes: K arrays
    int64 [n_tiles, N_k]); SSE is that of the decoded 8-bit tile over its real pixels."""
    image = check_image(image)
    tile = self.mix_candidates()[0][0].cfg.tile
    return self._tile_costs(image, image_tiles(image, tile), lam)

  def _tile_costs(self, image: np.ndarray, tiles: np.ndarray,
                  lam: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """:meth:`tile_costs` on the image's model input ``tiles`` (``image_tiles``)."""
    h, w, c = image.shape
    cands = self.mix_candidates()
    target = tiles[..., :c].astype(np.float64)
    valid = _valid_pixels(h, w, cands[0][0].cfg.tile)[..., None]
    costs, codes = [], []
    for m, quality in cands:
      q = m.analyse(tiles, quality=quality)[:, :m.layout.num_values(c)]
      rec = np.round(np.clip(m.synthesise(q, c, quality=quality), 0.0, 1.0) * 255.0) / 255.0
      sse = np.sum((rec - target) ** 2 * valid, axis=(1, 2, 3))
      costs.append(rd_cost(m.code_bits(q, c, quality), sse, lam, c))
      codes.append(q)
    return np.stack(costs), codes

  def _encode_mixed(self, image: np.ndarray, quality: int) -> TileCode:
    lam = self.mix_lam(quality)
    cands = self.mix_candidates()
    tiles = image_tiles(image, cands[0][0].cfg.tile)
    costs, codes = self._tile_costs(image, tiles, lam)
    choice = np.argmin(costs, axis=0)
    used = [k for k in range(len(cands)) if np.any(choice == k)]
    if self.refine:
      for k in used:
        sel = choice == k
        m, qk = cands[k]
        codes[k][sel] = m.analyse(tiles[sel], self.refine, lam, qk)[:, :codes[k].shape[1]]
    index = np.full(len(cands), -1, np.int64)
    index[used] = np.arange(len(used))
    return TileCode(tuple(cands[k][0] for k in used), index[choice],
                    tuple(codes[k][choice == k] for k in used),
                    tuple(cands[k][1] for k in used))

  def compress(self, image: np.ndarray, quality: int = 50) -> bytes:
    """image: uint8 [H, W, C] (C = 1 or 3), quality 1..100 -> container bytes."""
    image = check_image(image)
    h, w, c = image.shape
    return self.write_code(self.encode_code(image, quality), h, w, c)

  def write_code(self, code: TileCode, height: int, width: int, channels: int) -> bytes:
    """A :class:`TileCode` of an image of that size -> container bytes (version-1 params for
    one model, version 2 for several, version 3 for a variable-rate model, version 4 for its
    qualities per tile; inside version 5 for a code downscaled by a whole D, version 6 for a
    fractional one)."""
    h, w, c = height, width, channels
    hs, ws = coded_size(h, w, code.downscale)
    tile = code.models[0].cfg.tile
    if len(code.choice) != np.prod(tile_grid(h, w, code.downscale, tile)):
      raise CodecError(f"a code of {len(code.choice)} tiles does not cover a {w}x{h} image "
                       f"coded at {ws}x{hs} (downscale {code.downscale}, tiles of {tile})")
    params, payload = self._params_payload(code, c)
    d = code.downscale
    if d.denominator > 1:
      params = (ByteWriter().u8(FRACTIONAL_VERSION).u8(d.numerator).u8(d.denominator)
                .getvalue() + params)
    elif d > 1:
      params = ByteWriter().u8(DOWNSCALED_VERSION).u8(int(d)).getvalue() + params
    return container.pack(self.codec_id, h, w, c, params, payload)

  def _params_payload(self, code: TileCode, c: int) -> tuple[bytes, bytes]:
    """The codec parameters (versions 1-4) and the payload of a code."""
    if len(code.models) == 1:
      m, q = code.models[0], code.codes[0]
      m.level(code.quality)  # a quality for a variable-rate model, none for a fixed-rate one
      version = RATE_VERSION if m.levels else PARAMS_VERSION
      writer = (ByteWriter().u8(version).raw(m.fingerprint).varint(m.cfg.tile)
                .u8(_CODING_IDS[m.cfg.coding]))
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
    params = writer.varint(code.models[0].cfg.tile).u8(_CODING_IDS["entropy"]).getvalue()
    return params, _mixed_payload(code, c)

  # -- decoding ---------------------------------------------------------------------------
  def _model_with(self, fingerprint: bytes) -> LoadedModel:
    matches = [m for m in self.models if m.fingerprint == fingerprint]
    shipped = neural_models.shipped_dirs()
    if not matches and self.model_path in shipped:  # any shipped model decodes its files
      matches = [m for d in shipped if d != self.model_path and neural_models.model_dirs(d)
                 for m in neural_models.load_models(d) if m.fingerprint == fingerprint]
    if not matches:
      raise CodecError(
          f"the file was written with neural model {fingerprint.hex()}, which is not among "
          f"the models at {self.model_path} "
          f"({', '.join(m.fingerprint.hex() for m in self.models)}); pass model=PATH "
          "(--model) with the model that wrote it")
    return matches[0]

  @staticmethod
  def _read_params(params: bytes) -> tuple[int, list[bytes], int, int, tuple, Fraction]:
    """A file's codec parameters -> (version 1-4 of the code, the entries' model
    fingerprints, tile, coding id, the entries' qualities: None for fixed-rate entries,
    downscale: 1 unless the code is inside version 5 or 6)."""
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
    return version, fingerprints, tile, coding, tuple(qualities), downscale

  def describe(self, data: bytes) -> dict[str, str]:
    """What ``collage-codec info`` shows of a file beyond the container: the model(s) that
    wrote it and the quality (stored by variable-rate files; for a fixed-rate model the
    quality band that picks it from its set)."""
    header, params, _ = container.unpack(data, expected_codec_id=self.codec_id)
    version, fingerprints, tile, _, qualities, downscale = self._read_params(params)
    names = []
    for fp in fingerprints:
      try:
        m = self._model_with(fp)
      except CodecError:
        names.append(f"{fp.hex()} (not among the models at {self.model_path}; --model PATH)")
        continue
      retired = os.path.dirname(m.directory) == neural_models.RETIRED_DIR
      tags = ([fp.hex()] + ["variable rate"] * bool(m.levels)
              + ["context model"] * m.cfg.context_model + ["retired"] * retired)
      names.append(f"{m.name} ({', '.join(tags)})")
    if version == RATE_MIXED_VERSION:  # one model, several qualities: name it once
      names = names[:1]
    out = {"model": ", ".join(names), "tile": f"{tile} x {tile}"}
    if downscale > 1:
      hs, ws = coded_size(header.height, header.width, downscale)
      p, q = downscale.numerator, downscale.denominator
      out["downscale"] = (f"{downscale} (coded at {ws}x{hs}, decoded at {p}x"
                          + (f" and averaged over {q}x{q} pixels)" if q > 1 else ")"))
    if version == RATE_VERSION:
      out["quality"] = str(qualities[0])
    elif version == RATE_MIXED_VERSION:
      out["quality"] = f"per tile among {', '.join(map(str, qualities))}"
    elif version == MIXED_VERSION:
      out["quality"] = f"not stored (a model per tile among {len(fingerprints)})"
    else:
      try:
        band = self.quality_band(self._model_with(fingerprints[0]))
      except CodecError:
        band = ""
      out["quality"] = (f"not stored (fixed-rate model; qualities {band} pick it)" if band
                        else "not stored (fixed-rate model)")
    return out

  def decode_code(self, data: bytes) -> tuple[TileCode, container.Header]:
    """Parse a file -> (:class:`TileCode`, header)."""
    header, params, payload = container.unpack(data, expected_codec_id=self.codec_id)
    version, fingerprints, tile, coding, qualities, downscale = self._read_params(params)
    models = tuple(self._model_with(fp) for fp in fingerprints)
    for m in models:
      if tile != m.cfg.tile or coding != _CODING_IDS[m.cfg.coding]:
        raise CodecError(f"corrupt neural codec parameters: tile {tile} / coding {coding} do "
                         f"not match model {m.fingerprint.hex()}")
      if bool(m.levels) != (version in (RATE_VERSION, RATE_MIXED_VERSION)):
        raise CodecError(f"corrupt neural codec parameters: a version-{version} file names "
                         f"{'variable' if m.levels else 'fixed'}-rate model {m.name}")
    c = header.channels
    n_tiles = int(np.prod(tile_grid(header.height, header.width, downscale, tile)))
    what = f"the codes of the {n_tiles} tiles of the {c}-channel image that the header declares"
    try:
      code, recoded = _decode_payload(models, version, payload, n_tiles, c, qualities)
    except CodecError as e:
      raise CodecError(f"{e} (reading {what})") from None
    _expect_exact(payload, recoded, what)
    return dataclasses.replace(code, downscale=downscale), header

  def reconstruct(self, code: TileCode, height: int, width: int, channels: int,
                  scale: int = 1) -> np.ndarray:
    """Decode a code to uint8 [height * scale, width * scale, channels].

    A chunk of tiles at a time (``LoadedModel.synthesise_chunks``), each written into the
    output as 8-bit pixels: the memory is the output image plus one chunk's working set,
    whatever the image size (:meth:`decode_bytes`). A downscaled code's tiles are decoded
    at ``p * scale`` for D = p/q, averaged over q x q pixel blocks, and the image cropped to
    the output size."""
    up, down = code.downscale.numerator, code.downscale.denominator
    tile = code.models[0].cfg.tile
    t = tile * scale * up // down  # an output tile (tile % down == 0: TileCode checks it)
    nw = tile_grid(height, width, code.downscale, tile)[1]
    h_out, w_out = height * scale, width * scale
    out = np.empty((h_out, w_out, channels), np.uint8)
    for k, (m, q) in enumerate(zip(code.models, code.codes)):
      where = np.flatnonzero(code.choice == k)  # entry k's tiles, in raster order
      for start, tiles in m.synthesise_chunks(q, channels, scale * up, code.qualities[k]):
        tiles = np.clip(tiles, 0.0, 1.0)
        if down > 1:
          tiles = tiles.reshape(len(tiles), t, down, t, down, channels).mean(axis=(2, 4))
        pixels = np.round(tiles * 255.0).astype(np.uint8)
        for i, tile in zip(where[start:start + len(tiles)], pixels):
          y, x = (int(i) // nw) * t, (int(i) % nw) * t
          out[y:y + t, x:x + t] = tile[:h_out - y, :w_out - x]
    return out

  def decompress(self, data: bytes, scale: int = 1) -> np.ndarray:
    """Container bytes -> uint8 [H * scale, W * scale, C]."""
    scale = check_scale(scale)
    code, header = self.decode_code(data)
    check_decode_fits(self, header.height, header.width, header.channels, scale,
                      lambda s: self.decode_bytes(header.height, header.width, header.channels,
                                                  s, code.downscale))
    return self.reconstruct(code, header.height, header.width, header.channels, int(scale))

  def decode_bytes(self, height: int, width: int, channels: int, scale: int,
                   downscale=1) -> int:
    """:meth:`reconstruct` holds the 8-bit output and one chunk of tiles in float32 with the
    synthesis's own arrays (about 3 chunk-sized arrays were measured at scale 16); add the
    caller's copy of the output. ``downscale``: a downscaled file's D = p/q (its tiles are
    decoded at ``scale * p``)."""
    tile = max(m.cfg.tile for m in self.models) * scale * Fraction(downscale).numerator
    chunk = neural_models.ENCODE_BATCH * tile * tile * channels * 4
    return FIXED_BYTES + 2 * height * width * scale * scale * channels + 3 * chunk
