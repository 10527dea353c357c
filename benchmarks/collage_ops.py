r"""Speed of the collage operator on a 256x256 RGB image: decode throughput and a gradient step.

    JAX_PLATFORMS=cpu /work/venv/bin/python -m benchmarks.collage_ops [--steps 20] [--reps 5]

Prints a markdown table (see benchmarks/collage_ops.md). Decode throughput counts output
megapixels per iteration: ``steps * (k*256)^2 / seconds / 1e6`` at scale ``k``. Operators:
"restricted" (the fractalization one: whole image as the domain, 4x4 ranges, 8 isometries) and
"pifs" (8x8 ranges, 16x16 non-overlapping domains, 8 isometries: K = 2048 candidates).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks.timing import best_time
from collage.ops import collage as co

SPECS = {
    "restricted": co.CollageSpec(image_size=256, range_size=4, isometries=tuple(range(8))),
    "pifs": co.CollageSpec(image_size=256, range_size=8, domain_size=16,
                           isometries=tuple(range(8))),
}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=20, help="decode iterations timed")
  ap.add_argument("--reps", type=int, default=5, help="repetitions (the fastest is reported)")
  args = ap.parse_args()
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, jax {jax.__version__}\n")
  print("| operator | measurement | time (s) | throughput |")
  print("|---|---|---|---|")
  key = jax.random.PRNGKey(0)
  target = jax.random.uniform(key, (1, 256, 256, 3))
  for name, spec in SPECS.items():
    raw = co.init_raw(spec, key, 1)
    params = co.params_from_raw(spec, *raw)
    for k in (1, 4):
      dec = jax.jit(lambda p, k=k, spec=spec: co.decode(spec, p, steps=args.steps, scale=k))
      t = best_time(lambda: dec(params), args.reps)
      mp = args.steps * (256 * k) ** 2 / 1e6
      print(f"| {name} | decode scale {k}, {args.steps} steps | {t:.4f} | {mp / t:.1f} MP/s |")

    def collage_loss(r, spec=spec):
      return jnp.mean(co.collage_error(spec, co.params_from_raw(spec, *r), target))

    def decode_loss(r, spec=spec):
      x = co.decode(spec, co.params_from_raw(spec, *r), steps=args.steps, implicit=True)
      return jnp.mean((x - target) ** 2)

    for lname, loss in (("collage loss", collage_loss),
                        (f"decode loss, implicit, {args.steps} steps", decode_loss)):
      g = jax.jit(jax.value_and_grad(loss))
      t = best_time(lambda: g(raw), args.reps)
      print(f"| {name} | gradient step ({lname}) | {t:.4f} | {1 / t:.1f} steps/s |")


if __name__ == "__main__":
  main()
