"""MAGIC's model: set invariance, convex pooling, the regularisers' definitions, tiled = whole."""

import functools
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from collage.nn import magic as mg
from collage.nn.magic_render import TiledRenderer
from collage.nn.set_transformer import ISAB, SAB, apply_in_chunks


def _generator(warp="none", guided=True, seed=0, remat="none", **kw):
  cfg = mg.MagicConfig(guided=guided, width=4, depth=3, crop=16, refine_width=4, refine_depth=2,
                       disc_width=8, disc_depth=2, warp=warp, max_flow=2.0, heads=2, remat=remat,
                       **kw)
  g = mg.Generator(cfg, rngs=nnx.Rngs(seed))
  # Zero-initialised heads (warp, refinement) are the identity: make them do something.
  keys = iter(jax.random.split(jax.random.PRNGKey(seed + 1), 3))
  g.refiner.unet.head.kernel[...] = 0.3 * jax.random.normal(next(keys),
                                                            g.refiner.unet.head.kernel.shape)
  if warp == "affine":
    g.stunet.affine.kernel[...] = jax.random.normal(next(keys), g.stunet.affine.kernel.shape)
  if warp == "flow":
    g.stunet.unet.head.kernel[...] = 0.5 * jax.random.normal(next(keys),
                                                             g.stunet.unet.head.kernel.shape)
  return g


def _inputs(b, k, h, w, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.uniform(size=(b, k, h, w, 3)), jnp.float32),
          jnp.asarray(rng.uniform(size=(b, h, w, 3)), jnp.float32))


@pytest.mark.parametrize("warp", ["none", "affine", "flow"])
def test_permuting_the_set_leaves_the_collage_unchanged_and_pooling_is_convex(warp):
  g = _generator(warp)
  templates, content = _inputs(2, 5, 16, 16)
  out = g(templates, content)
  perm = jnp.array([3, 0, 4, 1, 2])
  permuted = g(templates[:, perm], content)
  # Summing the set in another order changes float32 rounding only. A flow warp samples the
  # random templates (pixel-to-pixel steps up to 1) at flowed coordinates, so its ~1e-6 px of
  # rounding reaches the collage ~20x larger (2.1e-5 at 1 of 1,536 values on an AVX-512 CPU,
  # before and after the mixed-precision change); a wrong permutation is off by ~0.1.
  tol = 1e-4 if warp == "flow" else 2e-5
  np.testing.assert_allclose(permuted.collage, out.collage, atol=tol)
  np.testing.assert_allclose(permuted.image, out.image, atol=tol)
  # A and the warps are permuted with the templates (equivariance)...
  np.testing.assert_allclose(permuted.weights, out.weights[:, perm], atol=2e-5)
  if warp == "affine":
    assert not np.allclose(out.warp.affine, out.warp.affine[:, :1])
    np.testing.assert_allclose(permuted.warp.affine, out.warp.affine[:, perm], atol=2e-5)
  if warp == "flow":
    assert float(jnp.max(jnp.abs(out.warp.flow))) > 0.1
  # ...A is a distribution over K at every pixel, and I_M a convex combination of warp(M).
  assert float(out.weights.min()) >= 0.0
  np.testing.assert_allclose(out.weights.sum(axis=1), 1.0, atol=1e-5)
  lo, hi = out.warped.min(axis=1), out.warped.max(axis=1)
  assert bool(jnp.all(out.collage >= lo - 1e-5)) and bool(jnp.all(out.collage <= hi + 1e-5))
  np.testing.assert_allclose(mg.set_pool(out.weights[:, perm], out.warped[:, perm]),
                             out.collage, atol=2e-5)


def test_a_different_k_at_inference_and_padded_sets():
  g = _generator()
  for k in (2, 7):
    templates, content = _inputs(1, k, 16, 16, seed=k)
    a = g(templates, content).weights
    assert a.shape == (1, k, 16, 16)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
  # Three real templates padded to five (set_mask) give the three-template collage.
  templates, content = _inputs(1, 5, 16, 16, seed=3)
  three = g(templates[:, :3], content)
  padded = g(templates.at[:, 3:].set(0.0), content, jnp.array([[1.0, 1.0, 1.0, 0.0, 0.0]]))
  np.testing.assert_array_equal(padded.weights[:, 3:], 0.0)
  np.testing.assert_allclose(padded.weights[:, :3], three.weights, atol=2e-5)
  np.testing.assert_allclose(padded.image, three.image, atol=2e-5)


