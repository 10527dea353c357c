"""DCTransformer: the chunked training path and the cached sampling path compute the same
probabilities; sampling keeps a prefix, depends on its own key only, and respects the order."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from collage.nn import dctransformer as dm
from collage.ops import sparse_dct

LAYOUT = sparse_dct.layout_for(16, 16, True, 4)   # 2x2 grid, 96 channels
CAP = 48


@functools.lru_cache(maxsize=1)
def _model():
  cfg = dm.DCTConfig(channels=LAYOUT.channels, positions=LAYOUT.positions, max_value=12,
                     chunk=16, dim=32, heads=2, encoder_layers=1, decoder_layers=1)
  return dm.DCTransformer(cfg, rngs=nnx.Rngs(3))


def _sequences(n=2, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    shape = (*LAYOUT.grid, LAYOUT.channels)
    image = np.where(rng.random(shape) < 0.1 + 0.05 * i, rng.integers(-12, 13, shape), 0)
    out.append(sparse_dct.encode(image, LAYOUT, CAP, truncate=True))
  return {k: jnp.asarray(np.stack([s[k] for s in out])) for k in ("ranks", "positions",
                                                                   "values", "length")}


@functools.lru_cache(maxsize=None)
def _jitted(use_cache):
  """One compiled sampler per path: temperature, top-p and the prefix are traced."""
  return jax.jit(lambda k, p, t, tp: dm.generate(_model(), k, LAYOUT, CAP, prefix=p,
                                                 temperature=t, top_p=tp, use_cache=use_cache))


def _generate(keys, prefix=None, use_cache=True, temperature=1.0, top_p=1.0):
  if prefix is None:  # unconditional: a prefix of length 0
    zeros = jnp.zeros((keys.shape[0], CAP), jnp.int32)
    prefix = {"ranks": zeros, "positions": zeros, "values": zeros,
              "length": jnp.zeros((keys.shape[0],), jnp.int32)}
  return _jitted(use_cache)(keys, prefix, jnp.float32(temperature), jnp.float32(top_p))


_chunk_logprobs = jax.jit(lambda seq, k: dm.chunk_logprobs(_model(), seq, k, LAYOUT)[0])
_sequence_logprob = jax.jit(lambda seq: dm.sequence_logprob(_model(), seq, LAYOUT))


def test_chunked_teacher_forcing_equals_the_cached_sampler_element_by_element():
  seq = _sequences()
  assert int(seq["length"].max()) > 2 * _model().cfg.chunk  # spans three chunks
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  for use_cache in (True, False):
    out = _generate(keys, seq, use_cache=use_cache)
    np.testing.assert_array_equal(out["ranks"], seq["ranks"])   # the forced prefix is kept
    np.testing.assert_array_equal(out["length"], seq["length"])
    per_chunk = []
    for k in range(CAP // _model().cfg.chunk):
      per_chunk.append(np.asarray(_chunk_logprobs(seq, jnp.full((2,), k))))
    np.testing.assert_allclose(np.concatenate(per_chunk, 1), out["logprob"], rtol=1e-4,
                               atol=1e-4)
  np.testing.assert_allclose(_sequence_logprob(seq),
                             np.concatenate(per_chunk, 1).sum(1), rtol=1e-5)


def test_a_conditional_sample_keeps_its_prefix_exactly():
  seq = _sequences(2, seed=1)
  n = jnp.asarray([7, 20])  # ends inside the first and the second chunk
  prefix = dict(seq, length=n)
  out = _generate(jax.random.split(jax.random.PRNGKey(5), 2), prefix)
  for b in range(2):
    for k in ("ranks", "positions", "values"):
      np.testing.assert_array_equal(out[k][b, :int(n[b])], seq[k][b, :int(n[b])])


def test_samples_depend_on_their_own_key_only_and_the_cache_changes_nothing():
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  a = _generate(keys[:2])
  b = _generate(keys[1:])  # key 1 beside another key: same sample (every call has 2 samples,
  for k in ("ranks", "positions", "values", "length"):  # so one compiled sampler serves all)
    np.testing.assert_array_equal(a[k][1], b[k][0])
  slow = _generate(keys[:2], use_cache=False)
  for k in ("ranks", "positions", "values"):
    np.testing.assert_array_equal(slow[k], a[k])


def test_samples_respect_the_order_and_decode():
  out = _generate(jax.random.split(jax.random.PRNGKey(2), 2))
  for b in range(2):
    n = int(out["length"][b]) - (1 if out["ranks"][b, int(out["length"][b]) - 1] ==
                                 LAYOUT.channels else 0)
    key = np.asarray(out["ranks"][b, :n]) * LAYOUT.positions + np.asarray(out["positions"][b, :n])
    assert np.all(np.diff(key) > 0)
    assert np.all(np.asarray(out["values"][b, :n]) != 0)
    image = sparse_dct.decode({k: out[k][b] for k in ("ranks", "positions", "values")}, LAYOUT)
    assert int(jnp.count_nonzero(image)) == n


def test_a_tiny_nucleus_is_greedy():
  keys = jax.random.split(jax.random.PRNGKey(4), 2)
  greedy = _generate(keys, temperature=0.0)
  nucleus = _generate(keys, top_p=1e-6)
  np.testing.assert_array_equal(greedy["ranks"], nucleus["ranks"])
  np.testing.assert_array_equal(greedy["values"], nucleus["values"])


def test_bad_architecture_is_a_clear_error():
  with pytest.raises(ValueError, match="not a multiple of heads"):
    dm.DCTransformer(dm.DCTConfig(channels=64, positions=4, max_value=3, dim=30, heads=4),
                     rngs=nnx.Rngs(0))
