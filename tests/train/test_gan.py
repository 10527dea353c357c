"""The runtime with two networks, model state and a sampler (tests/train/gan_task.py)."""

import json
import os

import jax
import numpy as np
import pytest

from collage.train import loop, mesh, sampling
from collage.train.errors import CheckpointError, ConfigError
from collage.train.setup import run_keys
from tests.train import gan_config, helpers
from tests.train.gan_task import GanTask

CONFIG_FILE = os.path.join("tests", "train", "gan_config.py")


def _config(**overrides):
  return helpers.config(gan_config, **overrides)


def _train(workdir, devices=None, **overrides):
  cfg = _config(**overrides)
  return loop.run(GanTask(cfg), cfg, str(workdir), "train", devices=devices)


def test_eight_devices_match_one_device(tmp_path, eight_devices):
  s8 = helpers.flat_state(_train(tmp_path / "d8", eight_devices))
  s1 = helpers.flat_state(_train(tmp_path / "d1", eight_devices[:1]))
  assert s8.keys() == s1.keys()
  assert any(k.startswith("model_state") for k in s8) and any("ema_params['generator']" in k
                                                               for k in s8)
  assert not any("ema_params['discriminator']" in k for k in s8), "EMA is on for the generator only"
  for k in s8:  # the same global batches; only the order of the batch-mean sums differs
    np.testing.assert_allclose(s8[k], s1[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_sigkill_after_checkpoint_then_rerun_ends_where_an_uninterrupted_run_ends(tmp_path):
  reference = helpers.flat_state(_train(tmp_path / "reference", total_steps=30))
  workdir = tmp_path / "killed"
  args = ["--config.total_steps=30", "--config.slow_data_s=0.1"]
  helpers.kill_after_checkpoint(workdir, 10, *args, config_file=CONFIG_FILE, final_step=30)
  done = helpers.run_main(workdir, *args, config_file=CONFIG_FILE)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "resumed from" in done.stderr
  with np.load(workdir / "final_state.npz") as f:
    resumed = {k: f[k] for k in f.files}
  renamed = {k.replace("ema_params", "ema").replace("opt_state", "opt"): v
             for k, v in reference.items()}
  assert resumed.keys() == renamed.keys()
  for k in renamed:  # bit for bit: params, EMA, model state and both optimizer states
    np.testing.assert_array_equal(resumed[k], renamed[k], err_msg=k)


def test_the_network_not_being_updated_does_not_move(eight_devices):
  """Across each sub-step, the other network's params, optimizer state and EMA are bit-identical,
  and the model state changes only on the discriminator's sub-step."""
  cfg = _config()
  task = GanTask(cfg)
  rt = loop._Runtime(task, cfg, "/tmp/unused_gan_runtime", eight_devices[:1])  # pylint: disable=protected-access
  try:
    state = rt.init_state()
    batch = next(rt.dataset("train"))
    seen = []

    def recording_update(st, name, grads):
      before = st
      st, metrics = rt.update(st, name, grads)
      seen.append((name, before, st))
      return st, metrics

    for _ in range(3):  # a few steps so Adam's moments and the EMA are non-trivial
      seen.clear()
      state, _ = task.train_step(state, batch, jax.random.PRNGKey(1), recording_update)
      for name, before, after in seen:
        other = "generator" if name == "discriminator" else "discriminator"
        for field in ("params", "opt_state", "ema_params"):
          a, b = getattr(before, field), getattr(after, field)
          if other in a:
            jax.tree.map(np.testing.assert_array_equal, a[other], b[other])
          if name in a and field != "ema_params":
            assert any(np.any(np.asarray(x) != np.asarray(y))
                       for x, y in zip(jax.tree.leaves(a[name]), jax.tree.leaves(b[name]))), \
                f"{name}'s {field} did not change on its own sub-step"
      assert [n for n, _, _ in seen] == ["discriminator", "generator"]
      jax.tree.map(np.testing.assert_array_equal, seen[1][1].model_state, seen[1][2].model_state)
    assert int(state.step) == 0, "the task's step does not advance the counter; the runtime does"
  finally:
    rt.close()


def test_logged_metrics_are_per_network(tmp_path):
  _train(tmp_path, total_steps=5, log_every=5)
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = next(r for r in rows if "d_loss" in r)
  for net in ("generator", "discriminator"):
    for key in ("grad_norm", "skipped", "skipped_nonfinite", "skipped_large", "learning_rate"):
      assert f"{net}/{key}" in train
  assert train["generator/learning_rate"] == pytest.approx(2e-3)
  assert (tmp_path / "artifacts" / "grid_5.png").exists()


def test_eval_mean_is_exact_over_a_padded_last_batch(tmp_path):
  """20 eval rows in batches of 16: the logged mean equals the mean over the 20 real rows."""
  state = _train(tmp_path, total_steps=2)
  cfg, task = _config(), GanTask(_config())
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  logged = next(r for r in rows if "eval/d_real" in r)["eval/d_real"]
  params = jax.tree.map(jax.numpy.asarray, mesh.to_host(state.eval_params))
  model_state = jax.tree.map(jax.numpy.asarray, mesh.to_host(state.model_state))
  values = []
  for i, b in enumerate(task.dataset("eval", seed=0, process_index=0, process_count=1,
                                     batch_size=int(cfg.batch_size))):
    eval_key = run_keys(int(cfg.seed))[2]
    m = task.eval_fn(params, model_state, b, jax.random.fold_in(eval_key, i))
    values.append(np.asarray(m["d_real"])[np.asarray(b["mask"]) > 0])
  values = np.concatenate(values)
  assert len(values) == 20
  assert logged == pytest.approx(float(values.mean()), rel=1e-5)


def test_sample_mode_writes_pngs_grid_npz_independent_of_device_count(tmp_path, eight_devices):
  _train(tmp_path, total_steps=4)
  trained_config = (tmp_path / "config.json").read_text()
  cfg = _config(total_steps=4)
  loop.run(GanTask(cfg), cfg, str(tmp_path), "sample", devices=eight_devices)
  out = tmp_path / "samples" / "4"
  names = sorted(os.listdir(out))
  assert names == [f"{i:05d}.png" for i in range(10)] + ["grid.png", "options.json", "samples.npz"]
  # The grid of ten 4x4 samples (22 x 16 px in a 4 x 3 layout) is enlarged 8x for a person,
  # with a caption strip under it.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  width, height = Image.open(out / "grid.png").size
  assert width == 22 * 8 and height > 16 * 8
  with np.load(out / "samples.npz") as f:
    on8 = {k: f[k] for k in f.files}
  assert on8["image"].shape == (10, 4, 4, 1) and on8["z"].shape == (10, 8)
  os.rename(out, tmp_path / "samples_8")
  loop.run(GanTask(cfg), cfg, str(tmp_path), "sample", devices=eight_devices[:3])
  with np.load(out / "samples.npz") as f:
    np.testing.assert_array_equal(f["z"], on8["z"])
    np.testing.assert_allclose(f["image"], on8["image"], rtol=1e-6, atol=1e-7)
  # Another seed into the same step directory is refused; nothing is overwritten.
  with pytest.raises(FileExistsError, match="already holds samples.*--config.sample.name"):
    other = _config(total_steps=4, sample__seed=1)
    loop.run(GanTask(other), other, str(tmp_path), "sample", devices=eight_devices)
  # Named, the other draw goes beside the first.
  named = _config(total_steps=4, sample__seed=1, sample__name="seed1")
  loop.run(GanTask(named), named, str(tmp_path), "sample", devices=eight_devices)
  with np.load(tmp_path / "samples" / "4-seed1" / "samples.npz") as f:
    assert not np.array_equal(f["z"], on8["z"])
  with np.load(out / "samples.npz") as f:
    np.testing.assert_array_equal(f["z"], on8["z"])  # the first draw untouched
  # The task's options reach the sampler: temperature 0 gives z = 0 for every sample.
  cold = _config(total_steps=4, sample__temperature=0.0)
  samples = sampling.Sampler(GanTask(cold), mesh.make_mesh(eight_devices),
                             sampling.task_options(cold.sample))
  state = loop.run(GanTask(cold), cold, str(tmp_path), "eval", devices=eight_devices)
  drawn = samples(state.eval_params, state.model_state, 5, 0)
  np.testing.assert_array_equal(drawn["z"], 0.0)
  assert (tmp_path / "config.json").read_text() == trained_config, \
      "sampling and evaluating leave the training run's config.json as it was"


def test_sample_mode_errors_before_anything_runs(tmp_path):
  from tests.train.linreg_task import LinRegTask
  lin = helpers.config()
  with pytest.raises(ConfigError, match="has no sampler"):
    loop.run(LinRegTask(lin), lin, str(tmp_path / "lin"), "sample")
  assert not (tmp_path / "lin").exists()
  cfg = _config()
  with pytest.raises(CheckpointError, match="--mode sample needs a checkpoint"):
    loop.run(GanTask(cfg), cfg, str(tmp_path / "empty"), "sample")


def test_unknown_sample_option_from_the_command_line_lists_the_valid_ones(tmp_path):
  done = helpers.run_main(tmp_path, "--mode", "sample", "--config.sample.temprature=2",
                          config_file=CONFIG_FILE, devices=1, timeout=120)
  assert done.returncode == 2
  assert "sample.temprature" in done.stderr and "sample.temperature (float)" in done.stderr
  assert "Traceback" not in done.stderr


def test_unknown_evaluator_type_lists_the_valid_ones(tmp_path):
  cfg = _config()
  cfg.unlock()
  cfg.evals.grid.type = "fid_typo"
  with pytest.raises(ConfigError, match="fid_typo.*valid: .*loss.*samples"):
    loop.run(GanTask(cfg), cfg, str(tmp_path), "train")


def test_a_draw_in_pieces_equals_the_draw_at_once(tmp_path, eight_devices):
  state = _train(tmp_path, total_steps=2)
  cfg = _config()
  sampler = sampling.Sampler(GanTask(cfg), mesh.make_mesh(eight_devices),
                             sampling.task_options(cfg.sample), batch_size=8)
  whole = sampler(state.eval_params, state.model_state, 13, 5)
  pieces = [sampler(state.eval_params, state.model_state, n, 5, start=s)
            for s, n in ((0, 8), (8, 3), (11, 2))]
  for k in whole:
    np.testing.assert_allclose(np.concatenate([p[k] for p in pieces]), whole[k],
                               rtol=1e-6, atol=1e-7)
