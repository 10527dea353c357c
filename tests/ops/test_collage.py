"""The collage operator: structure, parameter layout, contractivity, Banach, resolution."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.ops import blocks
from collage.ops import collage as co

# Overlapping domains, all 8 isometries, two auxiliary sources.
SPEC = co.CollageSpec(image_size=(16, 16), range_size=4, domain_size=8, domain_stride=4,
                      isometries=tuple(range(8)), num_aux=2, channels=3, s_max=0.7)
# The restricted collage of fractalization: the whole image is the only domain.
WHOLE = co.CollageSpec(image_size=(16, 8), range_size=(2, 2), isometries=(0, 2, 4, 6),
                       channels=2, s_max=0.8)


def _params(spec, seed, batch=2, stddev=1.0):
  rw, rb = co.init_raw(spec, jax.random.PRNGKey(seed), batch, stddev=stddev)
  rb = rb + 0.3 * jax.random.normal(jax.random.PRNGKey(seed + 100), rb.shape)
  return co.params_from_raw(spec, rw, rb)


def _aux(spec, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), spec.aux_shape()) if spec.num_aux else None


def _img(spec, seed, batch=2, scale=1):
  h, w = spec.image_size
  return jax.random.uniform(jax.random.PRNGKey(seed),
                            (batch, h * scale, w * scale, spec.channels))


def _sup(x):
  return float(jnp.max(jnp.abs(x)))


# -- structure ---------------------------------------------------------------------------
def test_sizes_and_layout():
  assert SPEC.range_grid == (4, 4) and SPEC.num_ranges == 16
  assert SPEC.domain_grid == (3, 3) and SPEC.num_domains == 9
  assert SPEC.num_domain_candidates == 72 and SPEC.num_candidates == 74
  assert co.num_ranges(SPEC) == 16 and co.num_candidates(SPEC) == 74
  assert SPEC.param_shapes(5) == co.CollageParams((5, 3, 16, 74), (5, 3, 16))
  assert WHOLE.domain_block == (16, 8) and WHOLE.pool_factor == (8, 4)
  assert WHOLE.num_candidates == 4
  assert SPEC.at_scale(2).image_size == (32, 32) and SPEC.at_scale(2).domain_stride == (8, 8)
  assert hash(SPEC) == hash(co.CollageSpec((16, 16), (4, 4), (8, 8), (4, 4), range(8), 2, 3, 0.7))


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=16, range_size=5), "does not tile"),
    (dict(image_size=16, range_size=4, domain_size=6), "multiple of the range size"),
    (dict(image_size=16, range_size=4, domain_size=8, domain_stride=3), "do not tile"),
    (dict(image_size=16, range_size=4, domain_size=32), "fit the"),
    (dict(image_size=16, range_size=(4, 2), isometries=(0, 1)), "square range"),
    (dict(image_size=16, range_size=4, isometries=(0, 0)), "distinct"),
    (dict(image_size=16, range_size=4, isometries=(8,)), "distinct indices in 0..7"),
    (dict(image_size=16, range_size=4, s_max=1.0), "s_max"),
])
def test_bad_specs_raise_clear_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    co.CollageSpec(**kwargs)


def test_bad_inputs_raise():
  p = _params(SPEC, 0)
  with pytest.raises(ValueError, match="num_aux=2"):
    co.apply(SPEC, p, _img(SPEC, 1))
  with pytest.raises(ValueError, match="image at scale 2"):
    co.apply(SPEC, p, _img(SPEC, 1), _aux(SPEC), scale=2)
  with pytest.raises(ValueError, match=r"\[B, C, R, K\]"):
    co.apply(SPEC, co.CollageParams(p.weight[..., 1:], p.bias), _img(SPEC, 1), _aux(SPEC))
  with pytest.raises(ValueError, match="positive integer"):
    co.decode(SPEC, p, _aux(SPEC), steps=3, scale=1.5)
  with pytest.raises(ValueError, match="exactly one of steps"):
    co.decode(SPEC, p, _aux(SPEC))


def _reference_apply(spec, params, z, aux):
  """Loop-by-loop numpy version of the module doc's definition (scale 1)."""
  z, w, bias = (np.asarray(a, np.float64) for a in (z, params.weight, params.bias))
  (rh, rw), (dh, dw), (sh, sw) = spec.range_size, spec.domain_block, spec.stride
  (fh, fw), (gh, gw) = spec.pool_factor, spec.domain_grid
  out = np.zeros_like(z)
  for b in range(z.shape[0]):
    cands = []
    for di, dj in itertools.product(range(gh), range(gw)):
      dom = z[b, di * sh:di * sh + dh, dj * sw:dj * sw + dw]
      pooled = dom.reshape(rh, fh, rw, fw, -1).mean(axis=(1, 3))
      for k in spec.isometries:
        cands.append(np.asarray(blocks.isometry(jnp.asarray(pooled), k)))
    if aux is not None:
      cands += list(np.asarray(aux, np.float64))
    for r, (i, j) in enumerate(itertools.product(*map(range, spec.range_grid))):
      block = sum(w[b, :, r, c] * cand for c, cand in enumerate(cands)) + bias[b, :, r]
      out[b, i * rh:(i + 1) * rh, j * rw:(j + 1) * rw] = block
  return out


