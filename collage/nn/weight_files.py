"""The project's ``.npz`` weight files, written and read one way: a deterministic zip (sorted
members, fixed timestamps, stored uncompressed, so the same arrays give the same bytes and the
same sha256), written atomically (a temporary file, then a rename), read back only after the
checks every such file needs: it exists, it is a readable zip of arrays, and its ``__format__``
record names the format its reader expects. The readers (:mod:`collage.nn.inception_io`,
:mod:`collage.nn.digit_features`) check their own records and shapes on top.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from typing import Mapping

import numpy as np


def file_sha256(path: str | os.PathLike) -> str:
  """Hex sha256 of a file's bytes."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def write(path: str | os.PathLike, members: Mapping[str, np.ndarray], prefix: str) -> str:
  """Writes ``members`` (name -> array) to ``path`` deterministically and atomically, readable
  by other users; returns the file's sha256."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".npz", dir=folder)
  try:
    with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
      for name in sorted(members):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.asarray(members[name]), allow_pickle=False)
        z.writestr(zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0)),
                   buf.getvalue())
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the file from other users
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return file_sha256(path)


def read(path: str | os.PathLike, *, what: str, fmt: str, fix: str,
         error: type[Exception]) -> tuple[dict[str, np.ndarray], str]:
  """(every array of the file, its sha256), once the file exists, reads as a zip of arrays and
  its ``__format__`` is ``fmt``.

  Args:
    what: the kind of file, for messages ("Inception weight file").
    fix: appended to every message: how to make a good file.
    error: the exception class raised.

  Raises:
    error: one line naming the file, the problem and ``fix``.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise error(f"{what} {path} does not exist; {fix}")
  digest = file_sha256(path)
  try:
    with np.load(path, allow_pickle=False) as f:
      data = {k: f[k] for k in f.files}
  except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
    raise error(f"{path} is not a readable {what} (truncated or corrupt: "
                f"{type(e).__name__}: {e}); {fix}") from None
  found = str(data.get("__format__", ""))
  if found != fmt:
    raise error(f"{path} is not a collage {what} (format {found!r}, expected {fmt!r}); {fix}")
  return data, digest
