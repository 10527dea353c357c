"""The Inception-v3 network of the FID family: TensorFlow's graph "inception-2015-12-05".

This is the network inside ``classify_image_graph_def.pb`` (``inception-2015-12-05.tgz``), the
one that FID (Heusel et al. 2017, TTUR), the Inception score (Salimans et al. 2016) and the
guided-diffusion evaluator (Dhariwal & Nichol 2021: FID, sFID, precision, recall, IS) run. It is
not Keras' or torchvision's ImageNet Inception-v3: its pools differ (average pools exclude the
padding, the last block's pool branch is a max pool) and it has 1008 classes. The layout is
:data:`LAYOUT`, one node per graph op that carries weights or changes shape, named exactly as
the graph names them (its table: ``third_party/inception/layout.tsv``; provenance:
``third_party/inception/README.md``). Variables carry the graph's names too
(``mixed_6/conv/conv2d_params``, ``mixed_6/conv/batchnorm/moving_mean``, ``softmax/weights``),
so the weight file is the graph's constants under their own names.

The graph's input path, reproduced exactly: images ``[N, H, W, 3]`` in [0, 255] ->
``ResizeBilinear`` to 299 x 299 (TensorFlow 1's legacy rule: no half-pixel centres, see
:func:`resize_bilinear_legacy`) -> ``(x - 128) * (1 / 128)`` (the graph's ``Sub/y`` and
``Mul/y``) -> the convolutions. Outputs (:meth:`InceptionV3.__call__`):

  pool     [N, 2048]  ``pool_3``: FID, precision / recall
  spatial  [N, 2023]  ``mixed_6/conv``, its first 7 channels, flattened as [17, 17, 7]: sFID
  logits   [N, 1008]  ``pool_3 @ softmax/weights``, without the bias, as the Inception-score
                      code reads them (improved-gan's ``model.py``; guided-diffusion's evaluator)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

SIZE = 299  # ResizeBilinear/size of the graph
SPATIAL_CHANNELS = 7  # channels of mixed_6/conv kept for sFID (guided-diffusion's evaluator)
POOL_DIM, SPATIAL_DIM, NUM_CLASSES = 2048, 17 * 17 * SPATIAL_CHANNELS, 1008
BN_EPSILON = 1e-3  # variance_epsilon of the graph's batch norms (the converter reads it)
INPUT_SHIFT, INPUT_SCALE = 128.0, 1.0 / 128.0  # the graph's Sub/y and Mul/y
INPUT = "Mul"  # the graph's name for the normalised image, the first convolution's input
# Convolutions and matmuls at full float32 precision: a GPU's TF32 would move the features.
_PRECISION = jax.lax.Precision.HIGHEST


# -- the layout ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Conv:
  """Conv2D (no bias) -> BatchNormWithGlobalNormalization -> Relu, named ``name`` in the graph."""
  name: str
  input: str
  kernel: tuple[int, int]  # (height, width)
  features: int
  stride: int = 1
  padding: str = "SAME"  # "SAME" or "VALID", as TensorFlow defines them


@dataclasses.dataclass(frozen=True)
class Pool:
  """MaxPool or AvgPool (``kind`` "max" / "avg"); an average excludes the padding (TF SAME)."""
  name: str
  input: str
  kind: str
  window: int
  stride: int
  padding: str


@dataclasses.dataclass(frozen=True)
class Concat:
  """Concatenation on the channel axis, inputs in this order."""
  name: str
  inputs: tuple[str, ...]


Node = Union[Conv, Pool, Concat]


def _stem() -> list[Node]:
  return [Conv("conv", INPUT, (3, 3), 32, 2, "VALID"),            # 149 x 149
          Conv("conv_1", "conv", (3, 3), 32, 1, "VALID"),         # 147
          Conv("conv_2", "conv_1", (3, 3), 64, 1, "SAME"),        # 147
          Pool("pool", "conv_2", "max", 3, 2, "VALID"),           # 73
          Conv("conv_3", "pool", (1, 1), 80, 1, "VALID"),         # 73
          Conv("conv_4", "conv_3", (3, 3), 192, 1, "VALID"),      # 71
          Pool("pool_1", "conv_4", "max", 3, 2, "VALID")]         # 35


def _block_35(n: str, x: str, pool_features: int) -> list[Node]:
  """mixed, mixed_1, mixed_2 (torchvision: Mixed_5b/c/d, InceptionA): 35 x 35."""
  return [Conv(f"{n}/conv", x, (1, 1), 64),
          Conv(f"{n}/tower/conv", x, (1, 1), 48),
          Conv(f"{n}/tower/conv_1", f"{n}/tower/conv", (5, 5), 64),
          Conv(f"{n}/tower_1/conv", x, (1, 1), 64),
          Conv(f"{n}/tower_1/conv_1", f"{n}/tower_1/conv", (3, 3), 96),
          Conv(f"{n}/tower_1/conv_2", f"{n}/tower_1/conv_1", (3, 3), 96),
          Pool(f"{n}/tower_2/pool", x, "avg", 3, 1, "SAME"),
          Conv(f"{n}/tower_2/conv", f"{n}/tower_2/pool", (1, 1), pool_features),
          Concat(f"{n}/join", (f"{n}/conv", f"{n}/tower/conv_1", f"{n}/tower_1/conv_2",
                               f"{n}/tower_2/conv"))]


def _reduce_35(n: str, x: str) -> list[Node]:
  """mixed_3 (Mixed_6a, InceptionB): 35 -> 17."""
  return [Conv(f"{n}/conv", x, (3, 3), 384, 2, "VALID"),
          Conv(f"{n}/tower/conv", x, (1, 1), 64),
          Conv(f"{n}/tower/conv_1", f"{n}/tower/conv", (3, 3), 96),
          Conv(f"{n}/tower/conv_2", f"{n}/tower/conv_1", (3, 3), 96, 2, "VALID"),
          Pool(f"{n}/pool", x, "max", 3, 2, "VALID"),
          Concat(f"{n}/join", (f"{n}/conv", f"{n}/tower/conv_2", f"{n}/pool"))]


def _block_17(n: str, x: str, c7: int) -> list[Node]:
  """mixed_4 .. mixed_7 (Mixed_6b..e, InceptionC): 17 x 17, factorised 7 x 7 convolutions."""
  t, t1 = f"{n}/tower", f"{n}/tower_1"
  return [Conv(f"{n}/conv", x, (1, 1), 192),
          Conv(f"{t}/conv", x, (1, 1), c7),
          Conv(f"{t}/conv_1", f"{t}/conv", (1, 7), c7),
          Conv(f"{t}/conv_2", f"{t}/conv_1", (7, 1), 192),
          Conv(f"{t1}/conv", x, (1, 1), c7),
          Conv(f"{t1}/conv_1", f"{t1}/conv", (7, 1), c7),
          Conv(f"{t1}/conv_2", f"{t1}/conv_1", (1, 7), c7),
          Conv(f"{t1}/conv_3", f"{t1}/conv_2", (7, 1), c7),
          Conv(f"{t1}/conv_4", f"{t1}/conv_3", (1, 7), 192),
          Pool(f"{n}/tower_2/pool", x, "avg", 3, 1, "SAME"),
          Conv(f"{n}/tower_2/conv", f"{n}/tower_2/pool", (1, 1), 192),
          Concat(f"{n}/join", (f"{n}/conv", f"{t}/conv_2", f"{t1}/conv_4", f"{n}/tower_2/conv"))]


def _reduce_17(n: str, x: str) -> list[Node]:
  """mixed_8 (Mixed_7a, InceptionD): 17 -> 8."""
  t, t1 = f"{n}/tower", f"{n}/tower_1"
  return [Conv(f"{t}/conv", x, (1, 1), 192),
          Conv(f"{t}/conv_1", f"{t}/conv", (3, 3), 320, 2, "VALID"),
          Conv(f"{t1}/conv", x, (1, 1), 192),
          Conv(f"{t1}/conv_1", f"{t1}/conv", (1, 7), 192),
          Conv(f"{t1}/conv_2", f"{t1}/conv_1", (7, 1), 192),
          Conv(f"{t1}/conv_3", f"{t1}/conv_2", (3, 3), 192, 2, "VALID"),
          Pool(f"{n}/pool", x, "max", 3, 2, "VALID"),
          Concat(f"{n}/join", (f"{t}/conv_1", f"{t1}/conv_3", f"{n}/pool"))]


def _block_8(n: str, x: str, pool: str) -> list[Node]:
  """mixed_9, mixed_10 (Mixed_7b/c, InceptionE): 8 x 8; mixed_10's pool branch is a max pool."""
  t, t1 = f"{n}/tower", f"{n}/tower_1"
  return [Conv(f"{n}/conv", x, (1, 1), 320),
          Conv(f"{t}/conv", x, (1, 1), 384),
          Conv(f"{t}/mixed/conv", f"{t}/conv", (1, 3), 384),
          Conv(f"{t}/mixed/conv_1", f"{t}/conv", (3, 1), 384),
          Concat(f"{t}/mixed", (f"{t}/mixed/conv", f"{t}/mixed/conv_1")),
          Conv(f"{t1}/conv", x, (1, 1), 448),
          Conv(f"{t1}/conv_1", f"{t1}/conv", (3, 3), 384),
          Conv(f"{t1}/mixed/conv", f"{t1}/conv_1", (1, 3), 384),
          Conv(f"{t1}/mixed/conv_1", f"{t1}/conv_1", (3, 1), 384),
          Concat(f"{t1}/mixed", (f"{t1}/mixed/conv", f"{t1}/mixed/conv_1")),
          Pool(f"{n}/tower_2/pool", x, pool, 3, 1, "SAME"),
          Conv(f"{n}/tower_2/conv", f"{n}/tower_2/pool", (1, 1), 192),
          Concat(f"{n}/join", (f"{n}/conv", f"{t}/mixed", f"{t1}/mixed", f"{n}/tower_2/conv"))]


