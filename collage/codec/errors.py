"""The codecs' one error type, below everything else in ``collage.codec`` (the contract in
:mod:`collage.codec.base` and the memory check in :mod:`collage.codec.memory` both raise it)."""


class CodecError(ValueError):
  """A file or an image a codec cannot handle. The message names the problem and,
  where there is one, the valid choices. Command-line tools print it without a traceback."""