_REMAT_INPUTS = _inputs(2, 3, 16, 16, seed=3)
_REMAT_MASK = jnp.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def _value_and_grad(g):
  """(value, gradient) of a loss of the generator's output on the training path (a pure
  function of the state), and the gradient's jaxpr."""
  templates, content = _REMAT_INPUTS
  graphdef, state = nnx.split(g)

  def loss(st):
    out = nnx.merge(graphdef, st)(templates, content, _REMAT_MASK)
    return jnp.sum(out.image ** 2) + jnp.sum(out.weights * out.collage.mean(-1)[:, None])

  jaxpr = str(jax.make_jaxpr(jax.grad(loss))(state))
  return jax.jit(jax.value_and_grad(loss))(state), jaxpr


@functools.cache
def _plain_value_and_grad():
  return _value_and_grad(_generator("affine"))


@pytest.mark.parametrize("remat,chunk", [("blocks", 0), ("nothing_saveable", 56),
                                         ("dots_with_no_batch_dims_saveable", 56)])
def test_remat_recomputes_but_changes_neither_the_output_nor_the_gradients(remat, chunk):
  # set_chunk=56 splits each example's 16 x 16 = 256 full-resolution sets into 5 chunks (the
  # last padded) and the coarser levels' 64 and 16 into 2 and 1.
  (value, grads), plain_jaxpr = _plain_value_and_grad()
  (value_r, grads_r), remat_jaxpr = _value_and_grad(_generator("affine", remat=remat,
                                                               set_chunk=chunk))
  assert float(value) == pytest.approx(float(value_r), rel=1e-6)
  leaves = [jax.tree.leaves(grads), jax.tree.leaves(grads_r)]
  assert len(leaves[0]) == len(leaves[1]) > 10
  # Conv biases before an instance norm have a zero gradient in exact arithmetic: float noise
  # there is compared on the scale of the whole gradient.
  scale = max(float(jnp.max(jnp.abs(a))) for a in leaves[0])
  for a, b in zip(*leaves):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5 * scale)
  assert "remat" not in plain_jaxpr and "checkpoint" not in plain_jaxpr
  assert "remat" in remat_jaxpr or "checkpoint" in remat_jaxpr  # the recomputation is there
  if chunk:
    assert "scan" in remat_jaxpr  # the set layers ran in chunks


def test_set_layers_are_permutation_equivariant_and_ignore_padding():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 6, 8))
  perm = jnp.array([5, 2, 0, 1, 4, 3])
  for layer in (SAB(8, 2, rngs=nnx.Rngs(0)), ISAB(8, 2, 3, rngs=nnx.Rngs(0))):
    np.testing.assert_allclose(layer(x[:, perm]), layer(x)[:, perm], atol=1e-5)
    mask = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    noisy = x.at[:, 4:].set(100.0)
    np.testing.assert_allclose(layer(noisy, mask)[:, :4], layer(x[:, :4])[:, :4], atol=1e-5)


