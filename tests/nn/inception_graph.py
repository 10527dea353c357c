"""A synthetic frozen GraphDef with the FID Inception graph's layout and any constants.

The published ``classify_image_graph_def.pb`` cannot be downloaded in the tests, so they build a
graph of the same structure (node names, ops, attributes, pass-through nodes between a batch
norm and its ReLU) from :data:`collage.nn.inception.LAYOUT` and random constants, and run it with
TensorFlow's own kernels. The converter must take it, and the JAX network must compute what
TensorFlow computes from it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from collage.nn import inception


def graph_def(weights: Mapping[str, np.ndarray], *, epsilon: float = inception.BN_EPSILON,
              scale_after_normalization: bool = True):
  """A ``GraphDef`` whose input is the placeholder ``ExpandDims`` [N, H, W, 3] in [0, 255]."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.core.framework import (  # pylint: disable=g-import-not-at-top
      attr_value_pb2, graph_pb2, tensor_pb2, tensor_shape_pb2)

  g = graph_pb2.GraphDef()
  g.versions.producer = 8  # BatchNormWithGlobalNormalization is refused from version 9 on
  f32 = tf.float32.as_datatype_enum

  def node(name, op, inputs=(), **attrs):
    n = g.node.add(name=name, op=op)
    n.input.extend(inputs)
    for k, v in attrs.items():
      a = n.attr[k]
      if isinstance(v, attr_value_pb2.AttrValue):
        a.CopyFrom(v)
      elif isinstance(v, bool):
        a.b = v
      elif isinstance(v, int):
        a.i = v
      elif isinstance(v, float):
        a.f = v
      elif isinstance(v, str):
        a.s = v.encode()
      elif isinstance(v, list):
        a.list.i.extend(v)
    return n

  def dtype(t):
    return attr_value_pb2.AttrValue(type=t)

  def const(name, value, np_dtype=np.float32):
    value = np.array(value, np_dtype, order="C")  # 0-d stays 0-d
    proto = tensor_pb2.TensorProto(dtype=tf.as_dtype(value.dtype).as_datatype_enum,
                                   tensor_content=value.tobytes())
    proto.tensor_shape.dim.extend(
        tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in value.shape)
    node(name, "Const", dtype=dtype(proto.dtype), value=attr_value_pb2.AttrValue(tensor=proto))

  node("ExpandDims", "Placeholder", dtype=dtype(f32))
  const("ResizeBilinear/size", [inception.SIZE, inception.SIZE], np.int32)
  node("ResizeBilinear", "ResizeBilinear", ["ExpandDims", "ResizeBilinear/size"], T=dtype(f32),
       align_corners=False)
  const("Sub/y", inception.INPUT_SHIFT)
  node("Sub", "Sub", ["ResizeBilinear", "Sub/y"], T=dtype(f32))
  const("Mul/y", inception.INPUT_SCALE)
  node("Mul", "Mul", ["Sub", "Mul/y"], T=dtype(f32))
  for n in inception.LAYOUT:
    if isinstance(n, inception.Conv):
      const(f"{n.name}/conv2d_params", weights[f"{n.name}/conv2d_params"])
      node(f"{n.name}/Conv2D", "Conv2D", [n.input, f"{n.name}/conv2d_params"], T=dtype(f32),
           strides=[1, n.stride, n.stride, 1], padding=n.padding, data_format="NHWC")
      stats = ("moving_mean", "moving_variance", "beta", "gamma")
      for v in stats:
        const(f"{n.name}/batchnorm/{v}", weights[f"{n.name}/batchnorm/{v}"])
      node(f"{n.name}/batchnorm", "BatchNormWithGlobalNormalization",
           [f"{n.name}/Conv2D"] + [f"{n.name}/batchnorm/{v}" for v in stats], T=dtype(f32),
           variance_epsilon=float(epsilon), scale_after_normalization=scale_after_normalization)
      node(f"{n.name}/CheckNumerics", "CheckNumerics", [f"{n.name}/batchnorm"], T=dtype(f32),
           message="batchnorm")
      node(f"{n.name}/control_dependency", "Identity",
           [f"{n.name}/batchnorm", f"^{n.name}/CheckNumerics"], T=dtype(f32))
      node(n.name, "Relu", [f"{n.name}/control_dependency"], T=dtype(f32))
    elif isinstance(n, inception.Pool):
      node(n.name, {"max": "MaxPool", "avg": "AvgPool"}[n.kind], [n.input], T=dtype(f32),
           ksize=[1, n.window, n.window, 1], strides=[1, n.stride, n.stride, 1],
           padding=n.padding, data_format="NHWC")
    else:
      const(f"{n.name}/concat_dim", 3, np.int32)
      node(n.name, "Concat", [f"{n.name}/concat_dim", *n.inputs], N=len(n.inputs), T=dtype(f32))
  const("pool_3/_reshape/shape", [-1, inception.POOL_DIM], np.int32)
  node("pool_3/_reshape", "Reshape", ["pool_3", "pool_3/_reshape/shape"], T=dtype(f32),
       Tshape=dtype(tf.int32.as_datatype_enum))
  const("softmax/weights", weights["softmax/weights"])
  const("softmax/biases", weights["softmax/biases"])
  node("softmax/logits/MatMul", "MatMul", ["pool_3/_reshape", "softmax/weights"], T=dtype(f32),
       transpose_a=False, transpose_b=False)
  node("softmax/logits", "BiasAdd", ["softmax/logits/MatMul", "softmax/biases"], T=dtype(f32))
  node("softmax", "Softmax", ["softmax/logits"], T=dtype(f32))
  return g


def run(graph, images: np.ndarray) -> dict[str, np.ndarray]:
  """TensorFlow's outputs of the graph: the same taps as :class:`InceptionV3` returns."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default() as tf_graph:
    tf.compat.v1.import_graph_def(graph, name="")
    with tf.compat.v1.Session(graph=tf_graph) as sess:
      pool, spatial, logits = sess.run(
          ["pool_3:0", "mixed_6/conv:0", "softmax/logits/MatMul:0"],
          {"ExpandDims:0": np.asarray(images, np.float32)})
  n = len(images)
  return {"pool": pool.reshape(n, -1),
          "spatial": spatial[..., :inception.SPATIAL_CHANNELS].reshape(n, -1), "logits": logits}
