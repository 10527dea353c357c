"""Every evaluator type is reached by name from a config, in a fresh process started through
the one entrypoint (``python -m experiments.main``): nothing imports the evaluation wing first."""

import json

import numpy as np
import pytest

from collage.evals import reference_stats
from collage.nn import inception, inception_io
from tests.train import helpers

CONFIG = "tests/evals/entrypoint_config.py"


def _rows(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_fid_without_weights_stops_before_anything_is_written(tmp_path):
  done = helpers.run_main(tmp_path / "run", config_file=f"{CONFIG}:fid", devices=2)
  assert done.returncode != 0
  assert "inception-2015-12-05.tgz" in done.stderr and "--config.evals.fid.weights=" in done.stderr
  assert "Traceback" not in done.stderr, done.stderr[-2000:]
  assert not (tmp_path / "run").exists(), "nothing is written"


@pytest.fixture(scope="module")
def inception_files(tmp_path_factory):
  """Random Inception weights (converted-file format) and a reference of 12 random images."""
  d = tmp_path_factory.mktemp("inception")
  weights = d / "inception_random.npz"
  inception_io.save(weights, inception.random_weights(0), source="random, for tests")
  rng = np.random.default_rng(0)
  np.savez(d / "images.npz", rng.integers(0, 256, (12, 28, 28, 3), dtype=np.uint8))
  assert reference_stats.main(["--source", f"npz:{d / 'images.npz'}", "--weights", str(weights),
                               "--out", str(d / "ref.npz"), "--batch_size", "4"]) == 0
  return str(weights), str(d / "ref.npz")


def test_every_evaluator_type_runs_by_name_through_the_entrypoint(tmp_path, inception_files):
  weights, ref = inception_files
  flags = []
  for name in ("fid", "sfid", "prec_recall", "inception_score"):
    flags.append(f"--config.evals.{name}.weights={weights}")
    if name != "inception_score":
      flags.append(f"--config.evals.{name}.reference={ref}")
  done = helpers.run_main(tmp_path, *flags, config_file=f"{CONFIG}:all", devices=8, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  last = {}
  for row in _rows(tmp_path):
    last.update(row)
  for key in ("eval/bpd", "fid/fid", "sfid/sfid", "prec_recall/precision", "prec_recall/recall",
              "inception_score/inception_score", "digits_fid/fid", "digits_kid/kid",
              "digits_kid/kid_std", "digits_prec_recall/precision",
              "digits_prec_recall/recall", "digits_fid/samples_per_sec"):
    assert key in last and np.isfinite(last[key]), key
  assert last["digits_fid/fid"] > 0 and 0 <= last["digits_prec_recall/recall"] <= 1
  assert "digits_cold/fid" not in last, "every = 0: not run in training"
  assert (tmp_path / "artifacts" / "grid_4.png").is_file()
  cache = list((tmp_path / "eval_cache").glob("digits-train-*.npz"))
  assert len(cache) == 1, "the reference features are cached once, keyed by the network"

  # --mode eval runs every evaluator (also every = 0) on the checkpoint asked for.
  done = helpers.run_main(tmp_path, *flags, "--mode", "eval", "--config.checkpoint_step=2",
                          config_file=f"{CONFIG}:all", devices=2, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  at2 = {}
  for row in _rows(tmp_path):
    if row["step"] == 2:
      at2.update(row)
  assert "digits_cold/fid" in at2 and "fid/fid" in at2
  # The draw of 10 samples at temperature 0.5 scores differently from the one at 1.0.
  assert at2["digits_cold/fid"] != at2["digits_fid/fid"]

  done = helpers.run_main(tmp_path, *flags, "--mode", "eval", "--config.checkpoint_step=3",
                          config_file=f"{CONFIG}:all", devices=2)
  assert done.returncode != 0 and "checkpoint_step=3" in done.stderr and "2, 4" in done.stderr


def test_a_sampling_option_the_task_lacks_is_refused(tmp_path):
  done = helpers.run_main(tmp_path / "run", config_file=f"{CONFIG}:misspelt", devices=2)
  assert done.returncode != 0
  assert "config.evals.grid" in done.stderr and "['temperture']" in done.stderr
  assert "valid: scale, temperature" in done.stderr
  assert not (tmp_path / "run").exists()