@pytest.mark.parametrize("spec", [SPEC, WHOLE], ids=["overlap+aux", "whole"])
def test_apply_matches_loop_reference(spec):
  p, z, aux = _params(spec, 0), _img(spec, 1), _aux(spec)
  got = co.apply(spec, p, z, aux)
  np.testing.assert_allclose(got, _reference_apply(spec, p, z, aux), atol=1e-5)


def test_candidates_are_distinct_permutations_of_the_pooled_domain():
  spec = co.CollageSpec(image_size=8, range_size=4, isometries=tuple(range(8)), channels=1)
  z = _img(spec, 3, batch=1)
  cands = np.asarray(co.candidates(spec, z))[0]  # [8, 4, 4, 1]
  pooled = np.asarray(blocks.mean_pool(z, 2))[0]
  for c in cands:  # a bijection on pixels: the same multiset of values
    np.testing.assert_array_equal(np.sort(c.ravel()), np.sort(pooled.ravel()))
  flat = cands.reshape(8, -1)
  assert len({tuple(np.round(r, 6)) for r in flat}) == 8


def test_per_image_aux_and_shared_aux_agree():
  p, z, aux = _params(SPEC, 0), _img(SPEC, 1), _aux(SPEC)
  np.testing.assert_allclose(co.apply(SPEC, p, z, aux),
                             co.apply(SPEC, p, z, jnp.stack([aux, aux])), atol=1e-6)


def test_jit_and_vmap():
  p, z, aux = _params(SPEC, 0), _img(SPEC, 1), _aux(SPEC)
  ref = co.apply(SPEC, p, z, aux)
  jitted = jax.jit(co.apply, static_argnums=(0, 4))(SPEC, p, z, aux, 1)
  np.testing.assert_allclose(jitted, ref, atol=1e-6)
  one = lambda pp, zz: co.apply(SPEC, jax.tree.map(lambda a: a[None], pp), zz[None], aux)[0]
  np.testing.assert_allclose(jax.vmap(one)(p, z), ref, atol=1e-6)


