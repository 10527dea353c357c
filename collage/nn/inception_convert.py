"""Converts TensorFlow's published FID Inception graph into the project's weight file.

    python -m collage.nn.inception_convert inception-2015-12-05.tgz inception_fid.npz
    python -m collage.nn.inception_convert classify_image_graph_def.pb inception_fid.npz

The input is ``classify_image_graph_def.pb`` (a frozen GraphDef: every weight is a ``Const``
node), alone or inside ``inception-2015-12-05.tgz``. Before anything is written, the graph is
checked against :data:`collage.nn.inception.LAYOUT` node by node: every convolution's kernel
shape, strides, padding and input; its batch norm's inputs and attributes; every pool's type,
window, strides, padding and input; every concatenation's inputs in order; the input path
(``ResizeBilinear`` to 299 x 299 on the legacy grid, ``Sub``, ``Mul``); the classifier. Any
difference stops the conversion with one message listing the differences (at most 10). The output
is :mod:`collage.nn.inception_io`'s file, with the graph's ``variance_epsilon``, ``Sub/y`` and
``Mul/y``; the command prints both files' sha256 (see ``third_party/inception/README.md``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tarfile
from typing import Any, Sequence

import numpy as np

from collage.nn import inception, inception_io

GRAPH_MEMBER = "classify_image_graph_def.pb"
_PASSTHROUGH = ("Identity", "CheckNumerics")  # ops between a batch norm and its ReLU
_MAX_SHOWN = 10


class ConversionError(ValueError):
  """The graph file is unreadable or is not the FID Inception graph (the message says where)."""


def read_graph_bytes(path: str) -> tuple[bytes, str]:
  """The GraphDef bytes of a ``.pb`` file or of ``inception-2015-12-05.tgz``, and a label."""
  if not os.path.isfile(path):
    raise ConversionError(f"{path} does not exist; {inception_io.HOW_TO_GET}")
  if tarfile.is_tarfile(path):
    with tarfile.open(path) as tar:
      names = [m for m in tar.getmembers() if os.path.basename(m.name) == GRAPH_MEMBER]
      if not names:
        raise ConversionError(f"{path} is a tar archive without {GRAPH_MEMBER}")
      data = tar.extractfile(names[0]).read()
    return data, f"{os.path.basename(path)}:{GRAPH_MEMBER}"
  with open(path, "rb") as f:
    return f.read(), os.path.basename(path)


class _Graph:
  """A frozen GraphDef's nodes by name, with the checks the conversion needs."""

  def __init__(self, data: bytes, label: str):
    from tensorflow.core.framework import graph_pb2  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._make_ndarray = tf.make_ndarray
    graph = graph_pb2.GraphDef()
    try:
      graph.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError
      raise ConversionError(f"{label} is not a TensorFlow GraphDef (truncated or another "
                            f"file: {e})") from None
    self.nodes = {n.name: n for n in graph.node}
    if not self.nodes:
      raise ConversionError(f"{label} is not a TensorFlow GraphDef (no nodes)")
    self.label = label
    self.problems: list[str] = []

  def problem(self, message: str) -> None:
    self.problems.append(message)

  def node(self, name: str, ops: Sequence[str]) -> Any:
    n = self.nodes.get(name)
    if n is None:
      self.problem(f"node {name!r} is missing")
    elif n.op not in ops:
      self.problem(f"node {name!r} is a {n.op}, expected {' or '.join(ops)}")
      return None
    return n

  def inputs(self, node: Any) -> list[str]:
    """Data inputs (no control inputs), without ``:0``."""
    return [i.split(":")[0] for i in node.input if not i.startswith("^")]

  def resolve(self, name: str, through: Sequence[str] = _PASSTHROUGH) -> str:
    """The first node above ``name`` that is not a pass-through op."""
    seen = 0
    while name in self.nodes and self.nodes[name].op in through and seen < 16:
      ins = self.inputs(self.nodes[name])
      if not ins:
        break
      name, seen = ins[0], seen + 1
    return name

  def const(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
    n = self.node(name, ("Const",))
    if n is None:
      return None
    value = self._make_ndarray(n.attr["value"].tensor)
    if shape is not None and tuple(value.shape) != tuple(shape):
      self.problem(f"constant {name!r} has shape {tuple(value.shape)}, expected {tuple(shape)}")
      return None
    return value

  def attr(self, node: Any, key: str, default: Any = None) -> Any:
    if key not in node.attr:
      return default
    value = node.attr[key]
    kind = value.WhichOneof("value")
    if kind == "list":
      return list(value.list.i) or [s.decode() for s in value.list.s]
    if kind == "s":
      return value.s.decode()
    return getattr(value, kind)

  def expect_input(self, node: Any, index: int, want: str, through=_PASSTHROUGH) -> None:
    ins = self.inputs(node)
    got = self.resolve(ins[index], through) if index < len(ins) else None
    if got != want:
      self.problem(f"node {node.name!r} input {index} is {got!r}, expected {want!r}")

  def expect_window(self, node: Any, window: int, stride: int, padding: str,
                    equivalent_paddings: Sequence[str] = ()) -> None:
    strides = self.attr(node, "strides")
    if strides != [1, stride, stride, 1]:
      self.problem(f"node {node.name!r} has strides {strides}, expected {[1, stride, stride, 1]}")
    got = self.attr(node, "padding")
    if got != padding and got not in equivalent_paddings:
      self.problem(f"node {node.name!r} has padding {got!r}, expected {padding!r}")
    if window:
      ksize = self.attr(node, "ksize")
      if ksize != [1, window, window, 1]:
        self.problem(f"node {node.name!r} has ksize {ksize}, expected {[1, window, window, 1]}")
    if self.attr(node, "data_format", "NHWC") != "NHWC":
      self.problem(f"node {node.name!r} is not NHWC")


def _scalar(g: _Graph, name: str) -> float | None:
  value = g.const(name)
  if value is not None and value.size != 1:
    g.problem(f"constant {name!r} has shape {value.shape}, expected one value")
    return None
  return None if value is None else float(np.ravel(value)[0])


def _check_input_path(g: _Graph) -> tuple[float, float]:
  """ResizeBilinear (legacy grid) to 299 x 299 -> Sub -> Mul; returns (Sub/y, Mul/y)."""
  resize = g.node("ResizeBilinear", ("ResizeBilinear",))
  if resize is not None:
    size = g.const(g.resolve(g.inputs(resize)[1]) if len(g.inputs(resize)) > 1 else "?")
    if size is not None and list(np.ravel(size)) != [inception.SIZE, inception.SIZE]:
      g.problem(f"ResizeBilinear resizes to {list(np.ravel(size))}, expected 299 x 299")
    for key in ("align_corners", "half_pixel_centers"):
      if g.attr(resize, key, False):
        g.problem(f"ResizeBilinear has {key}=True; the FID graph uses the legacy grid")
  shift = scale = None
  sub, mul = g.node("Sub", ("Sub",)), g.node("Mul", ("Mul",))
  if sub is not None:
    g.expect_input(sub, 0, "ResizeBilinear")
    shift = _scalar(g, g.resolve(g.inputs(sub)[1]))
  if mul is not None:
    g.expect_input(mul, 0, "Sub")
    scale = _scalar(g, g.resolve(g.inputs(mul)[1]))
  return (float(shift) if shift is not None else inception.INPUT_SHIFT,
          float(scale) if scale is not None else inception.INPUT_SCALE)


def _check_conv(g: _Graph, node: inception.Conv, shapes, arrays, epsilons, scaled) -> None:
  relu = g.node(node.name, ("Relu",))
  if relu is not None:
    g.expect_input(relu, 0, f"{node.name}/batchnorm")
  bn = g.node(f"{node.name}/batchnorm", ("BatchNormWithGlobalNormalization",))
  if bn is not None:
    want = [f"{node.name}/Conv2D"] + [f"{node.name}/batchnorm/{v}" for v in
                                      ("moving_mean", "moving_variance", "beta", "gamma")]
    for i, w in enumerate(want):
      g.expect_input(bn, i, w)
    epsilons.add(float(g.attr(bn, "variance_epsilon", float("nan"))))
    scaled[node.name] = bool(g.attr(bn, "scale_after_normalization", True))
  conv = g.node(f"{node.name}/Conv2D", ("Conv2D",))
  if conv is not None:
    g.expect_input(conv, 0, node.input)
    g.expect_input(conv, 1, f"{node.name}/conv2d_params")
    # A 1 x 1, stride-1 convolution computes the same with either padding.
    same_either = ("SAME", "VALID") if node.kernel == (1, 1) and node.stride == 1 else ()
    g.expect_window(conv, 0, node.stride, node.padding, same_either)
  for key in (f"{node.name}/conv2d_params",
              *(f"{node.name}/batchnorm/{v}" for v in
                ("beta", "gamma", "moving_mean", "moving_variance"))):
    value = g.const(key, shapes[key])
    if value is not None:
      arrays[key] = value


def convert_graph(data: bytes, label: str) -> tuple[dict[str, np.ndarray], dict[str, float]]:
  """GraphDef bytes -> (constants by graph name, the graph's scalars).

  Raises:
    ConversionError: the bytes are not a GraphDef, or the graph differs from the layout (the
      message lists the differences).
  """
  g = _Graph(data, label)
  shapes = inception.weight_shapes()
  arrays: dict[str, np.ndarray] = {}
  epsilons: set[float] = set()
  scaled: dict[str, bool] = {}
  shift, scale = _check_input_path(g)
  for node in inception.LAYOUT:
    if isinstance(node, inception.Conv):
      _check_conv(g, node, shapes, arrays, epsilons, scaled)
    elif isinstance(node, inception.Pool):
      op = {"max": "MaxPool", "avg": "AvgPool"}[node.kind]
      n = g.node(node.name, (op,))
      if n is not None:
        g.expect_input(n, 0, node.input)
        g.expect_window(n, node.window, node.stride, node.padding)
    else:
      n = g.node(node.name, ("Concat", "ConcatV2"))
      if n is not None:
        ins = g.inputs(n)
        axis_at, data_ins = (0, ins[1:]) if n.op == "Concat" else (len(ins) - 1, ins[:-1])
        axis = _scalar(g, g.resolve(ins[axis_at])) if ins else None
        if axis is not None and int(axis) not in (3, -1):
          g.problem(f"node {node.name!r} concatenates on axis {int(axis)}, expected 3")
        got = [g.resolve(i) for i in data_ins]
        if got != list(node.inputs):
          g.problem(f"node {node.name!r} joins {got}, expected {list(node.inputs)}")
  for key in ("softmax/weights", "softmax/biases"):
    value = g.const(key, shapes[key])
    if value is not None:
      arrays[key] = value
  matmul = g.node("softmax/logits/MatMul", ("MatMul",))
  if matmul is not None:
    g.expect_input(matmul, 0, inception.POOL_TAP, through=(*_PASSTHROUGH, "Reshape"))
    g.expect_input(matmul, 1, "softmax/weights")
  if len(epsilons) > 1:
    g.problem(f"batch norms use different variance_epsilon values {sorted(epsilons)}")
  if g.problems:
    shown = "; ".join(g.problems[:_MAX_SHOWN])
    more = f" (and {len(g.problems) - _MAX_SHOWN} more)" if len(g.problems) > _MAX_SHOWN else ""
    raise ConversionError(f"{label} is not the FID Inception graph (inception-2015-12-05): "
                          f"{len(g.problems)} differences from the layout: {shown}{more}")
  for name, on in scaled.items():  # gamma is ignored where the graph does not scale
    if not on:
      arrays[f"{name}/batchnorm/gamma"] = np.ones_like(arrays[f"{name}/batchnorm/gamma"])
  arrays = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
  return arrays, {"bn_epsilon": epsilons.pop(), "input_shift": shift, "input_scale": scale}


def convert(graph_path: str, out_path: str) -> tuple[str, str]:
  """Converts ``graph_path`` (.pb or .tgz) to the weight file ``out_path``.

  Returns:
    (sha256 of the graph bytes, sha256 of the written weight file).
  """
  data, label = read_graph_bytes(graph_path)
  source_sha = hashlib.sha256(data).hexdigest()
  arrays, scalars = convert_graph(data, label)
  out_sha = inception_io.save(out_path, arrays, source=f"{label} sha256={source_sha}", **scalars)
  return source_sha, out_sha


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(
      prog="python -m collage.nn.inception_convert",
      description="TensorFlow's FID Inception graph (classify_image_graph_def.pb or "
                  "inception-2015-12-05.tgz) -> the project's Inception weight file.")
  p.add_argument("graph", help="classify_image_graph_def.pb, or the .tgz that holds it")
  p.add_argument("out", help="the weight file to write (.npz)")
  p.add_argument("--force", action="store_true", help="overwrite an existing output")
  args = p.parse_args(argv)
  if os.path.exists(args.out) and not args.force:
    print(f"error: {args.out} exists; pass --force to overwrite it", file=sys.stderr)
    return 2
  try:
    source_sha, out_sha = convert(args.graph, args.out)
  except ConversionError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"graph   {args.graph}\n  sha256 {source_sha}")
  print(f"weights {args.out}\n  sha256 {out_sha}")
  print(f"use it with --config.evals.NAME.weights={args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
