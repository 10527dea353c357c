"""Distil a Neural Collage codec model's encoder into a cheaper one: fewer residual blocks in
the trunk, everything else (auxiliary patches, quantization steps, entropy model: the whole
decoder side) copied unchanged from the teacher.

    python launch/distill_codec_encoder.py --teacher collage/assets/neural_variable/r4_ctx8 \
        --depth 1 --steps 6000 --out /tmp/r4_ctx8_d1 [--images DIR,DIR] [--batch 128]

The student starts as the teacher without its last residual blocks (the trunk is residual,
so that is a working encoder already) and learns, by Adam on the mean squared difference,
to predict the teacher's continuous code (quantization units, before rounding) of random
32 x 32 crops of ``--images`` at random rate levels. Only the encoder is trained: the file a
student writes is decoded with exactly the teacher's decoder and tables, so its codes cost
what the teacher's would. The result is saved like a shipped model (half precision) with
the recipe in its metadata. Never point ``--images`` at the Kodak test set.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                      "shared", "data")


def _images(folders: list[str]) -> list[np.ndarray]:
  from collage.data.images import image_paths, load_image  # pylint: disable=import-outside-toplevel
  out = []
  for folder in folders:
    if "kodak" in os.path.basename(os.path.normpath(folder)).lower():
      sys.exit(f"{folder}: Kodak is the test set; distil on other images")
    for path in image_paths(folder):
      img = load_image(path)
      out.append(np.repeat(img, 3, -1) if img.shape[-1] == 1 else img)
  if not out:
    sys.exit(f"no images in {folders}")
  return out


def _crops(rng, images, weights, n: int, size: int) -> np.ndarray:
  """n random size x size RGB crops in [0, 1], images picked in proportion to their area."""
  out = np.empty((n, size, size, 3), np.float32)
  for i, k in enumerate(rng.choice(len(images), n, p=weights)):
    img = images[k]
    y, x = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
    out[i] = img[y:y + size, x:x + size] / 255.0
  return out


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--teacher", required=True, help="an exported variable-rate model directory")
  p.add_argument("--depth", type=int, default=1, help="the student's residual blocks")
  p.add_argument("--steps", type=int, default=6000)
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--lr", type=float, default=3e-4)
  p.add_argument("--images", default=",".join(os.path.join(SHARED, d)
                                              for d in ("photos", "aerials")))
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", required=True)
  args = p.parse_args(argv)

  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from collage.nn import neural_collage_io  # pylint: disable=import-outside-toplevel

  teacher, meta = neural_collage_io.load_model(args.teacher)
  cfg = teacher.cfg
  if not cfg.rate_lams:
    sys.exit(f"{args.teacher} is a fixed-rate model; this distils variable-rate ones")
  if not 0 <= args.depth < cfg.depth:
    sys.exit(f"--depth must be in 0..{cfg.depth - 1} (the teacher has {cfg.depth} blocks)")
  student = neural_collage_io.abstract_model(dataclasses.replace(cfg, depth=args.depth))
  flat = neural_collage_io.flat_params(teacher)
  dropped = [f"['blocks'][{i}]" for i in range(args.depth, cfg.depth)]
  neural_collage_io._set_flat_params(  # pylint: disable=protected-access
      student, {k: v for k, v in flat.items() if not any(d in k for d in dropped)})

  levels = len(cfg.rate_lams)
  t_graph, t_state = nnx.split(teacher)
  # The student's encoder is what trains; the rest of it (the teacher's) stays as it is.
  s_graph, s_state, s_rest = nnx.split(student, nnx.PathContains("encoder"), ...)

  def student_code(state, x, level):
    return nnx.merge(s_graph, state, s_rest).analyse(x, level)

  @jax.jit
  def target(x, level):
    return nnx.merge(t_graph, t_state).analyse(x, level)

  def loss_fn(state, x, level, y):
    return jnp.mean((student_code(state, x, level) - y) ** 2)

  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax.adamw(optax.cosine_decay_schedule(args.lr, args.steps, 0.05), 0.0))
  opt_state = tx.init(s_state)

  @jax.jit
  def step(state, opt_state, x, level, y):
    loss, grads = jax.value_and_grad(loss_fn)(state, x, level, y)
    updates, opt_state = tx.update(grads, opt_state, state)
    return optax.apply_updates(state, updates), opt_state, loss

  folders = args.images.split(",")
  images = _images(folders)
  areas = np.array([i.shape[0] * i.shape[1] for i in images], np.float64)
  rng = np.random.default_rng(args.seed)
  # 512 crops never trained on: the mean squared difference to the teacher's code and the
  # fraction of code values that round differently.
  held = jnp.asarray(_crops(rng, images, areas / areas.sum(), 512, cfg.tile))
  held_level = jnp.asarray(rng.uniform(0, levels - 1, 512), jnp.float32)
  held_y = target(held, held_level)

  def held_out(state):
    ys = student_code(state, held, held_level)
    diff = np.asarray(jnp.round(ys) != jnp.round(held_y))
    return round(float(jnp.mean((ys - held_y) ** 2)), 6), round(float(diff.mean()), 6)

  print(f"{len(images)} images; student depth {args.depth}; start: held-out mse / code values "
        f"changed {held_out(s_state)}", flush=True)
  start = time.time()
  for i in range(1, args.steps + 1):
    x = jnp.asarray(_crops(rng, images, areas / areas.sum(), args.batch, cfg.tile))
    level = jnp.asarray(rng.uniform(0, levels - 1, args.batch), jnp.float32)
    s_state, opt_state, loss = step(s_state, opt_state, x, level, target(x, level))
    if i % 500 == 0 or i == args.steps:
      el = time.time() - start
      print(f"step {i} loss {float(loss):.5f} held-out {held_out(s_state)} "
            f"{i / el:.1f} steps/s, eta {(args.steps - i) * el / i:.0f} s", flush=True)
  nnx.update(student, s_state)
  meta = {"init_from": os.path.basename(os.path.normpath(args.teacher)),
          "distilled": (f"launch/distill_codec_encoder.py: encoder with {args.depth} residual "
                        f"block(s) distilled from {os.path.basename(os.path.normpath(args.teacher))}"
                        f", {args.steps} steps, batch {args.batch}, lr {args.lr}; decoder side "
                        "copied unchanged"),
          "source": ", ".join(os.path.basename(os.path.normpath(f)) for f in folders)
                    + f" ({len(images)} images, 32x32 crops)",
          "teacher_meta": json.dumps(meta, sort_keys=True)}
  neural_collage_io.save_model(student, args.out, meta, half=True)
  print("saved", args.out, flush=True)


if __name__ == "__main__":
  main()
