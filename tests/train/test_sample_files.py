"""A task's own files of a draw (``Task.write_sample_files``): called once per ``--mode sample``
draw, after the runtime's files, with the draw's samples, options and EMA parameters; the
artifacts' sampler on one device equals the runtime's draw; one filter of ``config.sample``."""

import json
import os

import jax
import ml_collections
import numpy as np

from collage.train import loop, mesh, sampling
from collage.train.task import Task
from tests.train import gan_config, helpers
from tests.train.gan_task import GanTask
from tests.train.linreg_task import LinRegTask


class RecordingGan(GanTask):
  """The test GAN, writing one extra file per draw and recording what it was given."""

  calls: list = []

  def write_sample_files(self, params, model_state, samples, directory, meta):
    type(self).calls.append({"params": params, "model_state": model_state, "samples": samples,
                             "directory": directory, "meta": meta,
                             "files": sorted(os.listdir(directory))})
    with open(os.path.join(directory, "z.txt"), "w", encoding="utf-8") as f:
      f.write(" ".join(f"{v:.6f}" for v in samples["z"][:, 0]))


def test_the_hook_writes_beside_the_runtimes_files_with_the_draws_parameters(tmp_path,
                                                                              eight_devices):
  cfg = helpers.config(gan_config, total_steps=2, checkpoint_every=2, sample__num=3)
  state = loop.run(GanTask(cfg), cfg, str(tmp_path), "train", devices=eight_devices[:1])
  RecordingGan.calls = []
  loop.run(RecordingGan(cfg), cfg, str(tmp_path), "sample", devices=eight_devices[:2])
  (call,) = RecordingGan.calls
  out = tmp_path / "samples" / "2"
  assert call["directory"] == str(out)
  # The runtime's files were written first.
  assert call["files"] == ["00000.png", "00001.png", "00002.png", "grid.png", "options.json",
                           "samples.npz"]
  assert call["meta"] == json.loads((out / "options.json").read_text())
  assert call["meta"]["options"] == {"temperature": 1.0} and call["meta"]["seed"] == 0
  with np.load(out / "samples.npz") as f:
    for k in f.files:
      np.testing.assert_array_equal(call["samples"][k], f[k], err_msg=k)
  # Host copies of the parameters the draw used: each network's EMA where it keeps one.
  want = GanTask(cfg).task_params(mesh.to_host(state.eval_params))
  assert sorted(call["params"]) == ["discriminator", "generator"]
  for name in want:
    for a, b in zip(jax.tree.leaves(call["params"][name]), jax.tree.leaves(want[name])):
      assert isinstance(a, np.ndarray)
      np.testing.assert_array_equal(a, b)
  assert (out / "z.txt").exists()


def test_the_default_hook_writes_nothing(tmp_path):
  Task(ml_collections.ConfigDict()).write_sample_files({}, {}, {"image": np.zeros((1, 2, 2, 1))},
                                                       str(tmp_path), {})
  assert not os.listdir(tmp_path)
  # ... and a task that keeps the default costs no host copy of its parameters.
  assert not GanTask.writes_sample_files() and RecordingGan.writes_sample_files()


def test_the_artifacts_sampler_draws_what_the_runtime_draws(tmp_path, eight_devices):
  cfg = helpers.config(gan_config, total_steps=2, checkpoint_every=2)
  state = loop.run(GanTask(cfg), cfg, str(tmp_path), "train", devices=eight_devices[:1])
  task = GanTask(cfg)
  options = sampling.task_options(cfg.sample)
  runtime = sampling.Sampler(task, mesh.make_mesh(eight_devices[:4]), options, 8)
  want = runtime(state.eval_params, state.model_state, 5, 3)
  local = sampling.local_sampler(task, options, 5)
  params = task.task_params(mesh.to_host(state.eval_params))
  got = local(task.network_params(params), mesh.to_host(state.model_state), 5, 3)
  np.testing.assert_array_equal(got["z"], want["z"])
  np.testing.assert_allclose(got["image"], want["image"], rtol=1e-6, atol=1e-7)


def test_task_options_drop_the_runtimes_fields():
  sample = ml_collections.ConfigDict({"num": 4, "seed": 1, "batch_size": 8, "name": "a",
                                      "temperature": 0.5, "scale": 2})
  assert sampling.task_options(sample) == {"temperature": 0.5, "scale": 2}
  assert sampling.task_options(None) == {}
  gan = GanTask(helpers.config(gan_config))
  assert gan.network_params({"generator": 1, "discriminator": 2}) == {
      "generator": 1, "discriminator": 2}
  single = LinRegTask(helpers.config())
  assert single.network_params({"w": 1}) == {"model": {"w": 1}}
  assert single.task_params(single.network_params({"w": 1})) == {"w": 1}