def _layout() -> tuple[Node, ...]:
  nodes = _stem()
  nodes += _block_35("mixed", "pool_1", 32)
  nodes += _block_35("mixed_1", "mixed/join", 64)
  nodes += _block_35("mixed_2", "mixed_1/join", 64)
  nodes += _reduce_35("mixed_3", "mixed_2/join")
  nodes += _block_17("mixed_4", "mixed_3/join", 128)
  nodes += _block_17("mixed_5", "mixed_4/join", 160)
  nodes += _block_17("mixed_6", "mixed_5/join", 160)
  nodes += _block_17("mixed_7", "mixed_6/join", 192)
  nodes += _reduce_17("mixed_8", "mixed_7/join")
  nodes += _block_8("mixed_9", "mixed_8/join", "avg")
  nodes += _block_8("mixed_10", "mixed_9/join", "max")
  nodes.append(Pool("pool_3", "mixed_10/join", "avg", 8, 1, "VALID"))
  return tuple(nodes)


LAYOUT: tuple[Node, ...] = _layout()
POOL_TAP, SPATIAL_TAP = "pool_3", "mixed_6/conv"  # graph nodes of the two feature taps


def _in_channels() -> dict[str, int]:
  """Each node's output channels (the image has 3), following the layout."""
  channels = {INPUT: 3}
  for node in LAYOUT:
    if isinstance(node, Conv):
      channels[node.name] = node.features
    elif isinstance(node, Pool):
      channels[node.name] = channels[node.input]
    else:
      channels[node.name] = sum(channels[i] for i in node.inputs)
  return channels


