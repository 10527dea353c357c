"""The PIFS fractal codec (Jacquin 1992; Fisher 1995): a quadtree code in a container file.

``compress`` runs :func:`collage.ops.pifs.encode` with a quadtree threshold chosen by the
quality (higher quality, lower threshold, more and smaller range blocks) and writes the
:class:`~collage.ops.pifs.PIFSCode` into the project's container (codec id 1).

Params section (7 bytes + 4): u8 max_range, u8 min_range, u8 chroma_min_range, u8 stride_div,
u8 s_bits, u8 o_bits, u8 domain_cap_log2 (0: no cap; files written before the cap existed hold
0 here and decode as before), float32 little-endian s_max.

Payload, for each channel in order (Y, or Y Cb Cr), all streams from
:func:`collage.codec.entropy.encode_categorical` as length-prefixed sections:
  varint n_split; section split flags (alphabet 2);
  for each level with leaves: section domain indices (alphabet = that level's domain count);
  section isometries (alphabet 8); section s indices (2**s_bits); section o indices
  (2**o_bits, coded as the difference to the previous leaf's index modulo 2**o_bits).
The leaf count per level follows from the split flags and the geometry, so it is not stored.
"""

from __future__ import annotations

import struct

import numpy as np

from collage.codec import container, entropy
from collage.codec.base import (Codec, CodecError, check_image, check_quality, check_scale,
                                 register)
from collage.codec.memory import FIXED_BYTES, check_decode_fits
from collage.ops import pifs
from collage.ops.pifs_search import Quantizer, domain_grid

_RAW_MODE = 2  # encode_categorical's plain bit-packing stream mode (see collage.codec.entropy)


def quality_to_threshold(quality: int) -> float:
  """Quadtree RMS-error threshold in [0, 1] units: 1/255 at quality 100, doubling every
  15 quality steps down (about 100/255 at quality 1). Strictly decreasing in quality.

  With the default 32 -> 4 quadtree, Kodak averages run from ~0.17 bpp (q 30) to ~1.5 bpp
  (q 70); below q ~25 nearly every range stays 32x32 (~0.07-0.1 bpp). The threshold is an
  encoder-only choice: files do not store it."""
  return float(2.0 ** ((100 - quality) / 15.0)) / 255.0


