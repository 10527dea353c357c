"""The Generate tab on a real run directory: a tiny Collage-VDVAE's config and checkpoint
written the runtime's way, restored read-only, sampled through its task at a temperature and a
scale, with the page's refusals for options the run does not take."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from apps.demo import app, generate
from collage.train.checkpoint import Checkpointer
from collage.train.mesh import make_mesh
from collage.train.setup import StateSetup
from collage.train.writer import write_config
from experiments.configs import vdvae as vdvae_config
from experiments.tasks import vdvae as vdvae_task


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A run of ``vdvae.py:collage_tiny`` at step 0: its config.json and one checkpoint of a
  state of the right structure (small random values: compiling the real initialisation
  would take most of this module's time, and the tab only restores and samples)."""
  config = vdvae_config.get_config("collage_tiny")
  workdir = str(tmp_path_factory.mktemp("runs") / "collage_tiny")
  write_config(config, workdir)
  setup = StateSetup(vdvae_task.VDVAETask(config), config, make_mesh())
  rng = np.random.default_rng(0)
  state = jax.tree.map(
      lambda s: jax.device_put((0.05 * rng.standard_normal(s.shape)).astype(s.dtype)
                               if jnp.issubdtype(s.dtype, jnp.floating)
                               else np.zeros(s.shape, s.dtype), s.sharding),
      setup.abstract_state)
  checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"), keep=1)
  checkpoints.save(0, state, {"position": 0}, force=True)
  checkpoints.close()
  return workdir


def test_a_run_is_restored_and_sampled_at_a_scale(run_dir):
  runs, errors = app.check_runs([run_dir])
  assert errors == [] and runs[0].label == "collage_tiny (Collage-VDVAE, step 0)"
  before = sorted(os.listdir(run_dir))
  handlers = app.GenerateHandlers(runs, app.Outputs())
  draw = lambda scale: np.asarray(Image.open(handlers.vdvae(run_dir, 0.8, scale, 4, 0)))
  small, large = draw(1), draw(2)
  size = runs[0].config.model.image_size
  assert small.ndim == 2 and large.shape[0] > small.shape[0]  # a grid of 4, enlarged for a person
  np.testing.assert_array_equal(draw(1), small)  # the same seed, the same samples
  samples = generate.loaded(runs[0]).sample({"temperature": 0.8, "scale": 2}, 4, 0)["image"]
  assert samples.shape == (4, 2 * size, 2 * size, 1)  # the handler's draw, its sampler reused
  assert sorted(os.listdir(run_dir)) == before  # read-only: nothing written beside the run


def test_options_a_run_does_not_take_are_refused(run_dir):
  info = generate.inspect_run(run_dir)
  with pytest.raises(generate.RunError, match="temperature must be in 0..2"):
    generate.vdvae_options(info, 3.0, 1)
  pixels = generate.RunInfo(info.path, "vdvae", ml_collections.ConfigDict(
      dict(info.config.to_dict(), model=dict(info.config.model.to_dict(), head="pixels"))), 0)
  with pytest.raises(generate.RunError, match="a VDVAE with a pixel head: it samples at scale 1"):
    generate.vdvae_options(pixels, 1.0, 2)
  handlers = app.GenerateHandlers([info], app.Outputs())
  with pytest.raises(generate.RunError, match="is not one of the runs this demo was started with"):
    handlers.vdvae("/elsewhere", 1.0, 1, 4, 0)
