"""The NNX bridge: module <-> flat (params, model state) dicts, checkpoint-friendly keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from collage.nn.bridge import ModuleBridge


class _Net(nnx.Module):
  def __init__(self, rngs):
    self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)])
    self.norm = nnx.SpectralNorm(nnx.Linear(2, 2, rngs=rngs), rngs=rngs)

  def __call__(self, x, update_stats=False):
    for layer in self.layers:
      x = jax.nn.relu(layer(x))
    return self.norm(x, update_stats=update_stats)


def test_split_merge_round_trip_with_string_keys():
  bridge = ModuleBridge(nnx.eval_shape(lambda: _Net(nnx.Rngs(0))))
  net = _Net(nnx.Rngs(3))
  params, state = bridge.split(net)
  assert all(isinstance(k, str) for k in [*params, *state])
  assert "layers/0/kernel" in params and "norm/layer_instance/kernel" in params
  assert set(state) == {"norm/batch_stats/kernel.u", "norm/batch_stats/kernel.sigma"}
  x = jnp.ones((5, 3))
  np.testing.assert_array_equal(bridge.merge(params, state)(x), net(x))


def test_model_state_is_read_back_after_a_jitted_forward_pass():
  bridge = ModuleBridge(nnx.eval_shape(lambda: _Net(nnx.Rngs(0))))
  params, state = bridge.split(_Net(nnx.Rngs(1)))

  @jax.jit
  def forward(p, s, x):
    net = bridge.merge(p, s)
    return net(x, update_stats=True), bridge.model_state(net)

  _, new_state = forward(params, state, jnp.ones((2, 3)))
  assert new_state.keys() == state.keys()
  assert not np.array_equal(new_state["norm/batch_stats/kernel.u"],
                            state["norm/batch_stats/kernel.u"])


def test_parameters_of_another_architecture_are_a_clear_error():
  bridge = ModuleBridge(nnx.eval_shape(lambda: _Net(nnx.Rngs(0))))
  params, state = bridge.split(_Net(nnx.Rngs(1)))
  params.pop("layers/1/bias")
  with pytest.raises(KeyError, match=r"missing \['layers/1/bias'\]"):
    bridge.merge(params, state)