def _textbook_attention(mha, q, kv, mask):
  """The set layers' attention as it was written before collage.nn.attention: q: [..., n, d],
  kv: [..., m, d], mask: [..., m] -> [..., n, d], with ``mha``'s parameters."""
  split = lambda x: x.reshape(*x.shape[:-1], mha.heads, x.shape[-1] // mha.heads)
  qh, kh, vh = split(mha.q(q)), split(mha.k(kv)), split(mha.v(kv))
  logits = jnp.einsum("...nhc,...mhc->...hnm", qh, kh) / jnp.sqrt(qh.shape[-1])
  logits = jnp.where(mask[..., None, None, :] > 0, logits, jnp.finfo(logits.dtype).min)
  out = jnp.einsum("...hnm,...mhc->...nhc", jax.nn.softmax(logits, axis=-1), vh)
  return mha.out(out.reshape(*out.shape[:-2], -1))


def test_set_attention_through_the_shared_helper_equals_the_textbook_formula():
  keys = jax.random.split(jax.random.PRNGKey(4), 2)
  x = jax.random.normal(keys[0], (5, 7, 6, 8))                     # 35 sets of 6, width 8
  mask = (jax.random.uniform(keys[1], (5, 7, 6)) > 0.3).at[..., 0].set(True).astype(jnp.float32)
  for chunk in (0, 4):  # 4: the 35 sets in 9 chunks, the last padded
    layer = SAB(8, 2, chunk=chunk, rngs=nnx.Rngs(0))
    mha = layer.mab.attention
    np.testing.assert_allclose(mha(x, x, mask), _textbook_attention(mha, x, x, mask),
                               atol=2e-6, rtol=2e-6)
  # ISAB: the inducing points' queries are projected once and shared by every set.
  isab = ISAB(8, 2, 3, rngs=nnx.Rngs(1))
  mha = isab.summarise.attention
  points = jnp.broadcast_to(isab.points[...], (5, 7, 3, 8))
  np.testing.assert_allclose(mha(isab.points[...], x, mask),
                             _textbook_attention(mha, points, x, mask), atol=2e-6, rtol=2e-6)


@pytest.mark.parametrize("remat", ["none", "blocks"])
def test_set_layers_in_chunks_equal_the_whole(remat):
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 23, 5, 8))  # [batch, sets, K, d]
  mask = jnp.ones((2, 23, 5)).at[:, 3:9, 3:].set(0.0)
  layer = ISAB(8, 2, 3, rngs=nnx.Rngs(0))
  whole = layer(x, mask)
  for chunk in (4, 23, 50):
    np.testing.assert_allclose(apply_in_chunks(layer, x, mask, chunk, remat), whole, atol=1e-6)


def test_bfloat16_generator_and_discriminator_keep_float32_parameters_and_outputs():
  """The compute dtype changes the activations only: the same parameters (float32) give a
  bfloat16 collage close to the float32 one, a distribution A over K, float32 outputs."""
  templates, content = _inputs(2, 5, 16, 16, seed=7)
  f32 = _generator("flow", seed=4)
  bf16 = _generator("flow", seed=4, dtype="bfloat16")
  params = nnx.state(bf16, nnx.Param)
  assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype("float32")}
  jax.tree.map(np.testing.assert_array_equal, nnx.state(f32, nnx.Param), params)
  a, b = f32(templates, content), bf16(templates, content)
  for name in ("image", "collage", "weights", "logits", "warped"):
    assert getattr(b, name).dtype == jnp.float32, name
    assert bool(jnp.all(jnp.isfinite(getattr(b, name)))), name
  np.testing.assert_allclose(b.weights.sum(axis=1), 1.0, atol=1e-5)
  # bfloat16 keeps 8 bits of mantissa: a pixel's A can move by ~0.2 where logits are close
  # (measured: mean |difference| 0.007 / 0.003 / 0.005 for I / A / I_M, max 0.18).
  for name in ("image", "weights", "collage"):
    diff = jnp.abs(getattr(b, name) - getattr(a, name))
    assert float(diff.mean()) < 0.02 and float(diff.max()) < 0.5, name
  cfg = f32.cfg
  d32 = mg.Discriminator(cfg, rngs=nnx.Rngs(0))
  d16 = mg.Discriminator(mg.MagicConfig(**{**cfg.__dict__, "dtype": "bfloat16"}),
                         rngs=nnx.Rngs(0))
  l32, l16 = d32(a.image), d16(a.image)
  assert l16.dtype == jnp.float32 and l16.shape == l32.shape
  np.testing.assert_allclose(l16, l32, atol=0.05 * float(jnp.max(jnp.abs(l32))))


