"""The FID Inception-v3 in JAX: tap shapes, the graph's resize and pools, the layout table."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.nn import inception

LAYOUT_TSV = os.path.join(os.path.dirname(__file__), "..", "..", "third_party", "inception",
                          "layout.tsv")


def test_random_network_gives_the_documented_tap_shapes():
  net = inception.InceptionV3(seed=0)
  out = jax.eval_shape(net, jax.ShapeDtypeStruct((3, 32, 48, 3), jnp.float32))
  assert out["pool"].shape == (3, 2048) and inception.POOL_DIM == 2048
  assert out["spatial"].shape == (3, 2023) and inception.SPATIAL_DIM == 7 * 17 * 17
  assert out["logits"].shape == (3, 1008)
  shapes = inception.weight_shapes()
  assert len(shapes) == 472 and sum(int(np.prod(s)) for s in shapes.values()) == 23_885_392
  assert shapes["mixed_6/conv/conv2d_params"] == (1, 1, 768, 192)
  assert shapes["mixed_4/tower/conv_1/conv2d_params"] == (1, 7, 128, 128)


def test_grayscale_or_wrong_rank_input_is_refused():
  with pytest.raises(ValueError, match=r"\[N, H, W, 3\] in \[0, 255\]"):
    jax.eval_shape(inception.InceptionV3(seed=0), jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32))


@pytest.mark.parametrize("h,w", [(4, 4), (37, 50), (512, 300), (299, 299)])
def test_resize_is_tensorflow1_legacy_bilinear(h, w):
  import tensorflow as tf
  x = np.random.default_rng(h).uniform(0, 255, (1, h, w, 3)).astype(np.float32)
  want = tf.compat.v1.image.resize_bilinear(x, [299, 299], align_corners=False,
                                            half_pixel_centers=False).numpy()
  np.testing.assert_allclose(np.asarray(inception.resize_bilinear_legacy(x)), want, atol=2e-3)
  np.testing.assert_allclose(inception.resize_bilinear_legacy_host(x[0]), want[0], atol=2e-3)


def test_pools_match_tensorflow_average_excludes_padding():
  import tensorflow as tf
  x = np.random.default_rng(0).normal(size=(2, 9, 9, 4)).astype(np.float32)
  for padding in ("SAME", "VALID"):
    for stride in (1, 2):
      np.testing.assert_allclose(inception.pool(x, "avg", 3, stride, padding),
                                 tf.nn.avg_pool2d(x, 3, stride, padding).numpy(), atol=1e-6)
      np.testing.assert_allclose(inception.pool(x, "max", 3, stride, padding),
                                 tf.nn.max_pool2d(x, 3, stride, padding).numpy(), atol=1e-6)


def layout_rows():
  rows = ["node\top\tinput\tkernel\tfeatures\tstride\tpadding\toutput_channels"]
  for n in inception.LAYOUT:
    if isinstance(n, inception.Conv):
      rows.append(f"{n.name}\tconv+bn+relu\t{n.input}\t{n.kernel[0]}x{n.kernel[1]}\t{n.features}"
                  f"\t{n.stride}\t{n.padding}\t{inception.CHANNELS[n.name]}")
    elif isinstance(n, inception.Pool):
      rows.append(f"{n.name}\t{n.kind}pool\t{n.input}\t{n.window}x{n.window}\t-\t{n.stride}"
                  f"\t{n.padding}\t{inception.CHANNELS[n.name]}")
    else:
      rows.append(f"{n.name}\tconcat\t{','.join(n.inputs)}\t-\t-\t-\t-"
                  f"\t{inception.CHANNELS[n.name]}")
  return "\n".join(rows) + "\n"


def test_third_party_layout_table_is_the_layout_the_code_runs():
  with open(LAYOUT_TSV, encoding="utf-8") as f:
    table = f.read()
  assert table == layout_rows(), (
      "third_party/inception/layout.tsv differs from collage.nn.inception.LAYOUT; regenerate it "
      "with `python -c 'from tests.nn.test_inception import layout_rows; "
      "print(layout_rows(), end=\"\")' > third_party/inception/layout.tsv`")