CHANNELS: dict[str, int] = _in_channels()


def weight_shapes() -> dict[str, tuple[int, ...]]:
  """Every variable of the network and its shape, by graph name (the weight file's keys)."""
  shapes = {}
  for node in LAYOUT:
    if isinstance(node, Conv):
      cin = CHANNELS[node.input]
      shapes[f"{node.name}/conv2d_params"] = (*node.kernel, cin, node.features)
      for v in ("beta", "gamma", "moving_mean", "moving_variance"):
        shapes[f"{node.name}/batchnorm/{v}"] = (node.features,)
  shapes["softmax/weights"] = (POOL_DIM, NUM_CLASSES)
  shapes["softmax/biases"] = (NUM_CLASSES,)
  return shapes


# -- the ops -------------------------------------------------------------------------------------
def _legacy_weights(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] interpolation matrix of TF1 ``resize_bilinear`` along one axis.

  TensorFlow's legacy rule (``align_corners=False, half_pixel_centers=False``; kernel
  ``resize_bilinear_op.cc``): output pixel ``i`` samples the input at ``i * (n_in / n_out)``
  (float32 arithmetic), between ``floor`` and ``min(ceil, n_in - 1)``. Unlike PyTorch's and
  TF2's default (half-pixel centres), the grid is anchored at the top-left pixel.
  """
  scale = np.float32(n_in) / np.float32(n_out)
  src = np.arange(n_out, dtype=np.float32) * scale
  lo = np.floor(src)
  frac = (src - lo).astype(np.float32)
  lo = lo.astype(np.int64)
  hi = np.minimum(np.ceil(src).astype(np.int64), n_in - 1)
  w = np.zeros((n_out, n_in), np.float32)
  rows = np.arange(n_out)
  np.add.at(w, (rows, lo), 1.0 - frac)
  np.add.at(w, (rows, hi), frac)
  return w


def resize_bilinear_legacy(images: jax.Array, size: int = SIZE) -> jax.Array:
  """TF1 ``ResizeBilinear`` (legacy grid), as the FID graph resizes its input.

  images: [N, H, W, C] float -> [N, size, size, C] float32. The identity when H = W = size.
  """
  n, h, w, c = images.shape
  x = jnp.asarray(images, jnp.float32)
  if (h, w) == (size, size):
    return x
  wy, wx = jnp.asarray(_legacy_weights(h, size)), jnp.asarray(_legacy_weights(w, size))
  x = jnp.einsum("yh,nhwc->nywc", wy, x, precision=_PRECISION)
  return jnp.einsum("xw,nywc->nyxc", wx, x, precision=_PRECISION).reshape(n, size, size, c)


def resize_bilinear_legacy_host(image: np.ndarray, size: int = SIZE) -> np.ndarray:
  """The same resize on the host, for one image: [H, W, C] -> float32 [size, size, C]."""
  x = np.asarray(image, np.float32)
  if x.shape[:2] == (size, size):
    return x
  wy, wx = _legacy_weights(x.shape[0], size), _legacy_weights(x.shape[1], size)
  planes = np.matmul(np.matmul(wy, np.moveaxis(x, -1, 0)), wx.T)  # [C, size, size], BLAS
  return np.ascontiguousarray(np.moveaxis(planes, 0, -1), np.float32)


def pool(x: jax.Array, kind: str, window: int, stride: int, padding: str) -> jax.Array:
  """TensorFlow's MaxPool / AvgPool on NHWC; an average counts real (unpadded) pixels only.

  x: [N, H, W, C] -> [N, H', W', C].
  """
  dims, strides = (1, window, window, 1), (1, stride, stride, 1)
  pads = jax.lax.padtype_to_pads(x.shape, dims, strides, padding)
  if kind == "max":
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, strides, pads)
  if kind != "avg":
    raise ValueError(f"pool kind {kind!r} is unknown; valid: max, avg")
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, pads)
  ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
  count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, dims, strides, pads)
  return total / count


# -- the modules ---------------------------------------------------------------------------------
class Scope(nnx.Module):
  """A name scope of the graph: holds the layers and scopes below it as attributes."""

  def child(self, name: str) -> "Scope":
    if not hasattr(self, name):
      setattr(self, name, Scope())
    return getattr(self, name)


class BatchNorm(nnx.Module):
  """The graph's ``batchnorm`` constants: ``beta, gamma, moving_mean, moving_variance`` [C]."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    for k in ("beta", "gamma", "moving_mean", "moving_variance"):
      setattr(self, k, nnx.Param(jnp.asarray(arrays[k], jnp.float32)))


