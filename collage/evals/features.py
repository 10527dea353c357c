"""Features of images under a feature network (Inception, the digit classifier), computed on
the devices of a mesh with the batch split over "data", kept on the devices until one gather at
the end.

    extractor = FeatureExtractor(inception_io.load(path), mesh)   # or FeatureExtractor.of(
    feats = FeatureSet(extractor)                                  #   apply, params, taps, mesh)
    for chunk in chunks:                  # uint8 [n, H, W, 1 or 3], or float in [0, 255]
      feats.add(chunk)
    arrays = feats.gather()               # Inception: {"pool": [N, 2048], "spatial": [N, 2023],
                                          #  "logits": [N, 1008]} numpy, on every process

Each image's features depend on that image only (the networks have no batch statistics), so they
do not depend on how many devices or processes share the work, nor on the chunking.
Library images (float in [0, 1]) become the evaluators' input through :func:`to_uint8`, the
rounding the PNG writer applies: the features of a sample and of its saved PNG are the same.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from collage.nn import inception, inception_io
from collage.nn.bridge import ModuleBridge
from collage.train import mesh as mesh_lib

TAPS = ("pool", "spatial", "logits")  # the Inception network's


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Library images [N, H, W, C] float in [0, 1] -> uint8, rounded and clipped as PNGs are
  written (:func:`collage.images.to_uint8`); uint8 passes through.

  Raises:
    ValueError: not [N, H, W, 1 or 3].
  """
  x = np.asarray(images)
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"Inception features need images [N, H, W, 1 or 3], got shape {x.shape}")
  if x.dtype == np.uint8:
    return x
  # The PNG writer's rule (images.to_uint8), keeping a single channel as its own axis.
  return np.round(np.clip(x.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


class FeatureExtractor:
  """A feature network jitted under ``mesh``: parameters replicated, images sharded.

  ``FeatureExtractor(weights, mesh, batch_size)`` is the Inception network (``weights``: a
  loaded weight file, or an nnx module with its taps, e.g. :class:`inception.InceptionV3` in
  tests); :meth:`of` wraps any network given as a pure ``apply(params, images)``.

  Args:
    weights: a loaded Inception weight file, or an nnx module returning ``{tap: [n, D]}``.
    mesh: the mesh (its "data" axis splits the images).
    batch_size: images per jitted call, rounded up to a multiple of the device count.
  """

  def __init__(self, weights: inception_io.Weights | inception.InceptionV3, mesh: Mesh,
               batch_size: int = 200):
    net = weights.network() if isinstance(weights, inception_io.Weights) else weights
    bridge = ModuleBridge(net)
    params, _ = bridge.split(net)

    def apply(p, x):
      x = x.astype(jnp.float32)
      if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)  # gray as RGB, as PIL's convert("RGB") does
      return bridge.merge(p)(x)

    self._setup(apply, params, TAPS, mesh, batch_size)

  @classmethod
  def of(cls, apply: Callable[[Any, jax.Array], dict[str, jax.Array]], params: Any,
         taps: Sequence[str], mesh: Mesh, batch_size: int = 200) -> "FeatureExtractor":
    """Any feature network: ``apply(params, images [n, H, W, C]) -> {tap: [n, D]}``, pure."""
    self = cls.__new__(cls)
    self._setup(apply, params, tuple(taps), mesh, batch_size)
    return self

  def _setup(self, apply, params, taps, mesh, batch_size) -> None:
    self.mesh, self.taps = mesh, tuple(taps)
    devices = mesh.devices.size
    self.batch = max(devices, -(-int(batch_size) // devices) * devices)
    rep, self._shard = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
    self.params = jax.device_put(params, rep)
    self._apply = jax.jit(lambda p, x: {t: v for t, v in apply(p, x).items() if t in self.taps},
                          in_shardings=(rep, self._shard), out_shardings=self._shard)

  def __call__(self, chunk: np.ndarray) -> dict[str, jax.Array]:
    """chunk: [n <= batch, H, W, C] uint8 (or float in [0, 255]), the same on every process ->
    the taps of ``batch`` rows (rows past n are padding), sharded over "data"."""
    n = len(chunk)
    if not 0 < n <= self.batch:
      raise ValueError(f"a chunk holds 1 to {self.batch} images, got {n}")
    padded = np.zeros((self.batch, *chunk.shape[1:]), chunk.dtype)
    padded[:n] = chunk
    x = jax.make_array_from_callback(padded.shape, self._shard, lambda idx: padded[idx])
    return self._apply(self.params, x)


class FeatureSet:
  """Features of images added in chunks; :meth:`gather` fetches them all, once."""

  def __init__(self, extractor: FeatureExtractor):
    self.extractor = extractor
    self._parts: list[tuple[dict[str, jax.Array], int]] = []
    self.count = 0

  def add(self, images: np.ndarray) -> None:
    """images: [n, H, W, C] uint8 (any n; cut into the extractor's batches)."""
    for start in range(0, len(images), self.extractor.batch):
      chunk = images[start:start + self.extractor.batch]
      self._parts.append((self.extractor(chunk), len(chunk)))
      self.count += len(chunk)

  def gather(self) -> dict[str, np.ndarray]:
    """``{tap: [count, D] float32 numpy}`` in the order added, on every process."""
    if not self._parts:
      raise ValueError("no images were added")
    fetched: list[dict[str, Any]] = mesh_lib.gather([p for p, _ in self._parts])
    return {tap: np.concatenate([f[tap][:n] for f, (_, n) in zip(fetched, self._parts)])
            for tap in self.extractor.taps}
