"""The digit feature network's task: its data never holds a held-out digit, the augmentation is
what it says, the config's variants are valid architectures, the tiny variant trains through the
one entrypoint (8 fake devices) and plans, and its export writes a loadable weight file."""

import json
import os

import numpy as np
import pytest

from collage.data import digits as digits_lib
from collage.nn import digit_features as df
from collage.train.errors import CheckpointError, ConfigError
from collage.train import registry
from experiments.configs import digit_features as digit_config
from experiments.tasks import digit_features as digit_task
from tests.train import helpers

CONFIG_FILE = os.path.join("experiments", "configs", "digit_features.py") + ":tiny"
NO_AUGMENT = {"max_rotation": 0.0, "max_scale": 0.0, "max_shift": 0.0}


def test_variants_are_valid_and_an_unknown_one_is_named():
  for arg in digit_config.VARIANTS:
    c = digit_config.get_config(arg)
    assert c.task == "digit_features"
    assert registry.task_of(c).model_cfg == digit_task.model_config(c)
  shipped = digit_task.model_config(digit_config.get_config())  # "full" is the default
  assert shipped.feature_dim == df.FEATURE_DIM
  with pytest.raises(ValueError, match="valid: full, tiny"):
    digit_config.get_config("huge")


def test_bad_training_fields_are_named():
  c = digit_config.get_config("tiny")
  c.dropout = 1.0
  with pytest.raises(ConfigError, match=r"config.dropout=1.0 is out of range: it must be in \[0, 1\)"):
    digit_task.DigitFeaturesTask(c)
  c = digit_config.get_config("tiny")
  c.model.width = 0
  with pytest.raises(ConfigError, match="width must be a positive int"):
    digit_task.DigitFeaturesTask(c)


def test_training_batches_hold_train_digits_only_and_eval_covers_the_held_out_once():
  train_images, train_labels = digits_lib.digit_images("train")
  eval_images, eval_labels = digits_lib.digit_images("eval")
  train_keys = {(im.tobytes(), int(l)) for im, l in zip(train_images, train_labels)}
  eval_keys = {im.tobytes() for im in eval_images}
  it = digit_task.digit_dataset("train", batch_size=500, seed=3, augment=NO_AUGMENT)
  seen = set()
  for _ in range(10):  # 5,000 draws: more than one epoch
    batch = next(it)
    assert batch["image"].dtype == np.float32 and batch["label"].dtype == np.int32
    for im, label in zip(batch["image"].astype(np.uint8), batch["label"]):
      key = (im.tobytes(), int(label))
      assert key in train_keys and key[0] not in eval_keys
      seen.add(key)
  assert len(seen) == len(train_keys)  # the first epoch is a permutation of the train split

  # Eval on 3 processes of batch 64: whole global batches, every held-out digit exactly once.
  rows = []
  for p in range(3):
    for batch in digit_task.digit_dataset("eval", batch_size=64, seed=0, process_index=p,
                                          process_count=3):
      assert batch["image"].shape == (64, 28, 28, 1)
      rows += [(im.tobytes(), int(l)) for im, l, m in
               zip(batch["image"].astype(np.uint8), batch["label"], batch["mask"]) if m]
  assert sorted(rows) == sorted((im.tobytes(), int(l)) for im, l in zip(eval_images, eval_labels))


def test_augmentation_is_seeded_bounded_and_the_identity_at_zero():
  image = digits_lib.digit_images("train")[0][7]
  rng = np.random.default_rng(0)
  np.testing.assert_array_equal(digit_task.random_affine(image, rng, **NO_AUGMENT), image)
  moved = digit_task.random_affine(image, np.random.default_rng(1), max_rotation=12.0,
                                   max_scale=0.1, max_shift=2.0)
  assert moved.shape == image.shape and moved.dtype == np.float32
  assert 0.0 <= moved.min() and moved.max() <= 255.0 and not np.array_equal(moved, image)
  # A whole-pixel shift alone moves the digit by that many pixels.
  shifted = digit_task.random_affine(image, _FixedShift(2.0, -1.0), max_rotation=0.0,
                                     max_scale=0.0, max_shift=3.0)
  np.testing.assert_allclose(shifted[2:, :-1], image[:-2, 1:], atol=1e-4)
  a = next(digit_task.digit_dataset("train", batch_size=16, seed=5,
                                    augment=digit_config.get_config().augment.to_dict()))
  b = next(digit_task.digit_dataset("train", batch_size=16, seed=5,
                                    augment=digit_config.get_config().augment.to_dict()))
  np.testing.assert_array_equal(a["image"], b["image"])


class _FixedShift:
  """A stand-in generator: no rotation or scaling, and a shift of (dy, dx)."""

  def __init__(self, dy, dx):
    self.shift = np.array([dy, dx])

  def uniform(self, low, high, size=None):
    return self.shift if size == 2 else (low + high) / 2.0


def test_tiny_plans_from_shapes(tmp_path, eight_devices):
  del eight_devices
  c = digit_config.get_config("tiny")
  c.plan.devices = 8
  result = digit_task.run(c, str(tmp_path), "plan")
  assert os.listdir(tmp_path) == ["plan.json"]
  params = df.param_shapes(digit_task.model_config(c))
  assert result["networks"]["model"]["parameters"] == sum(int(np.prod(s)) for s in params.values())


@pytest.mark.slow
def test_tiny_trains_through_main_and_exports_a_loadable_file(tmp_path, capsys):
  workdir = tmp_path / "run"
  proc = helpers.run_main(workdir, config_file=CONFIG_FILE, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  evals = [r for r in rows if "eval/accuracy" in r]
  assert evals and evals[-1]["step"] == 4
  assert 0.0 <= evals[-1]["eval/accuracy"] <= 1.0 and np.isfinite(evals[-1]["eval/cross_entropy"])
  assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)

  out = tmp_path / "assets" / "weights.npz"
  assert digit_task.main(["export", "--workdir", str(workdir), "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  net = df.load(out)
  assert net.sha256 in printed and net.sha256 == df.file_sha256(out)
  assert net.config == digit_task.model_config(digit_config.get_config("tiny"))
  assert net.meta["step"] == 4 and net.meta["params"] == "ema"
  assert net.meta["held_out_accuracy"] == digit_task.held_out_accuracy(net)
  feats = net.features(digits_lib.digit_images("eval")[0][:3])
  assert feats.shape == (3, 8) and np.all(np.isfinite(feats))
  # A second export of the same checkpoint writes the same bytes.
  again = tmp_path / "again.npz"
  assert digit_task.export(str(workdir), str(again))["sha256"] == net.sha256

  # An earlier checkpoint on request; a step the run does not have is named with the ones it has.
  assert digit_task.export(str(workdir), str(tmp_path / "two.npz"), step=2)["step"] == 2
  with pytest.raises(CheckpointError, match="no checkpoint of step 3; it has steps 2, 4"):
    digit_task.export(str(workdir), str(tmp_path / "three.npz"), step=3)
  with pytest.raises(CheckpointError, match="not a digit_features run"):
    digit_task.export(str(tmp_path), str(tmp_path / "none.npz"))


def test_export_cli_refuses_a_folder_that_is_no_run(tmp_path, capsys):
  assert digit_task.main(["export", "--workdir", str(tmp_path), "--out",
                          str(tmp_path / "w.npz")]) == 2
  assert "not a digit_features run" in capsys.readouterr().err
  assert not (tmp_path / "w.npz").exists()
