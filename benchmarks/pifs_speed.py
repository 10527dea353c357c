"""Speed of the exhaustive PIFS search against a plain float32 matmul, same process, same run.

  python -m benchmarks.pifs_speed [--repeats 5] [--col_chunk 64] [--limit_mb 8]
      [--kodak /work/shared/data/kodak/kodim01.png --kodak_q 20 40 60]

Task: 512x512 grayscale (skimage camera), 4x4 ranges (16384), 8x8 domains at stride 4 pooled
to 4x4 (127^2 = 16129), all 8 isometries, exhaustive, quantized selection (5/7 bits).
FLOPs counted: the correlation matmul only, 2 * M * N * K with M = 8 * ranges, N = domains,
K = 16 pixels. "encode" = image -> maps (pooling, isometries, search), after compilation.
"without the fusion hint" = the same search compiled with ``fusion_hint=False``
(``pifs_search.search``), i.e. the epilogue fused the way XLA:CPU fuses it by default.
"fixed cost" = the same search against one 64-domain chunk: the range-side work that does not
scale with the domain count (isometric copies, the resolve step that recomputes the winning
chunk per range, the epilogue), an upper bound on the resolve step's share.
With --kodak: the codec's quadtree encode (PIFSCodec defaults) of one 768x512 RGB image per
quality, first call (with compiles) and second call, with the range count per level.
Times are the minimum over repeats (the machine is shared); the load average is printed
before and after, and the plain matmul is timed before and after the search.
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import skimage.data
from einops import rearrange
from PIL import Image

from collage.codec.pifs import PIFSCodec
from collage.metrics.rate import bpp
from collage.ops import pifs
from collage.ops import pifs_search as ps


def best_time(fn, repeats):
  jax.block_until_ready(fn())  # compile + warm up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return min(times), float(np.median(times))


def kodak_encode(path, qualities):
  """Quadtree encode of one RGB image with the codec's defaults: seconds per quality."""
  img = np.asarray(Image.open(path).convert("RGB"))
  codec = PIFSCodec()
  print(f"\ncodec encode of {os.path.basename(path)} {img.shape}, stride_div "
        f"{codec.params.stride_div}, ranges {codec.params.max_range}->{codec.params.min_range}")
  for q in qualities:
    t = time.perf_counter()
    code = codec.encode(img, q)
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    data = codec.compress(img, q)
    t2 = time.perf_counter() - t
    hp, wp = code.padded_shape
    per = [[len(y) for y, _ in pifs.leaf_layout(hp, wp, code.params, ch.min_range, ch.split)]
           for ch in code.channels]
    print(f"  q={q}: {bpp(len(data), img.shape[0], img.shape[1]):.3f} bpp, encode "
          f"{t1:.2f} s first call (with compiles), {t2:.2f} s again (+ entropy coding); "
          f"leaves per level Y/Cb/Cr {per}; load {os.getloadavg()[0]:.1f}", flush=True)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--col_chunk", type=int, default=64)
  ap.add_argument("--limit_mb", type=int, default=8)
  ap.add_argument("--kodak", default="", help="an RGB image to time the codec's encode on")
  ap.add_argument("--kodak_q", type=int, nargs="*", default=[20, 40, 60])
  args = ap.parse_args()

  img = jnp.asarray(skimage.data.camera().astype(np.float32) / 255.0)
  quant = ps.Quantizer(5, 7, 0.9)
  limit = args.limit_mb << 20

  @jax.jit
  def encode(img):
    ranges = rearrange(img, "(nh h) (nw w) -> (nh nw) h w", h=4, w=4)
    return ps.search(ranges, ps.domain_pool(img, 4, 4), quant, args.col_chunk, limit)

  ranges = rearrange(img, "(nh h) (nw w) -> (nh nw) h w", h=4, w=4)
  domains = ps.domain_pool(img, 4, 4)
  m, n, k = 8 * ranges.shape[0], domains.shape[0], 16
  flops = 2.0 * m * n * k

  a = jnp.asarray(np.random.default_rng(0).random((2048, 2048), np.float32))
  mm = jax.jit(lambda x, y: x @ y)
  rows = jnp.asarray(np.random.default_rng(1).random((m // 8, k), np.float32))
  cols = jnp.asarray(np.random.default_rng(2).random((k, n), np.float32))
  skinny = jax.jit(lambda x, y: jnp.min(x @ y, axis=1))

  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cpus, "
        f"load average {os.getloadavg()}")
  print(f"search: M={m} N={n} K={k}, {flops / 1e9:.1f} GFLOP; col_chunk={args.col_chunk}, "
        f"ranges per chunk={ps.search_chunks(ranges.shape[0], k, args.col_chunk, limit)}")
  # Interleave so that both see the same machine load.
  t_mm, t_mm_med = best_time(lambda: mm(a, a), args.repeats)
  t_s, t_s_med = best_time(lambda: ps.search(ranges, domains, quant, args.col_chunk, limit),
                           args.repeats)
  t_e, t_e_med = best_time(lambda: encode(img), args.repeats)
  one = domains[:64]
  t_fix, _ = best_time(lambda: ps.search(ranges, one, quant, args.col_chunk, limit),
                       args.repeats)
  # The same search with the epilogue left to XLA's default fusion (no clamp hint), for the
  # before/after of the code-generation hint (``pifs_search.search(..., fusion_hint=False)``).
  t_nohint, _ = best_time(lambda: ps.search(ranges, domains, quant, args.col_chunk, limit,
                                            fusion_hint=False), args.repeats)
  t_mm2, _ = best_time(lambda: mm(a, a), args.repeats)
  t_sk, _ = best_time(lambda: skinny(rows, cols), args.repeats)
  mm_rate = 2.0 * 2048 ** 3 / min(t_mm, t_mm2) / 1e9
  s_rate = flops / t_s / 1e9
  sk_rate = 2.0 * (m // 8) * n * k / t_sk / 1e9
  print(f"plain float32 matmul 2048^3:      {mm_rate:7.1f} GFLOP/s")
  print(f"plain matmul {m // 8}x{k}x{n} + min: {sk_rate:7.1f} GFLOP/s (same K as the search)")
  print(f"search (ranges, domains -> maps): {t_s:.3f} s (median {t_s_med:.3f}), "
        f"{s_rate:.1f} GFLOP/s = {100 * s_rate / mm_rate:.0f}% of the plain matmul")
  print(f"exhaustive encode (image -> maps): {t_e:.3f} s (median {t_e_med:.3f})")
  print(f"search without the fusion hint:    {t_nohint:.3f} s, {flops / t_nohint / 1e9:.1f} "
        f"GFLOP/s = {100 * flops / t_nohint / 1e9 / mm_rate:.0f}% of the plain matmul")
  print(f"fixed cost (same ranges, one 64-domain chunk): {t_fix:.3f} s "
        f"= {100 * t_fix / t_s:.1f}% of the search")
  print(f"plain matmul 2048^3 before / after: {2.0 * 2048 ** 3 / t_mm / 1e9:.1f} / "
        f"{2.0 * 2048 ** 3 / t_mm2 / 1e9:.1f} GFLOP/s")
  if args.kodak:
    kodak_encode(args.kodak, args.kodak_q)
  print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
  main()
