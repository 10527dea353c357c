"""PIFS search, quadtree encoder and decoder (collage.ops.pifs, collage.ops.pifs_search)."""

import jax.numpy as jnp
import numpy as np
import pytest
from einops import rearrange

from collage.metrics.distortion import psnr
from collage.ops import blocks, pifs
from collage.ops import pifs_search as ps

QUANT = ps.Quantizer(5, 7, 0.9)


def smooth_image(h, w, seed=0):
  """A deterministic smooth-ish test image in [0, 1]."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w] / 8.0
  img = 0.5 + 0.25 * np.sin(x + 2 * np.sin(y / 2)) + 0.15 * np.cos(y * 1.3 - x * 0.4)
  img += 0.05 * rng.standard_normal((h, w))
  return np.clip(img, 0, 1).astype(np.float32)


def block_error(r, p, quant, s_idx, o_idx):
  """Direct float64 squared error of r against s*(p - mean p) + o_bar (quantized)."""
  s = -quant.s_max + s_idx * quant.s_step
  o = o_idx / (quant.o_levels - 1)
  p = p.astype(np.float64)
  return float(((r - (s * (p - p.mean()) + o)) ** 2).sum())


def reference_search(ranges, domains, quant):
  """The straightforward per-range loop: every domain, every isometry, quantized s and o."""
  # Every transformed domain once (not once per range: that dominated the test's time).
  doms = np.asarray(domains, np.float32)
  transformed = [[_pooled(d, k).astype(np.float64) for k in range(8)] for d in doms]
  out = []
  for r in np.asarray(ranges, np.float64):
    o_idx = int(np.clip(np.round(r.mean() * (quant.o_levels - 1)), 0, quant.o_levels - 1))
    best = (np.inf, None)
    for di in range(len(doms)):
      for k in range(8):
        p = transformed[di][k]
        pc = p - p.mean()
        v = (pc * pc).sum()
        s = (r * pc).sum() / v if v > 1e-10 * p.size else 0.0
        s_idx = int(np.clip(np.round((s + quant.s_max) / quant.s_step), 0, quant.s_levels - 1))
        err = block_error(r, p, quant, s_idx, o_idx)
        if err < best[0]:
          best = (err, (di, k, s_idx, o_idx))
    out.append(best)
  return out


def _pooled(d, k):
  return np.asarray(blocks.isometry(jnp.asarray(d)[..., None], int(k)))[..., 0]


@pytest.mark.parametrize("col_chunk,limit", [(64, 32 << 20), (7, 4096)])
def test_fast_search_matches_reference_loop(col_chunk, limit):
  img = jnp.asarray(smooth_image(24, 24, seed=1))
  ranges = rearrange(img, "(nh h) (nw w) -> (nh nw) h w", h=4, w=4)
  domains = ps.domain_pool(img, 4, 4)
  maps = ps.search(ranges, domains, QUANT, col_chunk=col_chunk, memory_limit_bytes=limit)
  ref = reference_search(ranges, domains, QUANT)
  doms = np.asarray(domains)
  for i, (ref_err, ref_map) in enumerate(ref):
    d, k, s, o = (int(np.asarray(f)[i]) for f in maps[:4])
    got = block_error(np.asarray(ranges[i], np.float64), _pooled(doms[d], k), QUANT, s, o)
    assert got <= ref_err + 1e-5, (i, got, ref_err, ref_map, (d, k, s, o))
    assert abs(float(maps.err[i]) - got) < 1e-4  # the reported error is the quantized one
    assert o == ref_map[3]


def test_selection_uses_quantized_contrast():
  # Range = 0.37 * domain: unquantized s = 0.37 is not a level; with 2 bits the levels are
  # -0.9, -0.3, 0.3, 0.9 and the error must be the one of s = 0.3.
  quant = ps.Quantizer(2, 7, 0.9)
  d = np.arange(16, dtype=np.float32).reshape(4, 4) / 15
  r = 0.5 + 0.37 * (d - d.mean())
  maps = ps.search(jnp.asarray(r[None]), jnp.asarray(d[None]), quant)
  assert int(maps.iso[0]) == 0 and int(maps.s_idx[0]) == 2
  expected = block_error(r.astype(np.float64), d, quant, 2, int(maps.o_idx[0]))
  assert expected > 1e-4
  np.testing.assert_allclose(float(maps.err[0]), expected, rtol=1e-4)


def test_inverse_isometry_table():
  x = jnp.asarray(np.arange(16.0).reshape(4, 4, 1))
  for j in range(8):
    back = blocks.isometry(blocks.isometry(x, j), ps.INVERSE_ISOMETRY[j])
    np.testing.assert_array_equal(back, x)


def test_leaf_layout_validates_flags():
  params = pifs.PIFSParams(16, 4)
  layout = pifs.leaf_layout(32, 32, params, 4, np.array([1, 0, 0, 0, 1, 0, 0, 0], bool))
  assert [len(y) for y, _ in layout] == [3, 3, 4]
  with pytest.raises(ValueError):
    pifs.leaf_layout(32, 32, params, 4, np.array([1, 0, 0], bool))
  with pytest.raises(ValueError):
    pifs.leaf_layout(32, 32, params, 4, np.zeros(5, bool))


def test_domain_cap_stride():
  capped = pifs.PIFSParams(32, 4, 2, QUANT, domain_cap_log2=15)
  # 512x512: 64009 domains at stride 2 on 4x4 ranges > 2^15, so stride 4; larger levels
  # keep range / 2. 512x768 (Kodak): 8x8 ranges keep stride 4 (125 x 189 = 23625 domains).
  assert [capped.stride(b, 512, 512) for b in (32, 16, 8, 4)] == [16, 8, 4, 4]
  assert [capped.stride(b, 512, 768) for b in (32, 16, 8, 4)] == [16, 8, 4, 4]
  assert capped.stride(4, 64, 64) == 2  # small images keep the dense pool
  assert pifs.PIFSParams(32, 4, 2).stride(4, 512, 512) == 2  # no cap
  nh, nw = pifs.domain_grid(2048, 2048, 4, capped.stride(4, 2048, 2048))
  assert nh * nw <= 1 << 15


@pytest.fixture(scope="module")
def coded():
  img = smooth_image(64, 64)
  code = pifs.encode(img, pifs.PIFSParams(16, 4, 2), threshold=2 / 255)
  return img, code


def test_decode_converges_and_reproduces(coded):
  img, code = coded
  hp, wp = code.padded_shape
  t = pifs.decoder_tables(code.channels[0], hp, wp, code.params, 1)
  _, iters = pifs.iterate_maps(jnp.asarray(t["src"]), jnp.asarray(t["leaf"]),
                               jnp.asarray(t["s"]), jnp.asarray(t["o"]), (hp, wp), 64, 1e-5)
  assert int(iters) < 64
  rec = pifs.decode(code)
  assert rec.shape == (64, 64, 1)
  assert psnr(rec[..., 0], img) > 28.0
  np.testing.assert_array_equal(pifs.decode(code), rec)  # deterministic


def test_decode_scale2_pools_to_scale1(coded):
  _, code = coded
  rec1 = pifs.decode(code)
  rec2 = pifs.decode(code, scale=2)
  assert rec2.shape == (128, 128, 1)
  assert psnr(blocks.mean_pool(jnp.asarray(rec2), 2), rec1) > 35.0
  assert pifs.decode(code, deblocking=True).shape == rec1.shape


@pytest.mark.parametrize("channels", [1, 3])
def test_arbitrary_size_round_trip(channels):
  rgb = np.stack([smooth_image(37, 53, seed=s) for s in range(channels)], -1)
  code = pifs.encode(rgb, pifs.PIFSParams(16, 4, 1), threshold=4 / 255)
  assert len(code.channels) == channels
  rec = pifs.decode(code)
  assert rec.shape == (37, 53, channels)
  assert psnr(rec, rgb) > 22.0
