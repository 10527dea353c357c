"""Damaged and crafted files through ``collage-codec``: one line that names the fault, exit 2.

Small real files of every codec that writes the container (PIFS colour and gray, neural with
one model and with a model per tile) are damaged as disks, transfers and edits damage files:
every byte flipped (one bit, a different one at each position), cut at every length, bytes
appended. The CRC-32 catches every such change, so none may decode; each message must say
what is wrong where it is: the signature, the version byte, the header, or the checksum.

Crafted files (a valid checksum around a header and payload that disagree, as a faulty
writer makes them) must be refused by the decoders themselves: every decoder checks that its
payload holds exactly the codes the header declares.
"""

import os

import numpy as np
import pytest

from collage.codec import cli, container
from collage.codec.base import CodecError, get_codec
from collage.data.embedded import embedded_images

EXACT_DAMAGE = "collage-codec: error: corrupt file: checksum mismatch (the file was damaged or " \
               "modified)\n"


DATA = os.path.join(os.path.dirname(__file__), "data")
# name -> (codec, keyword arguments, channels): the stored files (DATA/NAME.clg) of a 48 x 64
# crop of an embedded photograph at quality 60, written by `python THIS_FILE`.
FILES = {"pifs-rgb": ("pifs", {}, 3), "pifs-gray": ("pifs", {}, 1),
         "neural-rgb": ("neural", {}, 3), "neural-mix-gray": ("neural", {"mix": True}, 1)}


@pytest.fixture(scope="module")
def files():
  """name -> (codec, complete file bytes)."""
  out = {}
  for name, (codec, _, _) in FILES.items():
    with open(os.path.join(DATA, f"{name}.clg"), "rb") as f:
      out[name] = (codec, f.read())
  return out


def test_stored_files_decode(files):
  for codec, data in files.values():
    h, _, _ = container.unpack(data)
    assert get_codec(codec).decompress(data).shape == (h.height, h.width, h.channels)


def _decompress(capsys, folder, data: bytes) -> tuple[int, str]:
  path = os.path.join(folder, "damaged.clg")
  with open(path, "wb") as f:
    f.write(data)
  code = cli.main(["decompress", path, os.path.join(folder, "out.png")])
  out, err = capsys.readouterr()
  assert out == "" and err.count("\n") == 1 and "internal error" not in err, (out, err)
  return code, err


def _expected(i: int, data: bytes) -> tuple[str, ...]:
  """What the message must say for a flipped byte at ``i`` (any one of these)."""
  _, params, payload = container.unpack(data)
  payload_start = len(data) - 4 - len(payload)
  params_end = payload_start - len(container._varint(len(payload)))  # noqa: SLF001
  params_start = params_end - len(params)
  if i < 4:
    return ("signature (the first 4 bytes) is damaged; the rest of the file is intact",)
  if i == 4:
    return ("format version byte is damaged",)
  if i < params_start or params_end <= i < payload_start:  # fields and section lengths
    return ("checksum mismatch", "a damaged header")
  return (EXACT_DAMAGE,)


def test_every_flip_cut_and_append_is_named(files, tmp_path, capsys):
  mutations = 0
  for _, data in files.values():
    for i in range(len(data)):
      damaged = bytearray(data)
      damaged[i] ^= 1 << (i % 8)
      code, err = _decompress(capsys, tmp_path, bytes(damaged))
      assert code == 2 and any(e in err for e in _expected(i, data)), (i, err)
    for n in range(len(data)):
      code, err = _decompress(capsys, tmp_path, data[:n])
      assert code == 2 and ("truncated" in err or (n == 0 and "is empty" in err)), (n, err)
    code, err = _decompress(capsys, tmp_path, data + b"\0\xff")
    assert code == 2 and "2 unexpected trailing bytes after the checksum" in err
    mutations += 2 * len(data) + 1
  assert sorted(os.listdir(tmp_path)) == ["damaged.clg"]  # no output, no temporary file
  assert mutations > 1000


def _repack(data: bytes, **fields) -> bytes:
  """``data`` with header fields replaced and a valid checksum: a faulty writer's file."""
  h, params, payload = container.unpack(data)
  geometry = dict(height=h.height, width=h.width, channels=h.channels) | fields
  return container.pack(h.codec_id, geometry["height"], geometry["width"],
                        geometry["channels"], params, payload)


@pytest.mark.parametrize("name", ["pifs-rgb", "pifs-gray", "neural-rgb", "neural-mix-gray"])
def test_a_payload_that_disagrees_with_its_header_is_refused(files, name):
  codec, data = files[name]
  h, _, _ = container.unpack(data)
  other = 1 if h.channels == 3 else 3
  for crafted, says in [(_repack(data, channels=other), f"{other}-channel image that the "
                         "header declares"),
                        (_repack(data, height=h.height + 64), f"{h.channels}-channel image "
                         "that the header declares")]:
    with pytest.raises(CodecError, match=says):
      get_codec(codec).decompress(crafted)


@pytest.mark.parametrize("name", ["pifs-rgb", "neural-rgb"])
def test_a_crafted_payload_through_the_command(files, name, tmp_path, capsys):
  crafted = _repack(files[name][1], channels=1)
  code, err = _decompress(capsys, tmp_path, crafted)
  assert code == 2 and "corrupt" in err and "1-channel image that the header declares" in err


def test_a_pifs_file_with_an_impossible_range_size_is_refused(files):
  _, data = files["pifs-rgb"]
  h, params, payload = container.unpack(data)
  params = bytes([0]) + params[1:]  # max_range 0, which PIFSParams.validate lets through
  crafted = container.pack(h.codec_id, h.height, h.width, h.channels, params, payload)
  with pytest.raises(CodecError, match="max_range 0 is below min_range"):
    get_codec("pifs").decompress(crafted)


if __name__ == "__main__":
  photo = np.ascontiguousarray(embedded_images(3, "eval")[0][1][40:88, 60:124])
  for file_name, (codec_name, kwargs, channels) in FILES.items():
    image = photo if channels == 3 else photo[..., :1].copy()
    with open(os.path.join(DATA, f"{file_name}.clg"), "wb") as f:
      f.write(get_codec(codec_name, **kwargs).compress(image, 60))