class ConvBN(nnx.Module):
  """Conv2D (kernel ``conv2d_params`` [kh, kw, C_in, C_out], no bias) -> batch norm -> ReLU.

  x: [N, H, W, C_in] -> [N, H', W', C_out].
  """

  def __init__(self, node: Conv, arrays: Mapping[str, np.ndarray], epsilon: float):
    self.conv2d_params = nnx.Param(jnp.asarray(arrays["conv2d_params"], jnp.float32))
    self.batchnorm = BatchNorm({k.split("/")[-1]: v for k, v in arrays.items()
                                if k.startswith("batchnorm/")})
    self.stride, self.padding, self.epsilon = node.stride, node.padding, float(epsilon)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jax.lax.conv_general_dilated(
        x, self.conv2d_params[...], (self.stride, self.stride), self.padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=_PRECISION)
    bn = self.batchnorm
    inv = jax.lax.rsqrt(bn.moving_variance[...] + self.epsilon) * bn.gamma[...]
    return jax.nn.relu((y - bn.moving_mean[...]) * inv + bn.beta[...])


class Softmax(nnx.Module):
  """The graph's classifier: ``weights`` [2048, 1008] and ``biases`` [1008]."""

  def __init__(self, weights: np.ndarray, biases: np.ndarray):
    self.weights = nnx.Param(jnp.asarray(weights, jnp.float32))
    self.biases = nnx.Param(jnp.asarray(biases, jnp.float32))


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
  """Random constants of the right names and shapes (float32): He-normal kernels, so the
  activations keep their scale through every layer; unit batch norms; a unit-variance classifier.
  For tests and benchmarks: the features mean nothing."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, shape in weight_shapes().items():
    leaf = name.split("/")[-1]
    if leaf in ("conv2d_params", "weights"):
      fan_in = int(np.prod(shape[:-1]))
      std = np.sqrt((2.0 if leaf == "conv2d_params" else 1.0) / fan_in)
      out[name] = (rng.standard_normal(shape, np.float32) * std).astype(np.float32)
    elif leaf in ("gamma", "moving_variance"):
      out[name] = np.ones(shape, np.float32)
    else:
      out[name] = np.zeros(shape, np.float32)
  return out


def check_weights(weights: Mapping[str, Any], source: str) -> None:
  """Raises ``ValueError`` naming every missing, unexpected or mis-shaped constant."""
  shapes = weight_shapes()
  missing = sorted(set(shapes) - set(weights))
  unexpected = sorted(set(weights) - set(shapes))
  wrong = sorted(f"{k} {tuple(np.shape(weights[k]))} (expected {shapes[k]})"
                 for k in set(shapes) & set(weights) if tuple(np.shape(weights[k])) != shapes[k])
  problems = []
  for what, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong)):
    if items:
      shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
      problems.append(f"{len(items)} {what}: {shown}")
  if problems:
    raise ValueError(f"{source} does not hold the {len(shapes)} constants of the FID "
                     f"Inception-v3 (graph inception-2015-12-05): {'; '.join(problems)}")


class InceptionV3(Scope):
  """The FID Inception-v3 (see the module docstring).

  Args:
    weights: ``{graph name: array}`` as :func:`weight_shapes` lists them (a converted weight
      file, :func:`collage.nn.inception_io.load`); ``None``: :func:`random_weights` (``seed``).
    seed: the seed of the random constants when ``weights`` is None.
    bn_epsilon, input_shift, input_scale: the graph's ``variance_epsilon``, ``Sub/y``, ``Mul/y``
      (the weight file records them).

  Raises:
    ValueError: ``weights`` lacks a constant, has an unknown one, or one of the wrong shape.
  """

  def __init__(self, weights: Mapping[str, np.ndarray] | None = None, *, seed: int = 0,
               bn_epsilon: float = BN_EPSILON, input_shift: float = INPUT_SHIFT,
               input_scale: float = INPUT_SCALE):
    weights = random_weights(seed) if weights is None else weights
    check_weights(weights, "the weights given to InceptionV3")
    self.input_shift, self.input_scale = float(input_shift), float(input_scale)
    for node in LAYOUT:
      if isinstance(node, Conv):
        *scopes, leaf = node.name.split("/")
        parent = functools.reduce(Scope.child, scopes, self)
        prefix = node.name + "/"
        arrays = {k[len(prefix):]: v for k, v in weights.items()
                  if k.startswith(prefix) and k.count("/") - prefix.count("/") <= 1}
        setattr(parent, leaf, ConvBN(node, arrays, bn_epsilon))
    self.softmax = Softmax(weights["softmax/weights"], weights["softmax/biases"])

  def layer(self, name: str) -> ConvBN:
    """The convolution named ``name`` in the graph, e.g. ``"mixed_6/conv"``."""
    return functools.reduce(getattr, name.split("/"), self)

  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """images: [N, H, W, 3] float in [0, 255] (any H, W) -> the three taps (module docstring)."""
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"InceptionV3 takes images [N, H, W, 3] in [0, 255], got {images.shape}")
    x = resize_bilinear_legacy(images, SIZE)
    out: dict[str, Any] = {INPUT: (x - self.input_shift) * self.input_scale}
    for node in LAYOUT:
      if isinstance(node, Conv):
        out[node.name] = self.layer(node.name)(out[node.input])
      elif isinstance(node, Pool):
        out[node.name] = pool(out[node.input], node.kind, node.window, node.stride, node.padding)
      else:
        out[node.name] = jnp.concatenate([out[i] for i in node.inputs], axis=-1)
    pooled = out[POOL_TAP].reshape(images.shape[0], POOL_DIM)
    spatial = out[SPATIAL_TAP][..., :SPATIAL_CHANNELS].reshape(images.shape[0], SPATIAL_DIM)
    logits = jnp.dot(pooled, self.softmax.weights[...], precision=_PRECISION)
    return {"pool": pooled, "spatial": spatial, "logits": logits}