def test_regularisers_equal_their_definitions_on_hand_made_weights():
  k, h, w = 4, 6, 5
  labels = np.arange(h * w).reshape(h, w) % k
  one_hot = jnp.asarray(np.eye(k)[labels].transpose(2, 0, 1)[None], jnp.float32)
  np.testing.assert_allclose(mg.entropy(one_hot), 0.0, atol=1e-7)
  uniform = jnp.full((1, k, h, w), 1.0 / k)
  np.testing.assert_allclose(mg.entropy(uniform), np.log(k), rtol=1e-6)
  np.testing.assert_allclose(mg.total_variation(uniform), 0.0, atol=1e-7)
  constant = jnp.asarray(np.random.default_rng(0).dirichlet(np.ones(k)), jnp.float32)
  np.testing.assert_allclose(mg.total_variation(jnp.broadcast_to(constant[None, :, None, None],
                                                                 (1, k, h, w))), 0.0, atol=1e-7)
  # Left half template 0, right half template 1: each row crosses one edge, changing 2 weights.
  split = np.zeros((1, k, h, w), np.float32)
  split[0, 0, :, :2], split[0, 1, :, 2:] = 1.0, 1.0
  np.testing.assert_allclose(mg.total_variation(jnp.asarray(split)), 2.0 * h / (h * w), rtol=1e-6)
  copied = np.zeros((1, k, h, w), np.float32)
  copied[0, 2] = 1.0  # one template copied everywhere
  np.testing.assert_allclose(mg.largest_area(jnp.asarray(copied)), h * w)
  np.testing.assert_allclose(mg.largest_area(jnp.asarray(split)), h * 3)
  np.testing.assert_allclose(mg.largest_area(uniform), h * w / k, rtol=1e-6)


@pytest.mark.parametrize("warp", ["none", "flow"])
def test_tiled_rendering_equals_whole_image_rendering(warp):
  g = _generator(warp, seed=2)
  templates, content = (np.asarray(v[0]) for v in _inputs(1, 3, 40, 48, seed=5))
  renderer = TiledRenderer(g)
  # Statistics from the whole canvas: the whole-image rendering is the plain forward pass.
  whole = renderer(templates, content, tile=None, window=0)
  plain = g(jnp.asarray(templates[None]), jnp.asarray(content[None]))
  np.testing.assert_allclose(whole["image"], plain.image[0], atol=1e-4)
  calls = []
  tiled = renderer(templates, content, tile=8, window=0,
                   progress=lambda done, total: calls.append((done, total)))
  assert tiled["tiles"] == 30 and tiled["halo"] >= g.radius()
  assert calls == [(i, 30) for i in range(1, 31)]  # a long poster can show tiles done / total
  for name in ("image", "collage", "weights_rgb"):
    assert np.abs(tiled[name] - whole[name]).max() < 1.0 / 255.0, name
    np.testing.assert_allclose(tiled[name], whole[name], atol=1e-4)


def test_tiled_rendering_replays_a_windows_statistics_and_affine_warps():
  g = _generator("affine", seed=3)
  templates, content = (np.asarray(v[0]) for v in _inputs(1, 3, 40, 40, seed=6))
  renderer = TiledRenderer(g)
  whole = renderer(templates, content, tile=None, window=16)
  tiled = renderer(templates, content, tile=16, window=16)
  np.testing.assert_allclose(tiled["image"], whole["image"], atol=1e-4)
  # A canvas that is not a multiple of the alignment is padded and cropped back.
  odd = renderer(templates[:, :37, :35], content[:37, :35], tile=16, window=16)
  assert odd["image"].shape == (37, 35, 3) and odd["argmax"].shape == (37, 35)


def test_bad_configs_and_inputs_name_the_valid_choices():
  with pytest.raises(ValueError, match="none, affine, flow"):
    mg.MagicConfig(warp="spline")
  with pytest.raises(ValueError, match="multiple of"):
    mg.MagicConfig(crop=20, depth=4)
  with pytest.raises(ValueError, match="nothing_saveable"):
    mg.MagicConfig(remat=True)
  with pytest.raises(ValueError, match="bfloat16"):
    mg.MagicConfig(dtype="float16")
  with pytest.raises(ValueError, match="set_chunk"):
    mg.MagicConfig(set_chunk=-1)
  with pytest.raises(ValueError, match="content"):
    TiledRenderer(_generator())(np.zeros((2, 16, 16, 3), np.float32), None)
