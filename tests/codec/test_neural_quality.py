"""The neural codec's quality policy (:mod:`collage.codec.neural_quality`): the model a
quality picks, the mix trade-off lam, and the model sets a policy accepts."""

import json
import os
import shutil

import pytest

from collage.codec import base, neural, neural_quality
from tests.codec.neural_helpers import make_image, save_model


def test_quality_selects_models_lowest_rate_first(codec, models):
  assert [m.lam for m in codec.models] == [0.001, 0.1]
  assert codec.setting(1).model is codec.models[0]
  assert codec.setting(50).model is codec.models[0]
  assert codec.setting(51).model is codec.models[1]
  assert codec.setting(100).model is codec.models[1]
  for bad in (0, 101, 2.5, True):
    with pytest.raises(base.CodecError, match="quality"):
      codec.setting(bad)
  single = neural.NeuralCollageCodec(model=f"{models}/hi")
  assert len(single.models) == 1


def test_order_rank_overrides_lam_across_architectures(tmp_path):
  """Models of different architectures rank by their meta "order" when all have one."""
  big = save_model(tmp_path / "a", 0, 0.001, luma_aux=5)
  small = save_model(tmp_path / "b", 1, 0.1)
  for path, order in ((big, 2), (small, 1)):
    meta_file = f"{path}/model.json"
    with open(meta_file) as f:
      meta = json.load(f)
    meta["meta"]["order"] = order
    with open(meta_file, "w") as f:
      json.dump(meta, f)
  codec = neural.NeuralCollageCodec(model=str(tmp_path))
  assert [m.lam for m in codec.models] == [0.1, 0.001]
  assert codec.setting(1).model.lam == 0.1


def test_mix_quality_sets_a_geometric_lam(models):
  mixer = neural.NeuralCollageCodec(model=models, mix=True)
  lams = [mixer.setting(q).lam for q in (1, 25, 50, 75, 100)]
  assert lams[0] == pytest.approx(0.001)
  assert lams[-1] == pytest.approx(neural_quality.MIX_LAM_TOP * 0.1)
  assert all(a < b for a, b in zip(lams, lams[1:]))
  with pytest.raises(base.CodecError, match="quality"):
    mixer.setting(0)
  with pytest.raises(base.CodecError, match="mix must be True or False"):
    neural.NeuralCollageCodec(model=models, mix="yes")


def test_mix_needs_entropy_models_of_one_tile_size(tmp_path):
  save_model(tmp_path / "bp" / "a", 2, 1.0, coding="bitpack", bitpack_bits=5)
  with pytest.raises(base.CodecError, match="entropy-coded"):
    neural.NeuralCollageCodec(model=str(tmp_path / "bp"), mix=True).compress(
        make_image(16, 16, 3))
  save_model(tmp_path / "two" / "a", 0, 0.01)
  save_model(tmp_path / "two" / "b", 1, 0.02, tile=32, luma_domain=16, luma_stride=16)
  with pytest.raises(base.CodecError, match="one tile size"):
    neural.NeuralCollageCodec(model=str(tmp_path / "two"), mix=True).compress(
        make_image(16, 16, 3))


def test_a_variable_rate_model_is_used_alone(vmodel, models, tmp_path):
  shutil.copytree(vmodel, tmp_path / "v")
  shutil.copytree(os.path.join(models, "hi"), tmp_path / "hi")
  with pytest.raises(base.CodecError, match="variable-rate model is used alone"):
    neural.NeuralCollageCodec(model=str(tmp_path)).compress(make_image(16, 16, 3), 50)

