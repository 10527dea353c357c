"""The DCTransformer's sampler as its own module: the loop state's shapes, one step draws one
element, greedy and tiny-nucleus draws are deterministic, the cache changes nothing, a prefix
is kept, and generate is the step function run to the end."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from collage.nn import dct_sampler as ds
from tests.nn import dct_tiny

LAYOUT, CAP, _model = dct_tiny.LAYOUT, dct_tiny.CAP, dct_tiny.model
B = 3


def _keys(n=B, seed=0):
  return jax.random.split(jax.random.PRNGKey(seed), n)


def _draw(keys, prefix=None, temperature=1.0, top_p=1.0, use_cache=True):
  return ds.Draw(keys=keys, prefix=ds.empty_prefix(keys.shape[0], CAP) if prefix is None
                 else prefix, temperature=jnp.float32(temperature), top_p=jnp.float32(top_p),
                 use_cache=use_cache, layout=LAYOUT)


@functools.lru_cache(maxsize=None)
def _generate(use_cache):
  """One compiled sampler per path: temperature, top-p and the prefix are traced."""
  return jax.jit(lambda k, p, t, tp: ds.generate(_model(), k, LAYOUT, CAP, prefix=p,
                                                 temperature=t, top_p=tp, use_cache=use_cache))


def _sample(keys, prefix=None, temperature=1.0, top_p=1.0, use_cache=True):
  prefix = ds.empty_prefix(keys.shape[0], CAP) if prefix is None else prefix
  return _generate(use_cache)(keys, prefix, jnp.float32(temperature), jnp.float32(top_p))


def test_the_state_has_the_documented_shapes():
  cfg = _model().cfg
  state = ds.init_state(_model(), B, CAP)
  assert state.t.shape == () and int(state.t) == 0
  for k in ("ranks", "positions", "values"):
    assert state.seq[k].shape == (B, CAP) and state.seq[k].dtype == jnp.int32, k
  assert np.all(np.asarray(state.seq["ranks"]) == cfg.channels)  # end-of-sequence everywhere
  assert np.all(np.asarray(state.seq["length"]) == CAP)
  assert state.done.shape == (B,) and state.done.dtype == jnp.bool_
  assert state.logprob.shape == (B, CAP) and state.logprob.dtype == jnp.float32
  assert state.enc.shape == (B, cfg.positions, cfg.dim)
  head_dim = cfg.dim // cfg.heads
  for name in ("chan", "pos", "val"):
    assert len(state.caches[name]) == cfg.decoder_layers == len(state.ctx[name])
    for keys, values in state.caches[name]:
      assert keys.shape == values.shape == (B, cfg.chunk, cfg.heads, head_dim)
  # A pytree: the while loop carries it.
  leaves = jax.tree.leaves(state)
  assert all(isinstance(x, jax.Array) for x in leaves)


def test_a_step_draws_one_element_and_advances_one_position():
  step = jax.jit(lambda s, k: ds.sample_step(_model(), _draw(k), s))
  state = ds.init_state(_model(), B, CAP)
  once = step(state, _keys())
  assert int(once.t) == 1
  twice = step(once, _keys())
  assert int(twice.t) == 2
  # Element 0 is drawn, element 1 only by the second step; the rest stays end-of-sequence.
  cfg = _model().cfg
  for s, drawn in ((once, 1), (twice, 2)):
    assert np.all(np.asarray(s.seq["ranks"])[:, drawn:] == cfg.channels)
    assert np.all(np.asarray(s.logprob)[:, drawn:] == 0.0)
    assert np.all(np.asarray(s.logprob)[~np.asarray(s.done), :drawn] < 0.0)
  np.testing.assert_array_equal(twice.seq["ranks"][:, :1], once.seq["ranks"][:, :1])
  # The first step read the empty image (a new chunk) and filled each decoder's cache at 0.
  assert np.any(np.asarray(once.caches["chan"][0][0])[:, 0] != 0)
  assert np.all(np.asarray(once.caches["chan"][0][0])[:, 1:] == 0)


def test_generate_is_the_step_run_until_every_sequence_ends():
  keys = _keys()
  out = _sample(keys)
  step = jax.jit(lambda s: ds.sample_step(_model(), _draw(keys), s))
  state = ds.init_state(_model(), B, CAP)
  while int(state.t) < CAP and not bool(np.all(np.asarray(state.done))):
    state = step(state)
  for k in ("ranks", "positions", "values", "length"):
    np.testing.assert_array_equal(out[k], state.seq[k], err_msg=k)
  np.testing.assert_array_equal(out["logprob"], state.logprob)


def test_greedy_and_a_tiny_nucleus_are_deterministic():
  greedy = _sample(_keys(seed=0), temperature=0.0)
  again = _sample(_keys(seed=1), temperature=0.0)   # other keys: the same greedy draw
  nucleus = _sample(_keys(seed=2), top_p=1e-6)       # only the top token survives
  for k in ("ranks", "positions", "values", "length"):
    np.testing.assert_array_equal(greedy[k], again[k], err_msg=k)
    np.testing.assert_array_equal(greedy[k], nucleus[k], err_msg=k)
  free = _sample(_keys(seed=0))
  assert any(not np.array_equal(free[k], greedy[k]) for k in ("ranks", "positions", "values"))


def test_the_cache_changes_nothing():
  keys = _keys()
  for temperature, top_p in ((1.0, 1.0), (0.8, 0.9)):
    cached = _sample(keys, temperature=temperature, top_p=top_p)
    full = _sample(keys, temperature=temperature, top_p=top_p, use_cache=False)
    for k in ("ranks", "positions", "values", "length"):
      np.testing.assert_array_equal(cached[k], full[k], err_msg=k)
    np.testing.assert_allclose(cached["logprob"], full["logprob"], atol=1e-4)


def test_a_prefix_is_forced_and_the_rest_is_drawn():
  free = _sample(_keys(seed=5))
  n = 5
  prefix = {k: free[k] for k in ("ranks", "positions", "values")}
  prefix["length"] = jnp.minimum(free["length"], n)
  out = _sample(_keys(seed=6), prefix=prefix)
  for b in range(B):
    m = int(prefix["length"][b])
    for k in ("ranks", "positions", "values"):
      np.testing.assert_array_equal(out[k][b, :m], free[k][b, :m], err_msg=k)


def test_draw_token_masks_and_keeps_the_nucleus():
  logits = jnp.asarray([[0.0, 5.0, 4.0, -1.0]] * 4)
  mask = jnp.asarray([[True, False, True, True]])
  keys = _keys(4)
  greedy = ds.draw_token(keys, logits, mask, jnp.float32(0.0), jnp.float32(1.0))
  np.testing.assert_array_equal(greedy, [2, 2, 2, 2])   # the best token the mask allows
  drawn = ds.draw_token(jax.random.split(jax.random.PRNGKey(1), 64),
                        jnp.zeros((64, 4)), mask, jnp.float32(1.0), jnp.float32(1.0))
  assert not np.any(np.asarray(drawn) == 1)               # never a masked token
