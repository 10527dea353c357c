"""The codec registry: names to classes, run-time registration, clear errors."""

import pytest

from collage.codec import base, container
from collage.codec.pifs import PIFSCodec


class _Dummy(base.Codec):
  name = "dummytest"
  codec_id = 251

  def compress(self, image, quality):
    raise NotImplementedError

  def decompress(self, data, scale=1):
    raise NotImplementedError


def test_builtin_codecs_by_name_and_id():
  assert base.codec_class("pifs") is PIFSCodec
  assert {"pifs", "neural", "jpeg"} <= set(base.codec_names())
  assert container.codec_name_for_id(1) == "pifs" and container.codec_name_for_id(2) == "neural"
  assert container.codec_name_for_id(249) is None
  with pytest.raises(base.CodecError, match="unknown codec 'nope'; valid codecs: .*pifs"):
    base.codec_class("nope")


def test_register_and_unregister_at_run_time():
  base.register(_Dummy)
  try:
    assert base.codec_class("dummytest") is _Dummy and "dummytest" in base.codec_names()
    assert container.codec_name_for_id(251) == "dummytest"
    base.register(_Dummy)  # the same class again is fine
    other = type("Other", (_Dummy,), {})
    with pytest.raises(ValueError, match="registered twice"):
      base.register(other)
  finally:
    base.unregister("dummytest")
  assert "dummytest" not in base.codec_names()
  with pytest.raises(ValueError, match="no codec 'dummytest' is registered"):
    base.unregister("dummytest")
