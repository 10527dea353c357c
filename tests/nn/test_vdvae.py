"""VDVAE's pieces: block strings, the Gaussian KL, initialisation, parameter counts, the
Collage-VDVAE head's resolution consistency, remat and bfloat16 compute."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from collage.nn import vdvae as V
from collage.nn import vdvae_blocks as vb
from collage.ops import blocks

CIFAR_ENC = "32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3"
CIFAR_DEC = "1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21"
SMALL = dict(image_size=8, channels=1, width=8, zdim=2, num_mix=2,
             enc_blocks="8x2,8d2,4d4,1x1", dec_blocks="1x1,4m1,4x1,8m4,8x1")


def test_block_strings_parse_and_round_trip():
  enc = vb.parse_blocks(CIFAR_ENC, "enc")
  assert len(enc) == 11 + 1 + 6 + 1 + 6 + 1 + 3 + 1 + 3
  assert enc[10:12] == [(32, None), (32, 2)] and enc[-4] == (4, 4)
  dec = vb.parse_blocks(CIFAR_DEC, "dec")
  assert dec[:3] == [(1, None), (4, 1), (4, None)] and len(dec) == 43
  assert vb.format_blocks(enc, "enc") == CIFAR_ENC
  assert vb.format_blocks(dec, "dec") == CIFAR_DEC
  assert vb.parse_blocks("4,4,8m4", "dec") == [(4, None), (4, None), (8, 4)]


@pytest.mark.parametrize("spec,kind,token", [
    ("32x11,32q2,16x6", "enc", "32q2"), ("32x11,,16", "enc", ""), ("1x1,4d1", "dec", "4d1"),
    ("1x1,4m", "dec", "4m"), ("32x0", "enc", "32x0"), ("a", "dec", "a")])
def test_a_malformed_block_string_names_the_bad_token(spec, kind, token):
  with pytest.raises(ValueError, match=f"bad token '{token}'.*valid tokens"):
    vb.parse_blocks(spec, kind)


def test_impossible_architectures_are_clear_errors():
  with pytest.raises(ValueError, match="encoder block 2 is at resolution 8.*at 4x4"):
    V.VDVAEConfig(**{**SMALL, "enc_blocks": "8x1,8d2,8x1"})
  with pytest.raises(ValueError, match="mixes in resolution 2"):
    V.VDVAEConfig(**{**SMALL, "dec_blocks": "1x1,4m2,8m4"})
  with pytest.raises(ValueError, match="last decoder block must be at the image size 8"):
    V.VDVAEConfig(**{**SMALL, "dec_blocks": "1x1,4m1"})
  with pytest.raises(ValueError, match="unknown VDVAE head 'pixel'.*pixels, collage"):
    V.VDVAEConfig(**{**SMALL, "head": "pixel"})


@pytest.fixture(scope="module", name="small")
def small_model():
  return V.VDVAE(V.VDVAEConfig(**SMALL), rngs=nnx.Rngs(1))


@pytest.fixture(scope="module", name="collage")
def collage_model():
  cfg = V.VDVAEConfig(**{**SMALL, "head": "collage", "range_size": 2, "num_aux": 3,
                         "isometries": 8, "decode_steps": 3})
  return V.VDVAE(cfg, rngs=nnx.Rngs(2))


def test_the_built_model_is_the_architecture_its_strings_name(small):
  model = small
  assert model.architecture() == ("8x2,8d2,4d4,1x1", "1x1,4m1,4x1,8m4,8x1")
  # 3x3 convs at resolution > 2, 1x1 at <= 2; the encoder's last block is at 1x1.
  assert model.blocks[0].resnet.c2.kernel.shape == (1, 1, 2, 2)
  assert model.blocks[1].resnet.c2.kernel.shape == (3, 3, 2, 2)
  assert model.encoder.blocks[-1].c3.kernel.shape == (1, 1, 2, 2)
  assert model.bias_res == (1, 4, 8)


def test_initialisation_follows_openai_vdvae():
  cfg = V.VDVAEConfig(**{**SMALL, "width": 32, "zdim": 4})
  model = V.VDVAE(cfg, rngs=nnx.Rngs(0))
  n_dec, n_enc = len(cfg.decoder_layout), len(cfg.encoder_layout)
  block = model.blocks[2]
  assert not np.any(np.asarray(block.prior.c4.kernel[...]))       # the prior starts at zero
  bound = lambda conv, s: s / math.sqrt(math.prod(conv.kernel.shape[:-1]))  # U(-b, b) of PyTorch
  for conv, s in [(block.z_proj, math.sqrt(1 / n_dec)), (block.resnet.c4, math.sqrt(1 / n_dec)),
                  (model.encoder.blocks[0].c4, math.sqrt(1 / n_enc)), (block.resnet.c1, 1.0)]:
    k = np.abs(np.asarray(conv.kernel[...]))
    assert k.max() <= bound(conv, s) and k.max() > 0.9 * bound(conv, s)
    assert not np.any(np.asarray(conv.bias[...]))


def test_gaussian_kl_is_the_closed_form():
  rng = np.random.default_rng(0)
  mq, mp, lq, lp = (rng.normal(size=50) for _ in range(4))
  vq, vp = np.exp(2 * lq), np.exp(2 * lp)
  closed = 0.5 * (np.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1.0)
  got = np.asarray(vb.gaussian_kl(*(jnp.asarray(a, jnp.float32) for a in (mq, lq, mp, lp))))
  np.testing.assert_allclose(got, closed, rtol=1e-5, atol=1e-6)
  # and a Monte Carlo estimate E_q[log q - log p] for one pair
  z = mq[0] + np.exp(lq[0]) * rng.normal(size=400_000)
  log_n = lambda z, m, ls: -0.5 * ((z - m) / np.exp(ls)) ** 2 - ls
  mc = np.mean(log_n(z, mq[0], lq[0]) - log_n(z, mp[0], lp[0]))
  assert mc == pytest.approx(closed[0], abs=0.02 * max(1.0, closed[0]))


def test_rate_is_the_sum_of_the_blocks_kl_per_dimension(small):
  model = small
  x = jnp.round(jax.random.uniform(jax.random.PRNGKey(0), (3, 8, 8, 1)) * 255) / 255
  keys = jax.random.split(jax.random.PRNGKey(1), 3)

  @jax.jit
  def both(x, keys):
    acts, xs, kl = model.encoder(x), model._start(), 0.0  # pylint: disable=protected-access
    for i, block in enumerate(model.blocks):
      xs, k = block(xs, acts[block.res], V._fold(keys, i))  # pylint: disable=protected-access
      kl = kl + jnp.sum(k, axis=(1, 2, 3))
    return model(x, keys), kl

  out, kl = both(x, keys)
  np.testing.assert_allclose(out["rate"], kl / 64, rtol=1e-5)
  np.testing.assert_allclose(out["elbo"], out["rate"] + out["distortion"], rtol=1e-6)
  assert np.all(np.asarray(out["rate"]) >= 0)


@pytest.mark.parametrize("head", ["pixels", "collage"])
def test_param_count_arithmetic_equals_the_built_module(head):
  cfg = V.VDVAEConfig(**{**SMALL, "head": head, "range_size": 2, "num_aux": 3})
  assert V.param_count(cfg) == V.count_params(cfg)


@pytest.mark.parametrize("name,paper", [("cifar10", 39e6), ("imagenet32", 119e6),
                                        ("imagenet64", 125e6), ("ffhq256", 115e6)])
def test_paper_sized_configs_match_the_papers_parameter_counts(name, paper):
  from experiments.configs import vdvae as configs  # pylint: disable=g-import-not-at-top
  cfg = V.VDVAEConfig(**configs.get_config(name).model.to_dict())
  assert abs(V.param_count(cfg) - paper) / paper < 0.01


def test_collage_decode_at_scale_k_pools_back_to_scale_1_and_samples_have_its_shape(
    collage, small):
  model = collage
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  top = jax.jit(lambda k: model.prior_features(k, 0.9))(keys)     # the latents: scale-free
  head = jax.jit(model.likelihood, static_argnums=1)
  pixels = jax.jit(model.sample_pixels)
  base = np.asarray(head(top, 1))
  assert base.shape == (3, 8, 8, 6)
  for k in (1, 2, 4):
    params = head(top, k)
    assert params.shape == (3, 8 * k, 8 * k, 6)
    np.testing.assert_allclose(blocks.mean_pool(params, k), base, rtol=1e-4, atol=1e-5)
    x = np.asarray(pixels(keys, params))
    assert x.shape == (3, 8 * k, 8 * k, 1) and x.min() >= 0 and x.max() <= 1
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-3)
  with pytest.raises(ValueError, match="only the collage head"):
    small.likelihood(jnp.zeros((1, 8, 8, 8)), 2)


def _loss_and_grads(cfg, x, keys):
  """The mean negative ELBO of VDVAE(cfg) (parameters from Rngs(4)) and its gradient."""
  model = V.VDVAE(cfg, rngs=nnx.Rngs(4))
  graphdef, params = nnx.split(model, nnx.Param)
  loss = lambda p: jnp.mean(nnx.merge(graphdef, p)(x, keys)["elbo"])
  return jax.jit(jax.value_and_grad(loss))(params)


@pytest.fixture(scope="module", name="remat_case")
def remat_case_fixture():
  cfg = V.VDVAEConfig(**{**SMALL, "head": "collage", "range_size": 2, "num_aux": 3})
  x = jnp.round(jax.random.uniform(jax.random.PRNGKey(6), (2, 8, 8, 1)) * 255) / 255
  keys = jax.random.split(jax.random.PRNGKey(7), 2)
  return cfg, x, keys, _loss_and_grads(cfg, x, keys)


@pytest.mark.parametrize("remat", ["blocks", "dots_with_no_batch_dims_saveable",
                                   "nothing_saveable"])
def test_remat_gives_the_value_and_gradient_of_none(remat_case, remat):
  cfg, x, keys, (value, grads) = remat_case
  got_value, got_grads = _loss_and_grads(dataclasses.replace(cfg, remat=remat), x, keys)
  np.testing.assert_allclose(got_value, value, rtol=1e-6)
  flat, got = jax.tree.leaves(grads), jax.tree.leaves(got_grads)
  assert len(flat) == len(got) > 0
  for g, h in zip(flat, got):
    np.testing.assert_allclose(h, g, rtol=1e-5, atol=1e-6 * float(np.abs(g).max() + 1e-30))


def test_a_bad_precision_setting_is_a_clear_error():
  with pytest.raises(ValueError, match="model.dtype='float16'.*valid: float32, bfloat16"):
    V.VDVAEConfig(**{**SMALL, "dtype": "float16"})
  with pytest.raises(ValueError, match="model.remat='all'.*valid: none, blocks"):
    V.VDVAEConfig(**{**SMALL, "remat": "all"})
  with pytest.raises(ValueError, match="param_dtype='bfloat16'"):
    V.VDVAEConfig(**{**SMALL, "param_dtype": "bfloat16"})


@pytest.mark.parametrize("head", ["pixels", "collage"])
def test_bfloat16_runs_the_blocks_in_bfloat16_and_the_likelihood_and_kl_in_float32(head):
  """Parameters stay float32; every block conv runs in bfloat16, the head in float32; the
  ELBO's terms are float32 and within 2% of the float32 model's (same parameters)."""
  cfg = V.VDVAEConfig(**{**SMALL, "head": head, "range_size": 2, "num_aux": 3})
  low = dataclasses.replace(cfg, dtype="bfloat16")
  x = jnp.round(jax.random.uniform(jax.random.PRNGKey(8), (3, 8, 8, 1)) * 255) / 255
  keys = jax.random.split(jax.random.PRNGKey(9), 3)
  model = V.VDVAE(low, rngs=nnx.Rngs(5))
  params = nnx.state(model, nnx.Param)
  assert {v.dtype for v in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  convs = [e for e in jax.make_jaxpr(lambda x, k: model(x, k))(x, keys).jaxpr.eqns
           if e.primitive.name == "conv_general_dilated"]
  kinds = [e.outvars[0].aval.dtype for e in convs]
  n_head = 1  # the pixel head's 1x1 conv, or the collage head's projection
  assert kinds.count(jnp.dtype(jnp.bfloat16)) == len(convs) - n_head
  assert kinds.count(jnp.dtype(jnp.float32)) == n_head
  ref_model = V.VDVAE(cfg, rngs=nnx.Rngs(5))
  jax.tree.map(np.testing.assert_array_equal, nnx.state(ref_model, nnx.Param), params)
  out = jax.jit(lambda x, k: model(x, k))(x, keys)
  ref = jax.jit(lambda x, k: ref_model(x, k))(x, keys)
  for name in ("elbo", "distortion", "rate"):
    assert out[name].dtype == jnp.float32 and np.all(np.isfinite(out[name]))
    np.testing.assert_allclose(out[name], ref[name], rtol=0.02, atol=1e-4)
  samples = jax.jit(lambda k: model.sample(k, 0.9, 2 if head == "collage" else 1))(keys)
  assert samples.dtype == jnp.float32 and np.all(np.isfinite(samples))


def test_init_rngs_draws_the_keys_of_nnx_rngs_eagerly_and_under_jit():
  """The host counter gives nnx.Rngs(params=key)'s keys in order (a traced key folded with a
  host counter must not see the counter's later values)."""
  def draws(make, key):
    rngs = make(key)
    return jnp.stack([jax.random.key_data(rngs.params()) for _ in range(3)])

  key = jax.random.PRNGKey(3)
  want = np.asarray(jax.jit(lambda k: draws(lambda k: nnx.Rngs(params=k), k))(key))
  assert len({tuple(row) for row in want}) == 3
  np.testing.assert_array_equal(jax.jit(lambda k: draws(V.init_rngs, k))(key), want)
  np.testing.assert_array_equal(draws(V.init_rngs, key), want)
