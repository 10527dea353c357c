"""``collage-codec``: compress images to files, decompress them, and describe files.

Usage::

  collage-codec compress [--codec pifs] [--quality 75] [--force] IN.png OUT.clg
  collage-codec decompress [--scale 1] [--force] IN.clg OUT.png
  collage-codec info [--model PATH] IN.clg
  collage-codec codecs

``decompress`` and ``info`` read the codec from the file (its codec id); files written by
the reference codecs (``--codec jpeg|webp|jpeg2000``) are standard JPEG / WebP / J2K files
and are recognised by their signature. Every error (an input that is missing, a directory or
not a regular file; an unreadable image, one deeper than 8 bits or in an unsupported mode;
not our file, wrong version, damaged or crafted file, each named as such; a bad option or
unknown codec; an output that cannot be written; a decode larger than the available memory,
refused before it starts; running out of memory) prints one line to stderr and exits with
status 2; an existing output is kept unless ``--force``; outputs are written to a temporary
file and renamed, so a failed run leaves no partial file. Status 1 is kept for bugs.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import sys
import tempfile
import time
from typing import Sequence

import numpy as np

from collage import compilation_cache
from collage.codec import container
from collage.codec.base import (CodecError, check_quality, check_scale, codec_class, codec_names,
                                 get_codec)
from collage.codec.neural_tiles import check_downscale
from collage.metrics.rate import bpp

PROG = "collage-codec"
EXIT_ERROR = 2
EXIT_INTERNAL = 1


class UsageError(Exception):
  """A command-line mistake; printed as one line."""


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line instead of usage + message
    raise UsageError(f"{message} (see '{self.prog} --help')")


def _build_parser() -> argparse.ArgumentParser:
  p = _Parser(prog=PROG, description="Compress images with the collage codecs.")
  sub = p.add_subparsers(dest="command", metavar="{compress,decompress,info,codecs}",
                         parser_class=_Parser)
  sub.required = True
  c = sub.add_parser("compress", help="image file -> compressed file")
  c.add_argument("--codec", default="pifs", help="codec name (see 'codecs'; default: pifs)")
  c.add_argument("--quality", "-q", default="75",
                 help="integer 1..100, higher is better (default: 75)")
  c.add_argument("--model", "-m", default=None,
                 help="learned codecs (neural): a trained model directory or training workdir, "
                      "or a shipped set: 'variable' (the variable-rate model; the default) or "
                      "'fixed' (the five fixed-rate models; the default with --mix)")
  c.add_argument("--refine", default=None,
                 help="learned codecs (neural): steps of test-time refinement of the code "
                      "(default 0: one forward pass; e.g. 30 for a better rate-distortion "
                      "trade-off at a much slower encode)")
  c.add_argument("--mix", action="store_true",
                 help="learned codecs (neural): choose the model per tile by rate-distortion "
                      "cost (default: among the five fixed-rate models; with --model variable: "
                      "the variable-rate model's quality per tile). Better rate-distortion, "
                      "slower encode; decoding is unchanged")
  c.add_argument("--downscale", default=None,
                 help="learned codecs (neural): code the image at 1/D of its resolution, "
                      "D in 1..4 in steps of 1/4 (1.5 or 3/2, 2, ...), and decode it at D "
                      "times (default 1: every pixel); a smaller file and a faster encode "
                      "(1.7x at D=1.5, 2.6x at D=2), for low rates")
  c.add_argument("--force", "-f", action="store_true", help="overwrite OUT if it exists")
  c.add_argument("input", metavar="IN", help="image file (PNG, JPEG, ...; gray or RGB)")
  c.add_argument("output", metavar="OUT", help="compressed file to write")
  d = sub.add_parser("decompress", help="compressed file -> image file")
  d.add_argument("--scale", "-s", default="1",
                 help="integer decoding scale factor 1..16 (default: 1)")
  d.add_argument("--model", "-m", default=None,
                 help="learned codecs (neural): the model directory the file was written with, "
                      "if it is not one of the shipped models")
  d.add_argument("--force", "-f", action="store_true", help="overwrite OUT if it exists")
  d.add_argument("--lossy-output", action="store_true",
                 help="allow a lossy output format (.jpg, .webp, ...): the decoded pixels are "
                      "then compressed a second time")
  d.add_argument("input", metavar="IN", help="compressed file")
  d.add_argument("output", metavar="OUT", help="image file to write (.png, .bmp, .tif, ...)")
  i = sub.add_parser("info", help="describe a compressed file")
  i.add_argument("--model", "-m", default=None,
                 help="learned codecs (neural): where to look for the model that wrote the file, "
                      "if it is not one of the shipped models")
  i.add_argument("input", metavar="IN", help="compressed file")
  sub.add_parser("codecs", help="list the available codecs")
  return p


def _int_option(text: str, name: str, check) -> int:
  try:
    value = int(text)
  except ValueError:
    value = text
  try:
    return check(value)
  except CodecError as e:
    raise UsageError(str(e).replace(name, f"--{name}", 1)) from None


def _check_input(path: str, what: str) -> None:
  """One line unless ``path`` is a regular file: missing, a directory, a broken link, or a
  device, pipe or socket (reading one of those could block or never end)."""
  from collage.images import check_file  # pylint: disable=import-outside-toplevel
  try:
    check_file(path, what)
  except (OSError, ValueError) as e:
    raise UsageError(str(e)) from None


def _read_bytes(path: str) -> bytes:
  _check_input(path, "input file")
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise UsageError(f"cannot read {path!r}: {e.strerror or e}") from None
  if not data:
    raise UsageError(f"input file {path!r} is empty")
  return data


def _check_output(path: str, force: bool) -> None:
  if os.path.isdir(path):
    raise UsageError(f"output {path!r} is a directory")
  if os.path.exists(path) and not force:
    raise UsageError(f"output file {path!r} exists; pass --force to overwrite it")
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise UsageError(f"output folder {folder!r} does not exist")


def _write_atomic(path: str, write) -> None:
  """Calls ``write(file_object)`` on a temporary file next to ``path``, then renames it."""
  folder = os.path.dirname(os.path.abspath(path))
  try:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
  except OSError as e:
    raise UsageError(f"cannot write {path!r}: {e.strerror or e}") from None
  umask = os.umask(0)
  os.umask(umask)
  try:
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    with os.fdopen(fd, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError):  # disk full, quota, a format that cannot hold the image, ...
      raise UsageError(f"cannot write {path!r}: {e.strerror or e}") from None
    raise


def _load_image(path: str) -> np.ndarray:
  from collage.images import load_image  # pylint: disable=import-outside-toplevel
  _check_input(path, "input image")
  try:
    return load_image(path)
  except (OSError, ValueError) as e:
    raise UsageError(str(e)) from None


LEARNED_CODECS = ("neural",)  # codecs that take a trained model (--model)


def _make_codec(name: str, model: str | None, refine: int | None = None,
                mix: bool | None = None, downscale=None):
  """A codec instance; ``model``, ``refine``, ``mix`` and ``downscale`` only for learned
  codecs, else a clear error."""
  kwargs = {}
  for flag, value in (("model", model), ("refine", refine), ("mix", mix),
                      ("downscale", downscale)):
    if value is None:
      continue
    if name not in LEARNED_CODECS:
      raise UsageError(f"--{flag} applies only to learned codecs "
                       f"({', '.join(LEARNED_CODECS)}), not to {name!r}")
    kwargs[flag] = value
  from collage.codec import neural_models  # pylint: disable=import-outside-toplevel
  if model is not None and model not in neural_models.NAMED_MODELS and not os.path.exists(model):
    raise UsageError(f"--model {model!r} does not exist (a model directory, a training workdir, "
                     f"or a shipped set: {', '.join(neural_models.NAMED_MODELS)})")
  return get_codec(name, **kwargs)


def _describe(data: bytes, path: str) -> dict:
  """``container.describe`` of a file; an ordinary image (PNG, BMP, ...) given where a
  compressed file belongs is named as such."""
  try:
    return container.describe(data)  # raises the precise error for bad files
  except container.NotContainerError:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    try:
      with Image.open(io.BytesIO(data)) as img:
        fmt = img.format
    except Exception:  # not an image either: the container's message stands  # noqa: BLE001
      fmt = None
    if fmt is None:
      raise
    raise UsageError(f"{path!r} is a {fmt} image, not a compressed file; to compress it: "
                     f"{PROG} compress {shlex.quote(path)} OUT.clg") from None


def _codec_for_file(data: bytes, path: str, model: str | None = None):
  """(codec instance, codec name) for a compressed file, from its codec id or signature."""
  from collage.codec import reference  # pylint: disable=import-outside-toplevel
  foreign = reference.sniff(data[:16])
  if foreign is not None:
    return _make_codec(foreign, model), foreign
  d = _describe(data, path)
  name = d["codec"]
  if name is None:
    ids = []
    for n in codec_names():
      cid = _codec_id_of(n)
      if cid is not None:
        ids.append(f"{cid} ({n})")
    raise CodecError(f"the file was written by codec id {d['codec_id']}, which this build "
                     f"does not have; available codec ids: {', '.join(ids) or 'none'}")
  return _make_codec(name, model), name


def _codec_id_of(name: str) -> int | None:
  """The container codec id of a registered codec (None for standard-format codecs)."""
  return codec_class(name).codec_id


def _compress(args) -> None:
  quality = _int_option(args.quality, "quality", check_quality)
  if args.codec not in codec_names():
    raise UsageError(f"unknown codec {args.codec!r}; valid codecs: {', '.join(codec_names())}")
  refine = None
  if args.refine is not None:
    try:
      refine = int(args.refine)
    except ValueError:
      refine = -1
    if refine < 0:
      raise UsageError(f"--refine must be a non-negative integer number of steps, "
                       f"got {args.refine!r}")
  downscale = None
  if args.downscale is not None:
    downscale = _int_option(args.downscale, "downscale", check_downscale)
  _check_output(args.output, args.force)
  codec = _make_codec(args.codec, args.model, refine, True if args.mix else None, downscale)
  image = _load_image(args.input)
  start = time.perf_counter()
  data = codec.compress(image, quality)
  seconds = time.perf_counter() - start
  _write_atomic(args.output, lambda f: f.write(data))
  h, w, c = image.shape
  print(f"{args.output}: {len(data)} bytes, {bpp(len(data), h, w):.4f} bpp "
        f"({w}x{h}, {c} channel{'s' if c > 1 else ''}, {args.codec} quality {quality}, "
        f"{seconds:.2f} s)")


# Pillow formats that lose pixels when written with their defaults.
LOSSY_FORMATS = frozenset({"JPEG", "WEBP", "JPEG2000", "MPO", "GIF"})


def _save_format(path: str) -> str:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  ext = os.path.splitext(path)[1].lower()
  formats = Image.registered_extensions()
  if ext not in formats:
    raise UsageError(f"cannot tell the image format of output {path!r} from its extension; "
                     "use e.g. .png, .bmp or .tif")
  return formats[ext]


def _decompress(args) -> None:
  scale = _int_option(args.scale, "scale", check_scale)
  _check_output(args.output, args.force)
  fmt = _save_format(args.output)
  if fmt in LOSSY_FORMATS and not args.lossy_output:
    raise UsageError(f"output {args.output!r} is {fmt}, a lossy format: the decoded image would "
                     "be compressed a second time; write .png (or .bmp, .tif), or pass "
                     "--lossy-output")
  data = _read_bytes(args.input)
  codec, name = _codec_for_file(data, args.input, args.model)
  start = time.perf_counter()
  image = codec.decompress(data, scale=scale)
  seconds = time.perf_counter() - start
  from PIL import Image  # pylint: disable=import-outside-toplevel
  image = np.asarray(image)
  pil = Image.fromarray(image[..., 0], "L") if image.shape[-1] == 1 else Image.fromarray(
      image, "RGB")
  _write_atomic(args.output, lambda f: pil.save(f, format=fmt))
  h, w = image.shape[:2]
  print(f"{args.output}: {w}x{h} from {len(data)} bytes ({name}, scale {scale}, "
        f"{seconds:.2f} s)")


def _info(args) -> None:
  data = _read_bytes(args.input)
  from collage.codec import reference  # pylint: disable=import-outside-toplevel
  foreign = reference.sniff(data[:16])
  if foreign is not None:
    image = get_codec(foreign).decompress(data)
    h, w, c = image.shape
    rows = [("format", f"{foreign} (a standard file, not the collage container)"),
            ("size", f"{w} x {h}, {c} channel{'s' if c > 1 else ''}"),
            ("file", f"{len(data)} bytes"), ("bpp", f"{bpp(len(data), h, w):.4f}")]
  else:
    d = _describe(data, args.input)
    codec = d["codec"] or "not available in this build"
    rows = [("codec", f"{codec} (id {d['codec_id']})"),
            ("version", str(d["version"])),
            ("size", f"{d['width']} x {d['height']}, {d['channels']} "
                     f"channel{'s' if d['channels'] > 1 else ''}"),
            ("params", f"{d['params_bytes']} bytes"),
            ("payload", f"{d['payload_bytes']} bytes"),
            ("file", f"{d['file_bytes']} bytes (container overhead {d['overhead_bytes']})"),
            ("bpp", f"{d['bpp']:.4f}")]
    if d["codec"] is not None:
      extra = getattr(_make_codec(d["codec"], args.model), "describe", None)
      if callable(extra):
        rows += [(str(k), str(v)) for k, v in extra(data).items()]
  print(f"{args.input}")
  for key, value in rows:
    print(f"  {key:<10} {value}")


def _codecs(_) -> None:
  for name in codec_names():
    cid = _codec_id_of(name)
    print(f"{name:<10} {'container id ' + str(cid) if cid is not None else 'standard format'}")


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status (0 ok, 2 bad input, 1 internal error)."""
  parser = _build_parser()
  try:
    try:
      args = parser.parse_args(argv)
    except SystemExit as e:  # --help
      return int(e.code or 0)
    compilation_cache.enable()  # a second run on an image size it has seen skips compiling
    {"compress": _compress, "decompress": _decompress, "info": _info,
     "codecs": _codecs}[args.command](args)
    return 0
  except (UsageError, CodecError) as e:
    print(f"{PROG}: error: {e}", file=sys.stderr)
    return EXIT_ERROR
  except KeyboardInterrupt:
    print(f"{PROG}: interrupted", file=sys.stderr)
    return 130
  except Exception as e:  # a bug, not bad input: still one line  # noqa: BLE001
    if _out_of_memory(e):
      print(f"{PROG}: error: out of memory; free memory, or give a smaller image (compress) "
            "or a smaller --scale (decompress)", file=sys.stderr)
      return EXIT_ERROR
    print(f"{PROG}: internal error (please report): {type(e).__name__}: {e}", file=sys.stderr)
    return EXIT_INTERNAL


def _out_of_memory(e: Exception) -> bool:
  """Python's MemoryError, or XLA's failed allocation (a runtime error whose text says so:
  "RESOURCE_EXHAUSTED: ..." on accelerators, "INTERNAL: ... Out of memory allocating N bytes"
  on the CPU)."""
  return isinstance(e, MemoryError) or (
      type(e).__name__ in ("XlaRuntimeError", "JaxRuntimeError")
      and ("RESOURCE_EXHAUSTED" in str(e) or "Out of memory" in str(e)))


if __name__ == "__main__":
  sys.exit(main())
