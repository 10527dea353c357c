"""One network's update: clipping, skipping of bad updates (counted per network), EMA, schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.train import optimizer, state as state_lib, step
from collage.train.errors import ConfigError
from tests.train import helpers


def _setup(ema_decay=0.0, **overrides):
  cfg = helpers.config(**{"optimizer__name": "sgd", "optimizer__learning_rate": 1.0,
                          "optimizer__ema_decay": ema_decay, **overrides})
  tx = optimizer.make_optimizer(cfg.optimizer, int(cfg.total_steps))
  params = {"model": {"w": jnp.ones((3,)), "b": jnp.zeros(())}}
  ema = ("model",) if ema_decay > 0 else ()
  st = state_lib.create_state(params, {}, {"model": tx}, jax.random.PRNGKey(0), ema)
  update = step.NetworkUpdate({"model": tx}, {"model": ema_decay} if ema_decay > 0 else {})
  return update, st


def _grads(w, b=0.0):
  return {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)}


def test_nonfinite_gradient_is_skipped_and_counted():
  update, st = _setup(ema_decay=0.5, optimizer__name="adamw", optimizer__weight_decay=0.1)
  st, _ = update(st, "model", _grads([1.0, 2.0, 3.0]))  # an applied step: non-trivial state
  new, m = update(st, "model", _grads([1.0, jnp.nan, 0.0]))
  opt = new.opt_state["model"]
  assert int(opt.skipped_nonfinite) == 1 and int(opt.skipped_large) == 0
  assert float(m["model/skipped"]) == 1.0
  # Neither parameters, the optimizer's moments nor the EMA move on a skipped update.
  for field in ("params", "ema_params"):
    jax.tree.map(np.testing.assert_array_equal, getattr(new, field), getattr(st, field))
  jax.tree.map(np.testing.assert_array_equal, opt.inner, st.opt_state["model"].inner)


def test_gradient_above_threshold_is_skipped_and_counted():
  update, st = _setup(optimizer__skip_threshold=5.0)
  new, _ = update(st, "model", _grads(np.full(3, 10.0)))
  np.testing.assert_array_equal(new.params["model"]["w"], st.params["model"]["w"])
  assert int(new.opt_state["model"].skipped_large) == 1
  new2, m = update(new, "model", _grads(np.full(3, 0.1)))
  assert float(m["model/skipped"]) == 0.0 and int(new2.opt_state["model"].skipped_large) == 1
  assert not np.allclose(new2.params["model"]["w"], st.params["model"]["w"])


def test_gradient_is_clipped_to_global_norm():
  update, st = _setup(optimizer__grad_clip_norm=1.0)
  new, m = update(st, "model", _grads([3.0, 0.0, 4.0]))  # norm 5
  assert float(m["model/grad_norm"]) == pytest.approx(5.0)
  np.testing.assert_allclose(new.params["model"]["w"], [1 - 0.6, 1.0, 1 - 0.8], rtol=1e-6)


def test_ema_tracks_params():
  update, st = _setup(ema_decay=0.5, optimizer__grad_clip_norm=0.0)
  new, _ = update(st, "model", _grads(np.ones(3)))
  np.testing.assert_allclose(new.params["model"]["w"], 0.0)
  np.testing.assert_allclose(new.ema_params["model"]["w"], 0.5)


def test_no_ema_means_the_raw_params_are_evaluated():
  _, st = _setup(ema_decay=0.0)
  assert st.ema_params == {} and st.eval_params["model"] is st.params["model"]


def test_update_does_not_advance_the_step():
  update, st = _setup()
  new, _ = update(st, "model", _grads(np.ones(3)))
  assert int(new.step) == 0


def test_unknown_network_names_the_valid_ones():
  update, st = _setup()
  with pytest.raises(KeyError, match="networks are model"):
    update(st, "generator", _grads(np.ones(3)))


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "lamb"])
def test_optimizer_matches_optax_reference(name):
  """Direction x scheduled rate is the optax optimizer of the same name, step for step."""
  import optax
  cfg = helpers.config(optimizer__name=name, optimizer__learning_rate=0.1,
                       optimizer__weight_decay=0.01, optimizer__grad_clip_norm=0.0,
                       optimizer__warmup_steps=2, optimizer__schedule="cosine", total_steps=6)
  opt = cfg.optimizer
  lr = optimizer.learning_rate_schedule(opt, 6)
  reference = {"adam": lambda: optax.adam(lr, b1=opt.b1, b2=opt.b2),
               "adamw": lambda: optax.adamw(lr, b1=opt.b1, b2=opt.b2, weight_decay=0.01),
               "sgd": lambda: optax.sgd(lr),
               "lamb": lambda: optax.lamb(lr, b1=opt.b1, b2=opt.b2, weight_decay=0.01)}[name]()
  ours = optimizer.make_optimizer(opt, 6)
  p = {"w": jnp.array([1.0, -2.0, 3.0])}
  a, b = ours.init(p), reference.init(p)
  pa = pb = p
  for s in range(5):
    g = {"w": jnp.array([0.3, -0.1, 0.2]) * (s + 1)}
    ua, a = ours.update(g, a, pa, step=jnp.asarray(s))
    ub, b = reference.update(g, b, pb)
    pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
  np.testing.assert_allclose(pa["w"], pb["w"], rtol=1e-6)


def test_schedule_follows_the_global_step_not_the_update_count():
  """A network updated at step 7 for the first time gets step 7's rate (warmup: 7/10)."""
  cfg = helpers.config(optimizer__name="sgd", optimizer__learning_rate=1.0,
                       optimizer__warmup_steps=10, optimizer__grad_clip_norm=0.0)
  tx = optimizer.make_optimizer(cfg.optimizer, 100)
  p = {"w": jnp.zeros(())}
  u, _ = tx.update({"w": jnp.ones(())}, tx.init(p), p, step=jnp.asarray(7))
  assert float(u["w"]) == pytest.approx(-0.7)