@register
class PIFSCodec(Codec):
  """Quadtree fractal codec.

  Defaults (chosen on Kodak and the grayscale test photographs, ``benchmarks/pifs_quality.md``):
  ranges 32 -> 4 (16 -> 4 cannot go below ~0.27 bpp on Kodak); domain stride = range / 2,
  doubled while a level has more than 2**15 domains (on 512x512 and 768x512 images: stride
  range / 2 on 8x8 and larger ranges, stride 4 on 4x4 ranges instead of 2). Against stride =
  range / 2 everywhere the cap is several times faster for ~0.25 dB at equal rate; against
  stride = range everywhere it costs ~1.4x the time and gains 0.1-0.6 dB. Files record every
  parameter, so files written with other settings (no cap) decode unchanged.

  Args:
    max_range, min_range, stride_div, domain_cap_log2, s_bits, o_bits, s_max: see
      ``pifs.PIFSParams``.
    chroma_min_range: smallest chroma range block (colour images).
    chroma_factor: chroma threshold = chroma_factor * luma threshold.
    entropy_coding: False writes every stream as plain bit packing (for comparison).
    deblocking: apply the light deblocking filter when decoding.
  """

  name = "pifs"
  codec_id = 1

  def __init__(self, max_range: int = 32, min_range: int = 4, chroma_min_range: int = 8,
               stride_div: int = 2, domain_cap_log2: int = 15, s_bits: int = 5,
               o_bits: int = 7, s_max: float = 0.9, chroma_factor: float = 2.0,
               entropy_coding: bool = True, deblocking: bool = False):
    s_max = float(np.float32(s_max))
    self.params = pifs.PIFSParams(max_range, min_range, stride_div,
                                  Quantizer(s_bits, o_bits, s_max), domain_cap_log2)
    try:
      self.params.validate()
      pifs.PIFSParams(max_range, chroma_min_range, stride_div).validate()
    except ValueError as e:
      raise CodecError(f"invalid PIFS parameters: {e}") from e
    self.chroma_min_range = chroma_min_range
    self.chroma_factor = chroma_factor
    self.entropy_coding = entropy_coding
    self.deblocking = deblocking

  # ---------------------------------------------------------------------------- encoding

  def encode(self, image: np.ndarray, quality: int) -> pifs.PIFSCode:
    """uint8 [H, W, C] -> PIFSCode (what ``compress`` serializes)."""
    image = check_image(image)
    thr = quality_to_threshold(check_quality(quality))
    return pifs.encode(image.astype(np.float32) / 255.0, self.params, threshold=thr,
                       chroma_threshold=self.chroma_factor * thr,
                       chroma_min_range=self.chroma_min_range)

  def compress(self, image: np.ndarray, quality: int = 75) -> bytes:
    code = self.encode(image, quality)
    return container.pack(self.codec_id, code.height, code.width, len(code.channels),
                          self._params_bytes(code), self.serialize(code))

  def _params_bytes(self, code: pifs.PIFSCode) -> bytes:
    p = code.params
    cmin = code.channels[1].min_range if len(code.channels) == 3 else p.min_range
    return bytes([p.max_range, p.min_range, cmin, p.stride_div, p.quant.s_bits,
                  p.quant.o_bits, p.domain_cap_log2]) + struct.pack("<f", p.quant.s_max)

  def _stream(self, symbols: np.ndarray, alphabet: int) -> bytes:
    symbols = np.asarray(symbols, np.int64)
    if self.entropy_coding or symbols.size == 0 or entropy.bits_for(alphabet) == 0:
      return entropy.encode_categorical(symbols, alphabet)
    return bytes([_RAW_MODE]) + entropy.pack_bits(symbols, entropy.bits_for(alphabet))

  def serialize(self, code: pifs.PIFSCode) -> bytes:
    """PIFSCode -> payload bytes (layout in the module docstring)."""
    hp, wp = code.padded_shape
    p = code.params
    w = entropy.ByteWriter()
    for ch in code.channels:
      w.varint(len(ch.split)).section(self._stream(ch.split.astype(np.int64), 2))
      layout = pifs.leaf_layout(hp, wp, p, ch.min_range, ch.split)
      start = 0
      for (ys, _), b in zip(layout, p.sizes(ch.min_range)):
        m = len(ys)
        if m:
          nh, nw = domain_grid(hp, wp, b, p.stride(b, hp, wp))
          w.section(self._stream(ch.domain[start:start + m], nh * nw))
        start += m
      w.section(self._stream(ch.iso, 8))
      w.section(self._stream(ch.s_idx, p.quant.s_levels))
      w.section(self._stream(_delta(ch.o_idx, p.quant.o_levels), p.quant.o_levels))
    return w.getvalue()

  # ---------------------------------------------------------------------------- decoding

  def parse(self, data: bytes) -> pifs.PIFSCode:
    """A complete file -> PIFSCode. Raises CodecError on anything malformed."""
    header, params_b, payload = container.unpack(data, expected_codec_id=self.codec_id)
    params, cmin = _parse_params(params_b)
    hp, wp = pifs.padded_shape(header.height, header.width, params.max_range)
    r = entropy.ByteReader(payload, "PIFS payload")
    image = f"the {header.channels}-channel image that the header declares"
    channels = []
    for c in range(header.channels):
      try:
        channels.append(_read_channel(r, params, params.min_range if c == 0 else cmin, hp, wp))
      except CodecError as e:
        raise CodecError(f"{e} (reading channel {c + 1} of {image})") from None
    r.expect_end(image)
    return pifs.PIFSCode(header.height, header.width, params, tuple(channels))

  def reconstruct(self, code: pifs.PIFSCode, scale: int = 1) -> np.ndarray:
    """PIFSCode -> uint8 [H*scale, W*scale, C]."""
    x = pifs.decode(code, scale=scale, deblocking=self.deblocking)
    return np.round(x * 255.0).astype(np.uint8)

  def decompress(self, data: bytes, scale: int = 1) -> np.ndarray:
    scale = check_scale(scale)
    code = self.parse(data)
    check_decode_fits(self, code.height, code.width, len(code.channels), scale)
    return self.reconstruct(code, scale)

  def decode_bytes(self, height: int, width: int, channels: int, scale: int) -> int:
    """The fixed-point iteration runs on the whole padded image, one channel at a time, with
    gather tables of 4 source pixels per output pixel. Measured peaks per padded output pixel
    (Kodak, scales 8 to 16): 91 (gray) to 105 (RGB) bytes resident, 120 bytes of address
    space (what ``ulimit -v`` counts); 125 is taken, plus the output and its copy."""
    hp, wp = pifs.padded_shape(height, width, self.params.max_range)
    padded, out = hp * wp * scale * scale, height * width * scale * scale * channels
    return FIXED_BYTES + 125 * padded + 2 * out


