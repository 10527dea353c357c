"""The container every codec of this project writes: one versioned, checksummed file.

Layout (all integers unsigned; ``varint`` is LEB128, 7 bits per byte, low bits first)::

  magic     4 bytes   b"CLG\\x1a"
  version   1 byte    format version (supported: see ``SUPPORTED_VERSIONS``)
  codec_id  1 byte    which codec wrote the payload (``Codec.codec_id``)
  height    varint    image height in pixels (1..MAX_SIDE)
  width     varint    image width in pixels (1..MAX_SIDE)
  channels  1 byte    1 (grayscale) or 3 (colour)
  params    varint length, then that many bytes   codec parameters (codec-defined)
  payload   varint length, then that many bytes   the coded image (codec-defined)
  crc32     4 bytes   little-endian CRC-32 of every byte before it

The rate of a file is always ``8 * len(file) / (height * width)`` bits per pixel: the
container's own bytes (about 20) are part of the rate.
"""

from __future__ import annotations

import dataclasses
import zlib

from collage.codec.base import CodecError, codec_class, codec_names
from collage.codec.entropy import encode_varint as _varint
from collage.metrics.rate import bpp

MAGIC = b"CLG\x1a"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
SUPPORTED_CHANNELS = (1, 3)
MAX_SIDE = 1 << 16            # largest height or width a file may declare
MAX_PIXELS = 1 << 28          # largest height * width a file may declare
_CRC_BYTES = 4


@dataclasses.dataclass(frozen=True)
class Header:
  """The fixed fields of a container file."""
  version: int
  codec_id: int
  height: int
  width: int
  channels: int


def _check_geometry(height: int, width: int, channels: int) -> None:
  if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
    raise CodecError(f"implausible image size {height}x{width}: height and width must be "
                     f"in 1..{MAX_SIDE}")
  if height * width > MAX_PIXELS:
    raise CodecError(f"implausible image size {height}x{width}: more than {MAX_PIXELS} pixels")
  if channels not in SUPPORTED_CHANNELS:
    raise CodecError(f"unsupported channel count {channels}; valid: "
                     f"{', '.join(map(str, SUPPORTED_CHANNELS))}")


def _read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
  value = shift = 0
  for i in range(10):
    if pos + i >= len(data):
      raise CodecError(f"truncated file: ends inside the {what} field")
    byte = data[pos + i]
    value |= (byte & 0x7F) << shift
    shift += 7
    if not byte & 0x80:
      return value, pos + i + 1
  raise CodecError(f"corrupt file: the {what} field is not a valid varint")


def codec_name_for_id(codec_id: int) -> str | None:
  """The registered codec name that writes ``codec_id``, or None if none is known."""
  try:
    for name in codec_names():
      if codec_class(name).codec_id == codec_id:
        return name
  except Exception:  # a broken codec module must not hide the real error  # noqa: BLE001
    return None
  return None


def _describe_id(codec_id: int) -> str:
  name = codec_name_for_id(codec_id)
  return f"{codec_id} ({name})" if name else f"{codec_id} (no codec registered for it)"


def pack(codec_id: int, height: int, width: int, channels: int, params: bytes,
         payload: bytes) -> bytes:
  """A complete container file holding ``params`` and ``payload``.

  Raises:
    CodecError: codec_id outside 0..255 or implausible geometry.
  """
  if not 0 <= int(codec_id) <= 255:
    raise CodecError(f"codec_id must be in 0..255, got {codec_id}")
  _check_geometry(int(height), int(width), int(channels))
  body = b"".join([
      MAGIC, bytes([FORMAT_VERSION, int(codec_id)]), _varint(int(height)), _varint(int(width)),
      bytes([int(channels)]), _varint(len(params)), bytes(params), _varint(len(payload)),
      bytes(payload)])
  return body + zlib.crc32(body).to_bytes(_CRC_BYTES, "little")


def _parse(data: bytes) -> tuple[Header, bytes, bytes]:
  """Parses and verifies a file, without checking which codec wrote it."""
  data = bytes(data)
  if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
    if MAGIC.startswith(data):
      raise CodecError(f"truncated file: {len(data)} bytes, shorter than the file signature")
    raise CodecError("not a collage codec file (wrong magic bytes)")
  pos = len(MAGIC)
  if len(data) < pos + 2:
    raise CodecError("truncated file: ends inside the header")
  version, codec_id = data[pos], data[pos + 1]
  if version not in SUPPORTED_VERSIONS:
    raise CodecError(f"unsupported format version {version}; this build reads version(s) "
                     f"{', '.join(map(str, SUPPORTED_VERSIONS))}")
  pos += 2
  height, pos = _read_varint(data, pos, "height")
  width, pos = _read_varint(data, pos, "width")
  if pos >= len(data):
    raise CodecError("truncated file: ends inside the header")
  channels = data[pos]
  pos += 1
  sections = []
  for what in ("params", "payload"):
    length, pos = _read_varint(data, pos, f"{what} length")
    if pos + length + _CRC_BYTES > len(data):
      raise CodecError(f"truncated file: the {what} section declares {length} bytes but the "
                       f"file ends {pos + length + _CRC_BYTES - len(data)} bytes early")
    sections.append(data[pos:pos + length])
    pos += length
  end = pos + _CRC_BYTES
  if len(data) > end:
    raise CodecError(f"corrupt file: {len(data) - end} unexpected trailing bytes after the "
                     "checksum")
  stored = int.from_bytes(data[pos:end], "little")
  if zlib.crc32(data[:pos]) != stored:
    raise CodecError("corrupt file: checksum mismatch (the file was damaged or modified)")
  _check_geometry(height, width, channels)
  return Header(version, codec_id, height, width, channels), sections[0], sections[1]


def unpack(data: bytes, expected_codec_id: int | None = None) -> tuple[Header, bytes, bytes]:
  """Verifies a container file and splits it.

  Args:
    data: the complete file's bytes.
    expected_codec_id: if given, the file must have been written by this codec.

  Returns:
    (header, params, payload).

  Raises:
    CodecError: not our file, unsupported version, wrong codec, truncated, trailing bytes,
      checksum mismatch or implausible geometry; the message says which.
  """
  header, params, payload = _parse(data)
  if expected_codec_id is not None and header.codec_id != expected_codec_id:
    raise CodecError(f"wrong codec: the file was written by codec id "
                     f"{_describe_id(header.codec_id)}, expected codec id "
                     f"{_describe_id(expected_codec_id)}")
  return header, params, payload


def describe(data: bytes) -> dict:
  """A verified file's header fields and sizes, for ``collage-codec info``.

  Returns:
    dict with version, codec_id, codec (name or None), height, width, channels,
    params_bytes, payload_bytes, file_bytes, overhead_bytes, bpp.
  """
  header, params, payload = unpack(data)
  total = len(data)
  return {
      "version": header.version,
      "codec_id": header.codec_id,
      "codec": codec_name_for_id(header.codec_id),
      "height": header.height,
      "width": header.width,
      "channels": header.channels,
      "params_bytes": len(params),
      "payload_bytes": len(payload),
      "file_bytes": total,
      "overhead_bytes": total - len(params) - len(payload),
      "bpp": bpp(total, header.height, header.width),
  }


inspect = describe
