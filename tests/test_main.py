"""The entrypoint: config overrides, clear errors, task dispatch, config.json."""

import json
import os

import pytest

from collage.train import registry
from experiments import main
from tests.train import helpers


def test_trains_and_writes_resolved_config(tmp_path):
  done = helpers.run_main(tmp_path, "--config.total_steps=4", "--config.log_every=2",
                          "--config.optimizer.learning_rate=0.01", devices=2)
  assert done.returncode == 0, done.stderr[-3000:]
  cfg = json.loads((tmp_path / "config.json").read_text())
  assert cfg["total_steps"] == 4 and cfg["optimizer"]["learning_rate"] == 0.01
  rows = [json.loads(r) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "loss" in r] == [2, 4]
  assert "steps/s" in done.stderr and "ETA" in done.stderr
  assert list(tmp_path.glob("events.out.tfevents.*"))
  # The compilation has a name and a time, and is not in the first rate and ETA.
  assert "compiling the train step" in done.stderr
  assert "train step compiled and run once in" in done.stderr
  assert "compiling the eval step (eval)" in done.stderr
  # The README's `tensorboard --logdir` works after the install: it reads the run's events.
  tb = helpers.subprocess.run(["tensorboard", "--inspect", "--logdir", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)
  assert tb.returncode == 0 and "loss" in tb.stdout, tb.stderr[-2000:]
  # ... and without it, the curves as a PNG.
  plot = helpers.subprocess.run([helpers.sys.executable, "-m", "collage.train.plots",
                                 str(tmp_path)], cwd=helpers.REPO, env=helpers.env(1),
                                capture_output=True, text=True, timeout=120)
  assert plot.returncode == 0 and (tmp_path / "artifacts" / "metrics.png").is_file()


@pytest.mark.parametrize("override, key", [
    ("--config.total_stepz=3", "total_stepz"),
    ("--config.optimizer.lr=0.1", "optimizer.lr"),
])
def test_unknown_override_names_key_and_lists_valid(tmp_path, override, key):
  done = helpers.run_main(tmp_path, override, devices=1)
  assert done.returncode != 0
  assert "Traceback" not in done.stderr
  assert key in done.stderr
  assert "total_steps (int)" in done.stderr and "optimizer.learning_rate (float)" in done.stderr
  assert not (tmp_path / "config.json").exists()


def test_ill_typed_override_names_key(tmp_path):
  done = helpers.run_main(tmp_path, "--config.total_steps=abc", devices=1)
  assert done.returncode != 0
  assert "Traceback" not in done.stderr
  assert "config.total_steps" in done.stderr and "batch_size (int)" in done.stderr


def test_unknown_task_names_valid_ones(tmp_path):
  done = helpers.run_main(tmp_path, "--config.task=no_such_task", devices=1)
  assert done.returncode != 0
  assert "Traceback" not in done.stderr
  assert "no_such_task" in done.stderr and "valid tasks" in done.stderr


def test_eval_without_checkpoint_is_clear(tmp_path):
  done = helpers.run_main(tmp_path, "--mode", "eval", devices=1)
  assert done.returncode != 0
  assert "needs a checkpoint" in done.stderr and "Traceback" not in done.stderr


def test_load_task_lists_modules_in_experiments_tasks():
  with pytest.raises(LookupError, match="valid tasks"):
    registry.load_task("no_such_task")
  assert registry.load_task("tests.train.linreg_task").run


def test_config_keys_flattens_nested():
  keys = registry.config_keys(helpers.config())
  assert keys["optimizer.name"] == "str" and keys["total_steps"] == "int"


def test_batch_size_not_divisible_is_clear(tmp_path):
  done = helpers.run_main(tmp_path, "--config.batch_size=12", devices=8)
  assert done.returncode != 0
  assert "batch_size=12" in done.stderr and "(8)" in done.stderr
  assert "Traceback" not in done.stderr


def test_unknown_config_variant_lists_valid_ones(tmp_path):
  import subprocess
  import sys
  done = subprocess.run(
      [sys.executable, "-m", "experiments.main", "--config",
       "experiments/configs/fractalize.py:nope", "--workdir", str(tmp_path)],
      cwd=helpers.REPO, env=helpers.env(1), capture_output=True, text=True, timeout=300)
  assert done.returncode == 2
  assert "Traceback" not in done.stderr
  assert "unknown fractalize variant 'nope'; valid: quick, tiny, full" in done.stderr


def test_help_lists_the_modes_and_every_config_with_its_variants():
  done = helpers.subprocess.run([helpers.sys.executable, "-m", "experiments.main", "--help"],
                                cwd=helpers.REPO, env=helpers.env(1), capture_output=True,
                                text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  configs = sorted(f for f in os.listdir(os.path.join(helpers.REPO, "experiments", "configs"))
                   if f.endswith(".py") and not f.startswith("_"))
  for f in configs:
    assert f"experiments/configs/{f}" in done.stdout
  for word in ("guided_quick", "collage_mnist_quick", "digits_quick", "plan ", "--print_config",
               "MAGIC: set-transformer GAN"):
    assert word in done.stdout, word


def test_print_config_shows_each_field_with_its_comment_and_writes_nothing(tmp_path):
  done = helpers.subprocess.run(
      [helpers.sys.executable, "-m", "experiments.main", "--config",
       "experiments/configs/magic.py:guided", "--print_config", "--workdir", str(tmp_path / "w"),
       "--config.model.width=64"], cwd=helpers.REPO, env=helpers.env(1), capture_output=True,
      text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  lines = dict(l.split(" = ", 1) for l in done.stdout.splitlines())
  assert lines["model.width"].startswith("64  # ST-U-Net channels")
  assert lines["optimizers.generator.learning_rate"].endswith("# peak learning rate")
  assert lines["plan.devices"].split("  # ")[1].startswith("devices of the mesh")
  assert not (tmp_path / "w").exists()
