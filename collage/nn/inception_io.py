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
import os
from typing import Any, Mapping

import numpy as np

from collage.nn import inception, weight_files
from collage.nn.weight_files import file_sha256  # re-exported: a file's fingerprint

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
  return weight_files.write(path, members, prefix=".inception_")


def load(path: str | os.PathLike) -> Weights:
  """Reads and checks a weight file.

  Raises:
    WeightFileError: one line naming the file and the problem (missing, not a weight file,
      truncated or corrupt, another format, a constant missing, unexpected, mis-shaped, not
      float32 or not finite), and how to make a good one.
  """
  path = os.fspath(path)
  fix = f"; {HOW_TO_GET}"
  data, digest = weight_files.read(path, what="Inception weight file", fmt=FORMAT,
                                   fix=HOW_TO_GET, error=WeightFileError)
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
