"""launch/distill_codec_encoder.py: a cheaper encoder learns the teacher's code; the decoder
side is the teacher's, unchanged."""

import os
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from launch import distill_codec_encoder  # noqa: E402

from collage.codec import neural  # noqa: E402
from collage.nn import neural_collage as hn  # noqa: E402
from collage.nn import neural_collage_io  # noqa: E402

TINY = dict(tile=16, luma_range=4, luma_domain=8, luma_stride=8, luma_aux=3, chroma_range=8,
            chroma_aux=2, width=8, depth=2, hidden=16, support=15, decode_steps=4,
            rate_lams=(0.001, 0.01), context_model=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("distill")
  teacher = neural_collage_io.random_model(hn.ModelConfig(**TINY), seed=3)
  teacher.encoder.head_w.bias[...] = teacher.encoder.head_w.bias[...] + 1.0
  neural_collage_io.save_model(teacher, str(root / "teacher"), {"step": 0})
  rng = np.random.default_rng(0)
  os.makedirs(root / "images")
  for i in range(2):
    img = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(root / "images" / f"{i}.png")
  return root


def test_distilled_student_keeps_the_decoder_and_codes_files(setup):
  out = setup / "student"
  distill_codec_encoder.main(["--teacher", str(setup / "teacher"), "--depth", "1", "--steps",
                              "3", "--batch", "4", "--images", str(setup / "images"),
                              "--out", str(out)])
  teacher, _ = neural_collage_io.load_model(str(setup / "teacher"))
  student, meta = neural_collage_io.load_model(str(out))
  assert student.cfg.depth == 1 and len(student.encoder.blocks) == 1
  assert "distilled" in meta and meta["init_from"] == "teacher"
  t, s = neural_collage_io.flat_params(teacher), neural_collage_io.flat_params(student)
  decoder_side = [k for k in s if "['encoder']" not in k]
  assert decoder_side
  for k in decoder_side:  # copied (saved in half precision)
    np.testing.assert_array_equal(s[k], t[k].astype(np.float16).astype(np.float32))
  assert any(not np.array_equal(s[k], t[k]) for k in s if "['encoder']" in k)
  assert not any("['blocks'][1]" in k for k in s)
  codec = neural.NeuralCollageCodec(model=str(out))
  img = np.asarray(Image.open(setup / "images" / "0.png"))
  data = codec.compress(img, 50)
  assert codec.decompress(data).shape == img.shape


def test_kodak_and_bad_depths_are_refused(setup, tmp_path):
  kodak = tmp_path / "kodak"
  os.makedirs(kodak)
  with pytest.raises(SystemExit, match="Kodak is the test set"):
    distill_codec_encoder.main(["--teacher", str(setup / "teacher"), "--images", str(kodak),
                                "--out", str(tmp_path / "x")])
  with pytest.raises(SystemExit, match="--depth must be in 0..1"):
    distill_codec_encoder.main(["--teacher", str(setup / "teacher"), "--depth", "2",
                                "--images", str(setup / "images"), "--out", str(tmp_path / "x")])
