"""The project's weight file of the FID Inception-v3: write it, check it, load it.

A ``.npz`` (a zip of ``.npy`` members) holding every constant of
:func:`collage.nn.inception.weight_shapes` under its graph name (float32), and four records:

  __format__     "collage-inception-2015-12-05/1"
  __source__     what it was converted from (file name and its sha256)
  __bn_epsilon__, __input_shift__, __input_scale__   the graph's variance_epsilon, Sub/y, Mul/y

The file is written byte-for-byte reproducibly (members sorted, stored uncompressed, zip dates
fixed), so converting the same graph file always gives the same sha256; reference statistics
record that hash and evaluators refuse statistics made with other weights. No package ships the
weights and nothing is downloaded at run time: :data:`HOW_TO_GET` says how a user makes the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tempfile
import zipfile
from typing import Any, Mapping

import numpy as np

from collage.nn import inception

FORMAT = "collage-inception-2015-12-05/1"
_RECORDS = ("__format__", "__source__", "__bn_epsilon__", "__input_shift__", "__input_scale__")
HOW_TO_GET = (
    "get inception-2015-12-05.tgz (TensorFlow's published Inception graph, "
    "download.tensorflow.org/models/image/imagenet/; it holds classify_image_graph_def.pb), "
    "convert it once with `python -m collage.nn.inception_convert inception-2015-12-05.tgz "
    "inception_fid.npz`")


class WeightFileError(ValueError):
  """A weight file that is missing, not ours, truncated, corrupt or of another layout."""


@dataclasses.dataclass(frozen=True, eq=False)
class Weights:
  """A loaded weight file: ``arrays`` by graph name, the graph's scalars, the file's sha256.
  Compared and hashed by identity (a cache key)."""
  arrays: dict[str, np.ndarray]
  bn_epsilon: float
  input_shift: float
  input_scale: float
  source: str
  sha256: str
  path: str = ""

  def network(self) -> inception.InceptionV3:
    """The network with these constants."""
    return inception.InceptionV3(self.arrays, bn_epsilon=self.bn_epsilon,
                                 input_shift=self.input_shift, input_scale=self.input_scale)


def file_sha256(path: str | os.PathLike) -> str:
  """Hex sha256 of a file's bytes."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def save(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, source: str,
         bn_epsilon: float = inception.BN_EPSILON, input_shift: float = inception.INPUT_SHIFT,
         input_scale: float = inception.INPUT_SCALE) -> str:
  """Writes a weight file atomically (temporary file, then rename); returns its sha256.

  Raises:
    ValueError: ``arrays`` does not match the layout (names every difference).
  """
  inception.check_weights(arrays, "the arrays to save")
  members = {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in arrays.items()}
  members.update({"__format__": np.array(FORMAT), "__source__": np.array(str(source)),
                  "__bn_epsilon__": np.array(float(bn_epsilon), np.float64),
                  "__input_shift__": np.array(float(input_shift), np.float64),
                  "__input_scale__": np.array(float(input_scale), np.float64)})
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=".inception_", suffix=".npz", dir=folder)
  try:
    with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
      for name in sorted(members):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, members[name], allow_pickle=False)
        info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
        z.writestr(info, buf.getvalue())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return file_sha256(path)


def load(path: str | os.PathLike) -> Weights:
  """Reads and checks a weight file.

  Raises:
    WeightFileError: one line naming the file and the problem (missing, not a weight file,
      truncated or corrupt, another format, a constant missing, unexpected, mis-shaped, not
      float32 or not finite), and how to make a good one.
  """
  path = os.fspath(path)
  fix = f"; {HOW_TO_GET}"
  if not os.path.isfile(path):
    raise WeightFileError(f"Inception weight file {path} does not exist{fix}")
  digest = file_sha256(path)
  try:
    with np.load(path, allow_pickle=False) as f:
      data = {k: f[k] for k in f.files}
  except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
    raise WeightFileError(f"{path} is not a readable Inception weight file (truncated or "
                          f"corrupt: {type(e).__name__}: {e}){fix}") from None
  fmt = str(data.get("__format__", ""))
  if fmt != FORMAT:
    raise WeightFileError(f"{path} is not a collage Inception weight file (format {fmt!r}, "
                          f"expected {FORMAT!r}){fix}")
  missing = [r for r in _RECORDS if r not in data]
  if missing:
    raise WeightFileError(f"{path} lacks the records {missing}{fix}")
  arrays = {k: v for k, v in data.items() if k not in _RECORDS}
  try:
    inception.check_weights(arrays, path)
  except ValueError as e:
    raise WeightFileError(f"{e}{fix}") from None
  bad = sorted(k for k, v in arrays.items() if v.dtype != np.float32 or not np.all(np.isfinite(v)))
  if bad:
    raise WeightFileError(f"{path}: constants not finite float32: {', '.join(bad[:5])}{fix}")
  return Weights(arrays, float(data["__bn_epsilon__"]), float(data["__input_shift__"]),
                 float(data["__input_scale__"]), str(data["__source__"]), digest, path)


def describe(weights: Weights) -> dict[str, Any]:
  """What a report says about the weights: file, sha256, source."""
  return {"path": weights.path, "sha256": weights.sha256, "source": weights.source}
