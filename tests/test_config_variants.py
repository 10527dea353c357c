"""Config variants compose: one word per axis (size x head x data ...), any order; the names
users already type are spellings of the same words; a bad word is refused with the valid ones."""

import json

import pytest

from collage.train.config import compose
from experiments.configs import dctransformer, magic, vdvae
from tests.train import helpers

AXES = {"head": ("pixels", "collage"), "data": ("mnist", "cifar10"), "size": ("full", "tiny")}


def test_compose_reads_one_word_per_axis_in_any_order():
  assert compose("collage_mnist_tiny", AXES, "x") == {"head": "collage", "data": "mnist",
                                                      "size": "tiny"}
  assert compose("tiny_collage", AXES, "x") == {"head": "collage", "data": None, "size": "tiny"}
  assert compose("up", AXES, "x", {"up": "cifar10_tiny"}) == {"head": None, "data": "cifar10",
                                                              "size": "tiny"}


@pytest.mark.parametrize("arg, words", [
    ("mnist_tiyn", ["unknown x variant 'mnist_tiyn'", "'tiyn'", "did you mean 'tiny'",
                    "head: pixels | collage; data: mnist | cifar10; size: full | tiny"]),
    ("collage_pixels", ["two words of the axis 'head'", "'collage' and 'pixels'",
                        "pixels | collage"]),
])
def test_compose_refuses_an_unknown_word_or_two_words_of_one_axis(arg, words):
  with pytest.raises(ValueError) as err:
    compose(arg, AXES, "x")
  for w in words:
    assert w in str(err.value), str(err.value)


@pytest.mark.parametrize("module", [vdvae, magic, dctransformer])
def test_every_named_variant_is_its_words_in_any_order(module):
  for name in module.VARIANTS:
    words = getattr(module, "ALIASES", {}).get(name, name).split("_")
    shuffled = "_".join(reversed(words))
    assert module.get_config(shuffled).to_json() == module.get_config(name).to_json(), name
  assert module.get_config(None).to_json() == module.get_config(module.VARIANTS[0]).to_json()


def test_new_combinations_are_one_argument():
  c = vdvae.get_config("cifar10_quick")           # the quick model on 32x32 RGB
  assert (c.data.source, c.model.image_size, c.model.channels) == ("tfds:cifar10", 32, 3)
  assert c.model.enc_blocks == "32x1,32d2,16x2,16d2,8x2,8d8,1x1"
  assert c.model.dtype == "float32" and c.total_steps == vdvae.get_config("mnist_quick").total_steps
  paper = vdvae.get_config("collage_cifar10")     # the paper's recipe with the collage head
  assert paper.model.head == "collage" and paper.model.width == 384
  assert paper.model.enc_blocks == vdvae.get_config("cifar10").model.enc_blocks
  up = dctransformer.get_config("imagenet_upsample")
  assert up.condition == "upsample" and up.data.size == 256 and up.model.dim == 512
  assert dctransformer.get_config("digits_upsample").model.dim == 64
  with pytest.raises(ValueError, match="colorize needs colour data"):
    dctransformer.get_config("digits_colorize")
  assert magic.get_config("quick_unguided").to_json() == magic.get_config(
      "unguided_quick").to_json()


def test_a_new_combination_compiles_through_the_entrypoint(tmp_path):
  """``collage_cifar10_tiny`` (no block of its own in the config file) plans: the composed
  block strings and head build a model for 32x32 RGB, and the run sees the composed config."""
  done = helpers.run_main(
      tmp_path, "--mode", "plan", "--config.plan.devices=1", "--config.plan.sample=False",
      config_file="experiments/configs/vdvae.py:collage_cifar10_tiny", devices=1)
  assert done.returncode == 0, done.stderr[-3000:]
  plan = json.loads((tmp_path / "plan.json").read_text())
  assert plan["task"] == "vdvae" and plan["networks"]["model"]["parameters"] > 0, plan
  assert plan["train"]["peak_bytes"] > 0