def _parse_params(b: bytes) -> tuple[pifs.PIFSParams, int]:
  if len(b) != 11:
    raise CodecError(f"corrupt PIFS parameters: {len(b)} bytes, expected 11")
  max_r, min_r, cmin, sdiv, sb, ob, cap = b[:7]
  (s_max,) = struct.unpack("<f", b[7:])
  params = pifs.PIFSParams(max_r, min_r, sdiv, Quantizer(sb, ob, float(s_max)), cap)
  try:
    if not np.isfinite(s_max):
      raise ValueError(f"s_max is {s_max}")
    if max_r < max(min_r, cmin):  # PIFSParams.validate lets max_range 0 through
      raise ValueError(f"max_range {max_r} is below min_range {min_r} or chroma_min_range "
                       f"{cmin}")
    params.validate()
    pifs.PIFSParams(max_r, cmin, sdiv).validate()
  except ValueError as e:
    raise CodecError(f"corrupt PIFS parameters: {e}") from e
  return params, cmin


def _read_channel(r: entropy.ByteReader, params: pifs.PIFSParams, min_range: int, hp: int,
                  wp: int) -> pifs.ChannelCode:
  """One channel's streams (layout in the module docstring) -> its ChannelCode."""
  sizes = params.sizes(min_range)
  max_flags = sum((hp // b) * (wp // b) for b in sizes[:-1])
  n_split = r.varint(max_value=max_flags)
  split = _read(r, n_split, 2).astype(bool)
  try:
    layout = pifs.leaf_layout(hp, wp, params, min_range, split)
  except ValueError as e:
    raise CodecError(f"corrupt PIFS payload: {e}") from e
  domains = []
  for (ys, _), b in zip(layout, sizes):
    if len(ys):
      nh, nw = domain_grid(hp, wp, b, params.stride(b, hp, wp))
      if nh * nw == 0:
        raise CodecError(f"corrupt PIFS payload: leaves of size {b} where no domain fits")
      domains.append(_read(r, len(ys), nh * nw))
  n = pifs.num_leaves(layout)
  iso = _read(r, n, 8)
  s_idx = _read(r, n, params.quant.s_levels)
  o_idx = _undelta(_read(r, n, params.quant.o_levels), params.quant.o_levels)
  dom = np.concatenate(domains) if domains else np.zeros(0, np.int64)
  return pifs.ChannelCode(min_range, split, dom.astype(np.int32), iso.astype(np.int32),
                          s_idx.astype(np.int32), o_idx.astype(np.int32))


def _read(r: entropy.ByteReader, count: int, alphabet: int) -> np.ndarray:
  s = entropy.decode_categorical(r.section(), count, alphabet)
  if s.size != count or (count and (s.min() < 0 or s.max() >= alphabet)):
    raise CodecError(f"corrupt PIFS payload: a stream of {count} symbols holds values "
                     f"outside 0..{alphabet - 1}")
  return s


def _delta(x: np.ndarray, levels: int) -> np.ndarray:
  x = np.asarray(x, np.int64)
  return np.diff(x, prepend=0) % levels


def _undelta(d: np.ndarray, levels: int) -> np.ndarray:
  return np.cumsum(d) % levels
