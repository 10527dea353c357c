"""Reference statistics of a dataset for the FID family, in one ``.npz``.

    __format__          "collage-inception-reference/1"
    dataset, num_images what was measured (the source string and split), and how many images
    weights_sha256      the Inception weight file's sha256: statistics of other weights are refused
    mu, sigma           pool_3 mean [2048] and unbiased covariance [2048, 2048] (float64): FID
    mu_s, sigma_s       the same of mixed_6/conv's 2023 features: sFID
    features            pool_3 features [M, 2048] (float32) of the first M images: precision/recall
    inception_score, inception_score_std   of all the images (split size 5000)
    notes               how it was made (the command line; where moments were taken from)

``python -m collage.evals.reference_stats`` writes it; the evaluators read it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import zipfile

import numpy as np

from collage.nn import inception

FORMAT = "collage-inception-reference/1"
HOW_TO_MAKE = ("make it with `python -m collage.evals.reference_stats --source SOURCE "
               "--weights WEIGHTS.npz --out REFERENCE.npz`")


class ReferenceError(ValueError):
  """A reference file that is missing, unreadable, incomplete or made with other weights."""


@dataclasses.dataclass(frozen=True)
class Reference:
  """Statistics of one dataset (see the module docstring)."""
  dataset: str
  num_images: int
  weights_sha256: str
  mu: np.ndarray
  sigma: np.ndarray
  mu_s: np.ndarray
  sigma_s: np.ndarray
  features: np.ndarray
  inception_score: float = float("nan")
  inception_score_std: float = float("nan")
  notes: str = ""


_SHAPES = {"mu": (inception.POOL_DIM,), "sigma": (inception.POOL_DIM,) * 2,
           "mu_s": (inception.SPATIAL_DIM,), "sigma_s": (inception.SPATIAL_DIM,) * 2}


def save(path: str | os.PathLike, ref: Reference) -> None:
  """Writes ``ref`` to ``path`` atomically (temporary file, then rename)."""
  path = os.fspath(path)
  fd, tmp = tempfile.mkstemp(prefix=".reference_", suffix=".npz",
                             dir=os.path.dirname(os.path.abspath(path)))
  os.close(fd)
  try:
    np.savez(tmp, __format__=np.array(FORMAT), dataset=np.array(ref.dataset),
             num_images=np.array(int(ref.num_images)),
             weights_sha256=np.array(ref.weights_sha256),
             mu=np.asarray(ref.mu, np.float64), sigma=np.asarray(ref.sigma, np.float64),
             mu_s=np.asarray(ref.mu_s, np.float64), sigma_s=np.asarray(ref.sigma_s, np.float64),
             features=np.asarray(ref.features, np.float32),
             inception_score=np.array(float(ref.inception_score)),
             inception_score_std=np.array(float(ref.inception_score_std)),
             notes=np.array(ref.notes))
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def load(path: str | os.PathLike, weights_sha256: str | None = None) -> Reference:
  """Reads a reference file; with ``weights_sha256``, refuses one made with other weights.

  Raises:
    ReferenceError: one line naming the file, the problem and the fix.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ReferenceError(f"reference statistics {path} do not exist; {HOW_TO_MAKE}")
  try:
    with np.load(path, allow_pickle=False) as f:
      data = {k: f[k] for k in f.files}
  except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
    raise ReferenceError(f"{path} is not a readable reference file (truncated or corrupt: "
                         f"{type(e).__name__}: {e}); {HOW_TO_MAKE}") from None
  fmt = str(data.get("__format__", ""))
  if fmt != FORMAT:
    raise ReferenceError(f"{path} is not a collage reference file (format {fmt!r}, expected "
                         f"{FORMAT!r}); {HOW_TO_MAKE}")
  missing = [k for k in (*_SHAPES, "features", "dataset", "num_images", "weights_sha256")
             if k not in data]
  wrong = [f"{k} {data[k].shape} (expected {s})" for k, s in _SHAPES.items()
           if k in data and data[k].shape != s]
  if "features" in data and (data["features"].ndim != 2
                             or data["features"].shape[1] != inception.POOL_DIM):
    wrong.append(f"features {data['features'].shape} (expected [M, {inception.POOL_DIM}])")
  if missing or wrong:
    raise ReferenceError(f"{path} is incomplete: missing {missing}, mis-shaped {wrong}; "
                         f"{HOW_TO_MAKE}")
  ref = Reference(
      dataset=str(data["dataset"]), num_images=int(data["num_images"]),
      weights_sha256=str(data["weights_sha256"]),
      mu=data["mu"], sigma=data["sigma"], mu_s=data["mu_s"], sigma_s=data["sigma_s"],
      features=data["features"],
      inception_score=float(data.get("inception_score", np.nan)),
      inception_score_std=float(data.get("inception_score_std", np.nan)),
      notes=str(data.get("notes", "")))
  if weights_sha256 is not None and ref.weights_sha256 != weights_sha256:
    raise ReferenceError(
        f"reference statistics {path} ({ref.dataset}, {ref.num_images} images) were made with "
        f"Inception weights sha256 {ref.weights_sha256[:16]}..., not with these weights "
        f"({weights_sha256[:16]}...): features of other weights are not comparable; recompute "
        f"them with these weights ({HOW_TO_MAKE})")
  return ref
