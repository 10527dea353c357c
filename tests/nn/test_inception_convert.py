"""The converter: a graph of the published layout -> the weight file, checked node by node; the
JAX network computes what TensorFlow computes from the same graph."""

import io
import os
import tarfile

import jax
import numpy as np
import pytest

from collage.evals import features
from collage.nn import inception, inception_convert, inception_io
from collage.train import mesh
from tests.nn import inception_graph


@pytest.fixture(scope="module")
def weights():
  w = inception.random_weights(1)
  rng = np.random.default_rng(2)  # batch norms that do something
  for k in w:
    if k.endswith(("moving_mean", "beta")):
      w[k] = (0.1 * rng.standard_normal(w[k].shape)).astype(np.float32)
    elif k.endswith(("moving_variance", "gamma")):
      w[k] = rng.uniform(0.5, 1.5, w[k].shape).astype(np.float32)
  return w


@pytest.fixture(scope="module")
def graph(weights):
  return inception_graph.graph_def(weights)


@pytest.fixture(scope="module")
def graph_file(graph, tmp_path_factory):
  path = tmp_path_factory.mktemp("graph") / inception_convert.GRAPH_MEMBER
  path.write_bytes(graph.SerializeToString())
  return path


def test_converter_round_trips_and_network_matches_tensorflow(graph, graph_file, weights,
                                                              tmp_path):
  src_sha, out_sha = inception_convert.convert(str(graph_file), str(tmp_path / "a.npz"))
  loaded = inception_io.load(tmp_path / "a.npz")
  assert loaded.sha256 == out_sha and src_sha in loaded.source
  assert loaded.bn_epsilon == pytest.approx(1e-3) and loaded.input_shift == 128.0
  assert loaded.input_scale == 1 / 128
  assert loaded.arrays.keys() == weights.keys()
  for k, v in weights.items():
    np.testing.assert_array_equal(loaded.arrays[k], v, err_msg=k)
  images = np.random.default_rng(3).uniform(0, 255, (1, 40, 56, 3)).astype(np.float32)
  want = inception_graph.run(graph, images)
  extractor = features.FeatureExtractor(loaded, mesh.make_mesh(jax.devices()[:1]), 1)
  got = jax.device_get(extractor(images))
  for tap in ("pool", "spatial", "logits"):
    assert got[tap].shape == want[tap].shape
    scale = np.abs(want[tap]).max()
    np.testing.assert_allclose(np.asarray(got[tap]), want[tap], atol=1e-5 * scale, err_msg=tap)


def test_tgz_input_and_the_command_line(graph_file, tmp_path, capsys):
  tgz = tmp_path / "inception-2015-12-05.tar"  # the published .tgz, less the (slow) gzip
  with tarfile.open(tgz, "w") as tar:
    tar.add(graph_file, arcname=inception_convert.GRAPH_MEMBER)
  out = tmp_path / "w.npz"
  assert inception_convert.main([str(tgz), str(out)]) == 0
  printed = capsys.readouterr().out
  assert inception_io.load(out).sha256 in printed and "--config.evals.NAME.weights=" in printed
  assert inception_convert.main([str(tgz), str(out)]) == 2, "an existing output is kept"
  assert "exists" in capsys.readouterr().err


def _mutated(graph, **changes):
  g = type(graph)()
  g.CopyFrom(graph)
  nodes = {n.name: n for n in g.node}
  for name, fn in changes.items():
    fn(nodes[name.replace("__", "/")], g)
  return g.SerializeToString()


def test_a_graph_of_another_layout_is_refused_naming_each_difference(graph):
  def valid(n, _):
    n.attr["padding"].s = b"VALID"

  def swap_join(n, _):
    n.input[1], n.input[2] = n.input[2], n.input[1]

  def drop(n, g):
    g.node.remove(n)

  data = _mutated(graph, mixed_6__tower__conv_1__Conv2D=valid, mixed_2__join=swap_join,
                  mixed_9__tower_2__pool=drop)
  with pytest.raises(inception_convert.ConversionError) as e:
    inception_convert.convert_graph(data, "bad.pb")
  msg = str(e.value)
  assert "\n" not in msg and "3 differences" in msg
  assert "'mixed_6/tower/conv_1/Conv2D' has padding 'VALID', expected 'SAME'" in msg
  assert "'mixed_2/join' joins" in msg and "'mixed_9/tower_2/pool' is missing" in msg


def test_a_kernel_of_the_wrong_shape_is_refused(graph, weights):
  import tensorflow as tf

  def shrink(n, _):
    n.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.zeros((3, 3, 3, 16), np.float32)))

  with pytest.raises(inception_convert.ConversionError,
                     match=r"'conv/conv2d_params' has shape \(3, 3, 3, 16\), expected "
                           r"\(3, 3, 3, 32\)"):
    inception_convert.convert_graph(_mutated(graph, conv__conv2d_params=shrink), "bad.pb")


def test_truncated_or_foreign_graph_files_are_refused(graph_file, tmp_path):
  data = graph_file.read_bytes()
  cut = tmp_path / "cut.pb"
  cut.write_bytes(data[: len(data) // 3])
  with pytest.raises(inception_convert.ConversionError, match="not a TensorFlow GraphDef|not the"):
    inception_convert.convert(str(cut), str(tmp_path / "out.npz"))
  assert not (tmp_path / "out.npz").exists()
  with pytest.raises(inception_convert.ConversionError, match="does not exist.*inception_convert"):
    inception_convert.convert(str(tmp_path / "nothing.pb"), str(tmp_path / "out.npz"))
  empty_tar = tmp_path / "other.tgz"
  with tarfile.open(empty_tar, "w:gz") as tar:
    info = tarfile.TarInfo("readme.txt")
    tar.addfile(info, io.BytesIO(b""))
  with pytest.raises(inception_convert.ConversionError, match="without classify_image_graph_def"):
    inception_convert.convert(str(empty_tar), str(tmp_path / "out.npz"))
  assert not os.path.exists(tmp_path / "out.npz")
