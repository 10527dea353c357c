"""The Neural Collage codec: a trained hypernetwork encodes tiles into collage parameters,
which are entropy-coded with the model's learned probabilities (Poli et al. 2022; rate model
after Ballé et al. 2018).

Compression of an ``H x W`` image (1 or 3 channels):

1. Pad (edge replication) to multiples of the model's tile ``T`` and cut ``T x T`` tiles
   (:mod:`collage.codec.neural_tiles`).
2. Encode all tiles in batched forward passes; optionally refine each tile's code by a few
   gradient steps on the model's rate-distortion loss (``refine``); round and clip to
   integers ``q``.
3. Entropy coding (``coding = "entropy"`` models) with ``constriction``'s range coder under
   the model's integer tables (deterministic, 16-bit; :mod:`collage.codec.neural_coding`):
   with a factorized prior, slot by slot (all tiles' values of slot 0, then slot 1, ...);
   with the context model (``ModelConfig.context_model``, the default model since session
   8), first every weight's significance flag under its context of decoded flags, then the
   nonzero values and the bias coefficients slot by slot. Baseline models
   (``coding = "bitpack"``) bit-pack the values. The file: :mod:`collage.codec.neural_format`
   (parameter versions 1-6).
4. Decoding runs the same synthesis on the decoded integers, so the decoder reproduces the
   encoder's reconstruction bit-exactly; ``scale=K`` decodes every tile at ``K`` times the
   resolution (resolution-agnostic decoding of the collage operator).

Coding at a lower resolution (``downscale=D``, 1 < D <= MAX_DOWNSCALE in steps of 1/4;
the resampling: :mod:`collage.codec.neural_tiles`): the encoder codes the image resampled to
1/D of its size by area averaging, and the decoder decodes every tile at ``p * scale`` for
D = p/q (the collage operator has no native resolution), averages q x q pixel blocks of it
and crops to ``H x W``. D^2 times fewer tiles: a smaller file and a faster encode (on Kodak
1.7 times at D = 1.5, 2.6 times at D = 2: the fixed costs remain); at low rates the
trade-off is better than coding every pixel (on Kodak D = 2 below about 0.15 bpp, D = 1.5 up
to 0.25 bpp; on larger photographs up to 0.45 bpp; ``benchmarks/neural_codec.md``, "Rate–distortion
of the downscale modes").

Quality: :mod:`collage.codec.neural_quality` turns a ``quality`` 1..100 once into what the
models need (:meth:`NeuralCollageCodec.setting`): the model of its band, or with ``mix`` the
entries every tile chooses among (:mod:`collage.codec.neural_mix`, per-tile model choice),
the code quality of a variable-rate model, and the rate-distortion trade-off ``lam``.

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

from collage.codec import container, neural_format, neural_mix, neural_models
from collage.codec.base import Codec, CodecError, check_image, check_scale, register
from collage.codec.memory import FIXED_BYTES, check_decode_fits
from collage.codec.neural_format import TileCode
from collage.codec.neural_models import LoadedModel
from collage.codec.neural_quality import QualityPolicy, QualitySetting, band_qualities
from collage.codec.neural_tiles import (check_downscale, coded_size, downscale_image,
                                        image_tiles, tile_grid)

MAX_REFINE = 10_000  # bound on test-time refinement steps (``refine``)


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
    mix: choose the model per tile by rate-distortion cost (:mod:`collage.codec.neural_mix`)
      instead of one model per quality band; with a variable-rate model, its quality per
      tile. Costs one forward pass and one decode per model (or quality) at encode time;
      decoding costs the same as with one model.
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

  @property
  def policy(self) -> QualityPolicy:
    """How :attr:`models` serve a quality (:mod:`collage.codec.neural_quality`)."""
    return QualityPolicy(self.models, self.model_path)

  def setting(self, quality: int) -> QualitySetting:
    """quality 1..100 -> what it asks of the models under this codec's ``mix``: the model (or
    the per-tile entries), its code quality, the trade-off lam."""
    return self.policy.setting(quality, self.mix)

  # -- encoding ---------------------------------------------------------------------------
  def encode_code(self, image: np.ndarray, quality: int) -> TileCode:
    """The integer code of an image (of it downscaled, with ``downscale``).
    image: uint8 [H, W, C] -> :class:`TileCode`."""
    image = check_image(image)
    setting = self.setting(quality)
    if self.downscale > 1:
      code = self._encode_full(downscale_image(image, self.downscale), setting)
      return dataclasses.replace(code, downscale=self.downscale)
    return self._encode_full(image, setting)

  def _encode_full(self, image: np.ndarray, setting: QualitySetting) -> TileCode:
    if self.mix:
      return neural_mix.choose(image, setting, self.refine)
    ((m, code_quality),) = setting.entries
    tiles = image_tiles(image, m.cfg.tile)
    lam = setting.lam if self.refine else None  # only refinement needs the trade-off
    q = m.analyse(tiles, self.refine, lam, code_quality)
    return TileCode.single(m, q[:, :m.layout.num_values(image.shape[-1])], code_quality)

  def compress(self, image: np.ndarray, quality: int = 50) -> bytes:
    """image: uint8 [H, W, C] (C = 1 or 3), quality 1..100 -> container bytes."""
    image = check_image(image)
    h, w, c = image.shape
    return self.write_code(self.encode_code(image, quality), h, w, c)

  def write_code(self, code: TileCode, height: int, width: int, channels: int) -> bytes:
    """A :class:`TileCode` of an image of that size -> container bytes
    (:func:`collage.codec.neural_format.write_parts`)."""
    params, payload = neural_format.write_parts(code, height, width, channels)
    return container.pack(self.codec_id, height, width, channels, params, payload)

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

  def describe(self, data: bytes) -> dict[str, str]:
    """What ``collage-codec info`` shows of a file beyond the container: the model(s) that
    wrote it and the quality (stored by variable-rate files; for a fixed-rate model the
    quality band that picks it from its set)."""
    header, params, _ = container.unpack(data, expected_codec_id=self.codec_id)
    p = neural_format.read_params(params)
    names = []
    for fp in p.fingerprints:
      try:
        m = self._model_with(fp)
      except CodecError:
        names.append(f"{fp.hex()} (not among the models at {self.model_path}; --model PATH)")
        continue
      tags = ([fp.hex()] + ["variable rate"] * bool(m.levels)
              + ["context model"] * m.cfg.context_model + ["retired"] * _retired(m))
      names.append(f"{m.name} ({', '.join(tags)})")
    if p.version == neural_format.RATE_MIXED_VERSION:  # one model, several qualities
      names = names[:1]
    out = {"model": ", ".join(names), "tile": f"{p.tile} x {p.tile}"}
    if p.downscale > 1:
      hs, ws = coded_size(header.height, header.width, p.downscale)
      up, down = p.downscale.numerator, p.downscale.denominator
      out["downscale"] = (f"{p.downscale} (coded at {ws}x{hs}, decoded at {up}x"
                          + (f" and averaged over {down}x{down} pixels)" if down > 1 else ")"))
    if p.version == neural_format.RATE_VERSION:
      out["quality"] = str(p.qualities[0])
    elif p.version == neural_format.RATE_MIXED_VERSION:
      out["quality"] = f"per tile among {', '.join(map(str, p.qualities))}"
    elif p.version == neural_format.MIXED_VERSION:
      out["quality"] = f"not stored (a model per tile among {len(p.fingerprints)})"
    else:
      try:
        band = _band_text(self._model_with(p.fingerprints[0]))
      except CodecError:
        band = ""
      out["quality"] = (f"not stored (fixed-rate model; qualities {band} pick it)" if band
                        else "not stored (fixed-rate model)")
    return out

  def decode_code(self, data: bytes) -> tuple[TileCode, container.Header]:
    """Parse a file -> (:class:`TileCode`, header)."""
    header, params, payload = container.unpack(data, expected_codec_id=self.codec_id)
    p = neural_format.read_params(params)
    models = tuple(self._model_with(fp) for fp in p.fingerprints)
    code = neural_format.read_code(p, models, payload, header.height, header.width,
                                   header.channels)
    return code, header

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


def _retired(model: LoadedModel) -> bool:
  """Whether ``model`` is one of the retired shipped models (decoding old files only)."""
  return os.path.dirname(model.directory) == neural_models.RETIRED_DIR


def _band_text(model: LoadedModel) -> str:
  """The qualities that pick a fixed-rate ``model`` from the set it belongs to (the folder
  it is in: "41-60"); "" if none does (a retired model is no longer picked)."""
  if _retired(model):
    return ""
  return band_qualities(model, neural_models.load_models(os.path.dirname(model.directory)))
