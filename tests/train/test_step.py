"""The shared update: clipping, skipping of bad updates (counted), EMA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.train import optimizer, state as state_lib, step
from tests.train import helpers


def _setup(**overrides):
  cfg = helpers.config(optimizer__name="sgd", optimizer__learning_rate=1.0, **overrides)
  tx = optimizer.make_optimizer(cfg)
  params = {"w": jnp.ones((3,)), "b": jnp.zeros(())}
  st = state_lib.create_state(params, tx, jax.random.PRNGKey(0), cfg.ema_decay > 0)
  return cfg, tx, st


def test_nonfinite_gradient_is_skipped_and_counted():
  cfg, tx, st = _setup()
  grads = {"w": jnp.array([1.0, jnp.nan, 0.0]), "b": jnp.zeros(())}
  new, m = step.apply_gradients(st, grads, tx, cfg)
  np.testing.assert_array_equal(new.params["w"], st.params["w"])
  assert int(new.step) == 1 and int(new.skipped_nonfinite) == 1 and int(new.skipped_large) == 0
  assert float(m["skipped"]) == 1.0
  assert np.all(np.isfinite(np.asarray(new.ema_params["w"])))


def test_gradient_above_threshold_is_skipped_and_counted():
  cfg, tx, st = _setup(optimizer__skip_threshold=5.0)
  new, _ = step.apply_gradients(st, {"w": jnp.full((3,), 10.0), "b": jnp.zeros(())}, tx, cfg)
  np.testing.assert_array_equal(new.params["w"], st.params["w"])
  assert int(new.skipped_large) == 1 and int(new.skipped_nonfinite) == 0
  new2, m = step.apply_gradients(new, {"w": jnp.full((3,), 0.1), "b": jnp.zeros(())}, tx, cfg)
  assert float(m["skipped"]) == 0.0 and int(new2.skipped_large) == 1
  assert not np.allclose(new2.params["w"], st.params["w"])


def test_gradient_is_clipped_to_global_norm():
  cfg, tx, st = _setup(optimizer__grad_clip_norm=1.0)
  grads = {"w": jnp.array([3.0, 0.0, 4.0]), "b": jnp.zeros(())}  # norm 5
  new, m = step.apply_gradients(st, grads, tx, cfg)
  assert float(m["grad_norm"]) == pytest.approx(5.0)
  np.testing.assert_allclose(new.params["w"], [1 - 0.6, 1.0, 1 - 0.8], rtol=1e-6)


def test_ema_tracks_params():
  cfg, tx, st = _setup(ema_decay=0.5, optimizer__grad_clip_norm=0.0)
  new, _ = step.apply_gradients(st, {"w": jnp.ones((3,)), "b": jnp.zeros(())}, tx, cfg)
  np.testing.assert_allclose(new.params["w"], 0.0)
  np.testing.assert_allclose(new.ema_params["w"], 0.5)


def test_no_ema_means_none():
  cfg, _, st = _setup(ema_decay=0.0)
  assert st.ema_params is None and st.eval_params is st.params


def test_unknown_optimizer_lists_valid():
  cfg = helpers.config(optimizer__name="rmsprop_typo")
  with pytest.raises(ValueError, match="adam, adamw, sgd, lamb"):
    optimizer.make_optimizer(cfg)


def test_warmup_cosine_schedule():
  cfg = helpers.config(optimizer__warmup_steps=10, optimizer__schedule="cosine", total_steps=110)
  lr = optimizer.learning_rate_schedule(cfg.optimizer, 110)
  assert float(lr(0)) == 0.0
  assert float(lr(10)) == pytest.approx(0.05)
  assert float(lr(110)) == pytest.approx(0.0, abs=1e-8)


def test_task_can_supply_its_own_train_step(tmp_path):
  """A task's make_train_step replaces the default step inside the one loop (e.g. a GAN)."""
  from collage.train import loop
  from tests.train.linreg_task import LinRegTask

  class HalfStepTask(LinRegTask):
    """Applies half the gradient, through the shared update helper."""

    def make_train_step(self, tx, config):
      def train_step(state, batch):
        (loss, _), grads = jax.value_and_grad(self.loss_fn, has_aux=True)(
            state.params, batch, step.step_rng(state))
        grads = jax.tree.map(lambda g: 0.5 * g, grads)
        new_state, metrics = step.apply_gradients(state, grads, tx, config)
        return new_state, {"loss": loss, "custom": jnp.ones(()), **metrics}
      return train_step

  cfg = helpers.config(total_steps=3, optimizer__name="sgd", optimizer__grad_clip_norm=0.0,
                       log_every=1, eval_every=0, checkpoint_every=100)
  half = loop.run(HalfStepTask(cfg), cfg, str(tmp_path / "half"), devices=jax.devices()[:1])
  full = loop.run(LinRegTask(cfg), cfg, str(tmp_path / "full"), devices=jax.devices()[:1])
  rows = [l for l in (tmp_path / "half" / "metrics.jsonl").read_text().splitlines() if "custom" in l]
  assert rows, "the custom step's metrics must be logged"
  assert not np.allclose(np.asarray(half.params["w"]), np.asarray(full.params["w"]))
