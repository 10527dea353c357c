"""Checkpoints: exact resumption (also after SIGKILL), other device counts, clear errors."""

import os
import shutil

import numpy as np
import pytest

from collage.train import loop, mesh
from collage.train.checkpoint import CheckpointError
from tests.train import helpers
from tests.train.linreg_task import LinRegTask


def _train(workdir, devices=None, **overrides):
  cfg = helpers.config(**overrides)
  state = loop.run(LinRegTask(cfg), cfg, str(workdir), "train", devices=devices)
  return mesh.to_host(state.params["model"])


def _assert_equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_continues_exactly(tmp_path):
  straight = _train(tmp_path / "straight", total_steps=20)
  _train(tmp_path / "resumed", total_steps=10)
  resumed = _train(tmp_path / "resumed", total_steps=20)
  _assert_equal(straight, resumed)
  steps = sorted(os.listdir(tmp_path / "resumed" / "checkpoints"))
  assert steps == ["10", "20"]


def test_data_position_is_part_of_the_checkpoint(tmp_path):
  """Without restoring the iterator, a resumed run would see step 1's data again."""
  _train(tmp_path / "run", total_steps=10)
  data = tmp_path / "run" / "checkpoints" / "10" / "data" / "process_0-of-1.json"
  assert data.exists()
  assert '"next_index": 10' in data.read_text()


def test_sigkill_after_checkpoint_then_restart_matches_uninterrupted(tmp_path):
  reference = _train(tmp_path / "reference", total_steps=40)
  workdir = tmp_path / "killed"
  args = ["--config.total_steps=40", "--config.slow_data_s=0.1"]
  helpers.kill_after_checkpoint(workdir, 10, *args, final_step=40)

  done = helpers.run_main(workdir, *args)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "resumed from" in done.stderr
  _assert_equal(reference, helpers.final_params(workdir))


def test_restore_on_a_different_device_count(tmp_path, eight_devices):
  reference = _train(tmp_path / "reference", eight_devices, total_steps=20)
  _train(tmp_path / "moved", eight_devices, total_steps=10)
  done = helpers.run_main(tmp_path / "moved", "--config.total_steps=20", devices=2)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "on 2 devices" in done.stderr
  moved = helpers.final_params(tmp_path / "moved")
  for k in reference:
    np.testing.assert_allclose(moved[k], reference[k], rtol=1e-5, atol=1e-6)


def _truncate_arrays(step_dir):
  state_dir = step_dir / "state"
  for root, _, files in os.walk(state_dir):
    for f in files:
      if f not in ("commit_success.txt",):
        open(os.path.join(root, f), "w").close()  # truncate to 0 bytes


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
  _train(tmp_path, total_steps=10)
  _truncate_arrays(tmp_path / "checkpoints" / "10")
  with pytest.raises(CheckpointError, match=r"cannot restore checkpoint .*checkpoints/10"):
    _train(tmp_path, total_steps=20)


def test_missing_state_is_a_clear_error(tmp_path):
  _train(tmp_path, total_steps=10)
  shutil.rmtree(tmp_path / "checkpoints" / "10" / "state")
  with pytest.raises(CheckpointError, match=r"checkpoints/10"):
    _train(tmp_path, total_steps=20)


def test_unrecognised_step_directory_is_a_clear_error(tmp_path):
  _train(tmp_path, total_steps=10)
  (tmp_path / "checkpoints" / "15").mkdir()
  (tmp_path / "checkpoints" / "15" / "junk").write_text("not a checkpoint")
  with pytest.raises(CheckpointError, match=r"checkpoints/?\[?15.*corrupt"):
    _train(tmp_path, total_steps=20)


def test_corrupt_checkpoint_from_the_command_line(tmp_path):
  _train(tmp_path, total_steps=10)
  _truncate_arrays(tmp_path / "checkpoints" / "10")
  done = helpers.run_main(tmp_path, "--config.total_steps=20", devices=1)
  assert done.returncode != 0
  assert "checkpoints/10" in done.stderr and "Traceback" not in done.stderr
  assert not (tmp_path / "checkpoints" / "20").exists()


def test_eval_mode_restores_and_evaluates(tmp_path):
  trained = _train(tmp_path, total_steps=10)
  cfg = helpers.config(total_steps=10)
  state = loop.run(LinRegTask(cfg), cfg, str(tmp_path), "eval")
  _assert_equal(trained, mesh.to_host(state.params["model"]))
  rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert sum('"eval/mse"' in r for r in rows) == 2  # end of training + eval mode
  assert (tmp_path / "artifacts" / "params_10.json").exists()


def test_eval_mode_without_checkpoint_is_a_clear_error(tmp_path):
  cfg = helpers.config()
  with pytest.raises(CheckpointError, match="needs a checkpoint"):
    loop.run(LinRegTask(cfg), cfg, str(tmp_path), "eval")


def test_keeps_only_the_last_checkpoints(tmp_path):
  _train(tmp_path, total_steps=20, checkpoint_every=5, keep_checkpoints=2, eval_every=0)
  assert sorted(os.listdir(tmp_path / "checkpoints"), key=int) == ["15", "20"]


def test_restore_for_inference_reads_the_step_asked_for_and_writes_nothing(tmp_path):
  """The public restore a tool (a benchmark, the demo) uses instead of the runtime's inside."""
  cfg = helpers.config(total_steps=20, checkpoint_every=10, eval_every=0)
  final = _train(tmp_path, total_steps=20, checkpoint_every=10, eval_every=0)
  # A save in progress of a run that is training now: a reader must leave it alone.
  (tmp_path / "checkpoints" / "30.orbax-checkpoint-tmp-1").mkdir()
  before = sorted((p, os.path.getmtime(p)) for p in map(str, tmp_path.rglob("*")))
  state, step = loop.restore_for_inference(LinRegTask(cfg), cfg, str(tmp_path))
  assert step == 20
  _assert_equal(mesh.to_host(state.params["model"]), final)
  state10, step10 = loop.restore_for_inference(LinRegTask(cfg), cfg, str(tmp_path), step=10)
  assert step10 == 10
  assert not np.array_equal(mesh.to_host(state10.params["model"])["w"], final["w"])
  with pytest.raises(CheckpointError, match="no checkpoint of that step; it has 10, 20"):
    loop.restore_for_inference(LinRegTask(cfg), cfg, str(tmp_path), step=15)
  after = sorted((p, os.path.getmtime(p)) for p in map(str, tmp_path.rglob("*")))
  assert after == before, "restoring wrote nothing"
