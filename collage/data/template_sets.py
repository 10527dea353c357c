"""Random sets of memory templates (MAGIC): every example is a set of crops, drawn afresh.

Example i of a stream is a pure function of (seed, stream, i), so a pipeline resumes exactly
and does not depend on how many processes read it::

    {"templates": uint8 [K_max, h, w, 3]   K crops, each from an image chosen at random,
                                           zero after the first K (padding)
     "set_mask":  float32 [K_max]          1 for the K real templates
     "real":      uint8 [h, w, 3]          one more template crop (a real image for the critic)
     "content":   uint8 [h, w, 3]          guided only: a crop of the content image}

K is drawn uniformly from [k_min, k_max] per example. An image smaller than the crop is padded:
mirrored for photographs, with zeros (the background) for digits, centred.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import grain
import numpy as np
from PIL import Image

from collage.data import embedded
from collage.images import load_image, to_channels
from collage.data.sources import open_source

TRAIN_STREAM, EVAL_STREAM = 0, 1


def load_content(spec: str, longer_side: int = 0) -> np.ndarray:
  """A content image: an embedded photograph's name (e.g. "astronaut") or an image file.

  Args:
    spec: an embedded name (``collage.data.embedded.EMBEDDED_NAMES``) or a path.
    longer_side: resize (Lanczos) so the longer side has this many pixels; 0: as it is.

  Returns:
    uint8 [H, W, 3].

  Raises:
    FileNotFoundError: neither an embedded name nor an existing file (listing the names).
  """
  names = dict(embedded.embedded_images(3, "all"))
  if spec in names:
    image = names[spec]
  else:
    try:
      image = to_channels(load_image(spec), 3)
    except FileNotFoundError:
      raise FileNotFoundError(
          f"content {spec!r} is neither an image file nor an embedded photograph; embedded: "
          f"{', '.join(embedded.EMBEDDED_NAMES)}") from None
  return resize(image, *fit(image.shape[:2], longer_side)) if longer_side else image


def fit(shape: Sequence[int], longer_side: int) -> tuple[int, int]:
  """(h, w) of ``shape`` scaled so its longer side is ``longer_side`` (rounded)."""
  h, w = int(shape[0]), int(shape[1])
  s = longer_side / max(h, w)
  return max(1, round(h * s)), max(1, round(w * s))


def resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [h, w, 3] (Lanczos)."""
  if image.shape[:2] == (h, w):
    return image
  return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.LANCZOS))


def crop_padded(image: np.ndarray, h: int, w: int, rng: np.random.Generator,
                mode: str = "symmetric") -> np.ndarray:
  """A uniformly placed h x w crop; an image smaller than that is first padded (centred) with
  ``mode`` ("symmetric": mirrored; "constant": zeros). [H, W, C] -> [h, w, C]."""
  ph, pw = max(0, h - image.shape[0]), max(0, w - image.shape[1])
  if ph or pw:
    image = np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode=mode)
  top = int(rng.integers(0, image.shape[0] - h + 1))
  left = int(rng.integers(0, image.shape[1] - w + 1))
  return image[top:top + h, left:left + w]


def template_images(source: str, split: str) -> tuple[list[np.ndarray], str]:
  """Every image of a template source as uint8 [H, W, 3], and the padding mode it needs.

  Args:
    source: "embedded", "digits", "folder:PATH" or "tfds:NAME[:SPLIT]"
      (``collage.data.sources``).
    split: "train" or "eval" (folders have no splits).
  """
  src = open_source(source, split=split, channels=3)
  images = [np.asarray(src[i]["image"]) for i in range(len(src))]
  if not images:
    raise ValueError(f"template source {source!r} ({split}) holds no image")
  return images, "constant" if source == "digits" else "symmetric"


class TemplateSets:
  """The random-access sequence of examples of the module docstring (endless).

  Args:
    images: template images, uint8 [H, W, 3] each.
    crop: (h, w) of every crop.
    k_min, k_max: the set size range.
    seed, stream: the example seeds (stream separates train and eval).
    content: the content image uint8 [H, W, 3] (guided), or None.
    pad_mode: how images smaller than the crop are padded ("symmetric" or "constant").
  """

  def __init__(self, images: Sequence[np.ndarray], crop: tuple[int, int], k_min: int, k_max: int,
               seed: int, stream: int, content: np.ndarray | None = None,
               pad_mode: str = "symmetric"):
    if not 1 <= k_min <= k_max:
      raise ValueError(f"set sizes need 1 <= k_min <= k_max, got k_min={k_min}, k_max={k_max}")
    if content is not None and (content.shape[0] < crop[0] or content.shape[1] < crop[1]):
      raise ValueError(f"content image {content.shape[0]}x{content.shape[1]} is smaller than "
                       f"the {crop[0]}x{crop[1]} crop; raise data.content_size or lower "
                       "data.crop")
    self.images, self.crop = list(images), crop
    self.k_min, self.k_max = k_min, k_max
    self.seed, self.stream = int(seed), int(stream)
    self.content, self.pad_mode = content, pad_mode

  def __len__(self) -> int:
    return sys.maxsize

  def _crop(self, rng: np.random.Generator) -> np.ndarray:
    image = self.images[int(rng.integers(0, len(self.images)))]
    return crop_padded(image, *self.crop, rng, self.pad_mode)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, self.stream, int(index)])
    k = int(rng.integers(self.k_min, self.k_max + 1))
    h, w = self.crop
    templates = np.zeros((self.k_max, h, w, 3), np.uint8)
    for j in range(k):
      templates[j] = self._crop(rng)
    out = {"templates": templates,
           "set_mask": (np.arange(self.k_max) < k).astype(np.float32),
           "real": np.ascontiguousarray(self._crop(rng))}
    if self.content is not None:
      out["content"] = np.ascontiguousarray(crop_padded(self.content, h, w, rng))
    return out


def train_iterator(sets: TemplateSets, batch_size: int, process_index: int,
                   process_count: int) -> grain.DatasetIterator:
  """This process's share of the endless stream, batched (``batch_size`` rows per process)."""
  ds = grain.MapDataset.source(sets)[process_index::process_count]
  ds = ds.batch(batch_size, drop_remainder=True)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)))


def eval_batches(sets: TemplateSets, examples: int, batch_size: int, process_index: int,
                 process_count: int) -> list[dict[str, Any]]:
  """The first ``examples`` examples of ``sets``, in global batches padded by repeating the
  first examples (``mask`` 0 on padding rows); this process's rows of each."""
  global_batch = batch_size * process_count
  padded = -(-examples // global_batch) * global_batch
  rows = [sets[i % examples] for i in range(padded)]
  batches = []
  for start in range(0, padded, global_batch):
    chunk = rows[start:start + global_batch][process_index * batch_size:
                                             (process_index + 1) * batch_size]
    batch = {k: np.stack([r[k] for r in chunk]) for k in chunk[0]}
    first = start + process_index * batch_size
    batch["mask"] = (np.arange(first, first + batch_size) < examples).astype(np.float32)
    batches.append(batch)
  return batches