# -- contractivity -----------------------------------------------------------------------
def test_params_from_raw_is_contractive_and_invertible():
  rw, rb = co.init_raw(SPEC, jax.random.PRNGKey(0), 3, stddev=100.0)
  p = co.params_from_raw(SPEC, rw, rb)
  s = co.contraction_factor(SPEC, p)
  assert s.shape == (3,) and bool(jnp.all(s < SPEC.s_max)) and bool(jnp.all(s > 0.6))
  np.testing.assert_array_equal(p.weight[..., -2:], rw[..., -2:])  # aux weights untouched
  small = co.params_from_raw(SPEC, *co.init_raw(SPEC, jax.random.PRNGKey(1), 3, stddev=0.3))
  rw2, _ = co.raw_from_params(SPEC, small)
  np.testing.assert_allclose(co.params_from_raw(SPEC, rw2, small.bias).weight, small.weight,
                             atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_operator_is_a_sup_norm_contraction(seed):
  p, aux = _params(SPEC, seed), _aux(SPEC)
  x, y = _img(SPEC, seed + 10), _img(SPEC, seed + 20)
  lhs = _sup(co.apply(SPEC, p, x, aux) - co.apply(SPEC, p, y, aux))
  assert lhs <= float(jnp.max(co.contraction_factor(SPEC, p))) * _sup(x - y) + 1e-6


def test_banach_two_starts_same_fixed_point():
  p, aux = _params(SPEC, 0), _aux(SPEC)
  a = co.decode(SPEC, p, aux, steps=80, start=0.0)
  b = co.decode(SPEC, p, aux, steps=80, start=_img(SPEC, 5) * 4.0 - 2.0)
  assert _sup(a - b) < 1e-5
  assert _sup(co.apply(SPEC, p, a, aux) - a) < 1e-5  # and it is a fixed point


@pytest.mark.parametrize("seed", range(5))
def test_collage_theorem_bound(seed):
  """|x - x*| <= |x - T(x)| / (1 - s) in the sup norm (Barnsley's collage theorem)."""
  spec = SPEC if seed % 2 else WHOLE
  p, aux = _params(spec, seed, stddev=3.0), _aux(spec)
  x_star = co.decode(spec, p, aux, steps=120)
  s = co.contraction_factor(spec, p)
  for j in range(3):
    x = _img(spec, 100 * seed + j)
    dist = jnp.max(jnp.abs(x - x_star), axis=(1, 2, 3))
    bound = jnp.max(jnp.abs(x - co.apply(spec, p, x, aux)), axis=(1, 2, 3)) / (1 - s)
    assert bool(jnp.all(dist <= bound + 1e-5)), (dist, bound)


def test_tolerance_decode_matches_fixed_steps():
  p, aux = _params(SPEC, 2), _aux(SPEC)
  a = co.decode(SPEC, p, aux, tol=1e-7, max_steps=500)
  b = co.decode(SPEC, p, aux, steps=100)
  assert _sup(a - b) < 1e-5
  traj = co.decode_trajectory(SPEC, p, aux, steps=7)
  assert traj.shape == (8, 2, 16, 16, 3)
  np.testing.assert_allclose(traj[-1], co.decode(SPEC, p, aux, steps=7), atol=1e-6)
  np.testing.assert_array_equal(traj[0], jnp.full_like(traj[0], 0.5))


# -- resolution --------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [SPEC, WHOLE], ids=["overlap+aux", "whole"])
@pytest.mark.parametrize("scale", [2, 4])
def test_mean_pooled_scale_k_decode_equals_scale_1(spec, scale):
  p, aux = _params(spec, 7), _aux(spec)
  x1 = co.decode(spec, p, aux, steps=80)
  xk = co.decode(spec, p, aux, steps=80, scale=scale)
  h, w = spec.image_size
  assert xk.shape == (2, h * scale, w * scale, spec.channels)
  assert _sup(blocks.mean_pool(xk, scale) - x1) < 1e-4


@pytest.mark.parametrize("channels", [1, 5])
def test_any_channel_count(channels):
  spec = co.CollageSpec(image_size=8, range_size=2, domain_size=4, channels=channels,
                        isometries=(0, 3))
  x = co.decode(spec, _params(spec, 0, batch=1), steps=5, scale=2)
  assert x.shape == (1, 16, 16, channels) and bool(jnp.all(jnp.isfinite(x)))