def test_unknown_optimizer_lists_valid():
  cfg = helpers.config(optimizer__name="rmsprop_typo")
  with pytest.raises(ValueError, match="adam, adamw, sgd, lamb"):
    optimizer.make_optimizer(cfg.optimizer, 10)


def test_warmup_cosine_schedule():
  cfg = helpers.config(optimizer__warmup_steps=10, optimizer__schedule="cosine", total_steps=110)
  lr = optimizer.learning_rate_schedule(cfg.optimizer, 110)
  assert float(lr(0)) == 0.0
  assert float(lr(10)) == pytest.approx(0.05)
  assert float(lr(110)) == pytest.approx(0.0, abs=1e-8)


def test_optimizer_blocks_must_match_the_networks():
  from collage.train.config import training_defaults
  two = training_defaults(networks=("generator", "discriminator"))
  blocks = optimizer.network_blocks(two, ("generator", "discriminator"))
  assert set(blocks) == {"generator", "discriminator"}
  with pytest.raises(ConfigError, match="generator, critic"):
    optimizer.network_blocks(two, ("generator", "critic"))
  with pytest.raises(ConfigError, match="one block per network"):
    optimizer.network_blocks(training_defaults(), ("generator", "discriminator"))
  assert optimizer.network_blocks(training_defaults(), ("model",))["model"].name == "adamw"


def test_eval_sums_count_real_rows_only():
  metrics = {"per_row": jnp.array([1.0, 2.0, 3.0, 100.0]), "mean": jnp.array(2.0)}
  sums, count = step.weighted_sums(metrics, {"x": jnp.zeros((4, 2)),
                                             "mask": jnp.array([1.0, 1.0, 1.0, 0.0])})
  assert float(count) == 3.0 and float(sums["per_row"]) == 6.0 and float(sums["mean"]) == 6.0
  with pytest.raises(ValueError, match="one value per example"):
    step.weighted_sums({"bad": jnp.zeros((4, 2))}, {"x": jnp.zeros((4, 2))})


def test_task_can_supply_its_own_train_step(tmp_path):
  """A task's train_step replaces the default inside the one loop; the step advances once."""
  from collage.train import loop
  from tests.train.linreg_task import LinRegTask

  class HalfStepTask(LinRegTask):
    """Applies half the gradient, through the runtime's update."""

    def train_step(self, state, batch, rng, update):
      (loss, _), grads = jax.value_and_grad(self.loss_fn, has_aux=True)(
          state.params["model"], batch, rng)
      state, metrics = update(state, "model", jax.tree.map(lambda g: 0.5 * g, grads))
      return state, {"loss": loss, "custom": jnp.ones(()), **metrics}

  cfg = helpers.config(total_steps=3, optimizer__name="sgd", optimizer__grad_clip_norm=0.0,
                       log_every=1, eval_every=0, checkpoint_every=100)
  half = loop.run(HalfStepTask(cfg), cfg, str(tmp_path / "half"), devices=jax.devices()[:1])
  full = loop.run(LinRegTask(cfg), cfg, str(tmp_path / "full"), devices=jax.devices()[:1])
  rows = [l for l in (tmp_path / "half" / "metrics.jsonl").read_text().splitlines() if "custom" in l]
  assert len(rows) == 3, "the custom step's metrics must be logged at every step"
  assert int(half.step) == 3
  assert not np.allclose(np.asarray(half.params["model"]["w"]),
                         np.asarray(full.params["model"]["w"]))


def test_progress_restart_measures_the_rate_from_the_restart():
  import time as time_lib
  from collage.train.writer import Progress
  progress = Progress(0, 100)
  time_lib.sleep(0.5)         # the slow first step: compilation
  progress.restart(1)
  rate = progress.report(51, {})
  assert rate > 50 / 0.25     # counted from the restart; from the start it would be ~100/s
