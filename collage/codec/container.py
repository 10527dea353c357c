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


class NotContainerError(CodecError):
  """The bytes are not a container file at all (wrong magic bytes)."""


class _BadField(Exception):
  """A header field holds a value no valid file has; the text says which field and why."""


def _check_geometry(height: int, width: int, channels: int, err=CodecError) -> None:
  if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
    raise err(f"implausible image size {height}x{width}: height and width must be "
              f"in 1..{MAX_SIDE}")
  if height * width > MAX_PIXELS:
    raise err(f"implausible image size {height}x{width}: more than {MAX_PIXELS} pixels")
  if channels not in SUPPORTED_CHANNELS:
    raise err(f"unsupported channel count {channels}; valid: "
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
  raise _BadField(f"the {what} field is not a valid varint (longer than 10 bytes)")


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


def _crc_matches(body: bytes, stored: bytes) -> bool:
  return len(stored) == _CRC_BYTES and zlib.crc32(body) == int.from_bytes(stored, "little")


def _intact(data: bytes) -> bool:
  """Whether the file's last 4 bytes are the CRC-32 of every byte before them, as written."""
  return len(data) > _CRC_BYTES and _crc_matches(data[:-_CRC_BYTES], data[-_CRC_BYTES:])


def _check_signature(data: bytes) -> None:
  if data[:len(MAGIC)] == MAGIC:
    return
  if MAGIC.startswith(data):
    raise CodecError(f"truncated file: {len(data)} bytes, shorter than the file signature")
  if _intact(MAGIC + data[len(MAGIC):]):
    raise CodecError("corrupt file: its signature (the first 4 bytes) is damaged; the rest "
                     "of the file is intact")
  raise NotContainerError("not a collage codec file (wrong magic bytes)")


def _check_version(data: bytes, version: int) -> None:
  if version in SUPPORTED_VERSIONS:
    return
  pos = len(MAGIC)
  for v in SUPPORTED_VERSIONS:
    if _intact(data[:pos] + bytes([v]) + data[pos + 1:]):
      raise CodecError(f"corrupt file: its format version byte is damaged (reads {version}; "
                       f"the checksum shows it was written as version {v})")
  raise CodecError(f"unsupported format version {version}; this build reads version(s) "
                   f"{', '.join(map(str, SUPPORTED_VERSIONS))}")


def _layout(data: bytes) -> tuple[Header, list[bytes], int]:
  """Reads the header fields and locates the sections (nothing is verified by the checksum).

  Returns (header, [params, payload], where the checksum starts). Raises CodecError for a
  file that ends inside the header or whose sections run past its end, and _BadField for a
  field value no valid file has."""
  pos = len(MAGIC)
  if len(data) < pos + 2:
    raise CodecError("truncated file: ends inside the header")
  version, codec_id = data[pos], data[pos + 1]
  _check_version(data, version)
  pos += 2
  height, pos = _read_varint(data, pos, "height")
  width, pos = _read_varint(data, pos, "width")
  if pos >= len(data):
    raise CodecError("truncated file: ends inside the header")
  channels = data[pos]
  pos += 1
  _check_geometry(height, width, channels, _BadField)
  sections = []
  for what in ("params", "payload"):
    length, pos = _read_varint(data, pos, f"{what} length")
    if pos + length + _CRC_BYTES > len(data):
      short = pos + length + _CRC_BYTES - len(data)
      problem = (f"the {what} section declares {length} bytes but the file ends {short} "
                 "bytes early")
      if _intact(data):
        raise CodecError(f"corrupt file: {problem} (the file is as written: a faulty writer)")
      raise CodecError(f"truncated file, or a damaged header: {problem}")
    sections.append(data[pos:pos + length])
    pos += length
  return Header(version, codec_id, height, width, channels), sections, pos


def _parse(data: bytes) -> tuple[Header, bytes, bytes]:
  """Parses and verifies a file, without checking which codec wrote it.

  A failure names what is wrong: not our file, a damaged signature or version byte, an
  unsupported version, truncation, bytes appended after an intact file, a header whose fields
  or section lengths are damaged, or damage anywhere else (checksum mismatch)."""
  data = bytes(data)
  _check_signature(data)
  intact = _intact(data)
  try:
    header, (params, payload), end = _layout(data)
  except _BadField as e:
    if intact:  # written that way
      raise CodecError(str(e)) from None
    raise CodecError(f"corrupt file: checksum mismatch, and the header is damaged: {e}") \
        from None
  extra = len(data) - end - _CRC_BYTES
  if extra and _crc_matches(data[:end], data[end:end + _CRC_BYTES]):
    raise CodecError(f"corrupt file: {extra} unexpected trailing bytes after the checksum "
                     "(the file before them is intact)")
  if extra and intact:
    raise CodecError(f"corrupt file: its header's section lengths cover {end + _CRC_BYTES} of "
                     f"its {len(data)} bytes (the file is as written: a faulty writer)")
  if extra:
    raise CodecError(f"corrupt file: checksum mismatch, and the header is damaged: its "
                     f"section lengths (params {len(params)}, payload {len(payload)} bytes) "
                     f"do not add up to the file's {len(data)} bytes")
  if not intact:
    raise CodecError("corrupt file: checksum mismatch (the file was damaged or modified)")
  return header, params, payload


def unpack(data: bytes, expected_codec_id: int | None = None) -> tuple[Header, bytes, bytes]:
  """Verifies a container file and splits it.

  Args:
    data: the complete file's bytes.
    expected_codec_id: if given, the file must have been written by this codec.

  Returns:
    (header, params, payload).

  Raises:
    CodecError: not our file, a damaged signature or version byte, an unsupported version,
      wrong codec, truncated, trailing bytes, a damaged header (a field or the section
      lengths), checksum mismatch or implausible geometry; the message says which.
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
