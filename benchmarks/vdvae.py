r"""VDVAE and Collage-VDVAE after training: curves, samples, multi-scale samples, speed, sizes.

    python -m benchmarks.vdvae \
        --runs vdvae=runs/vdvae_mnist_quick:mnist_quick,collage=runs/collage_vdvae_mnist_quick:collage_mnist_quick

For each ``NAME=WORKDIR:VARIANT`` it restores the latest checkpoint (EMA parameters, through
``--mode sample``, which also writes ``WORKDIR/samples/STEP/``) and writes to ``--out``
(default ``benchmarks/vdvae/``): ``curves.png`` (train and held-out bits/dim against the step,
all runs), ``NAME_temperatures.png`` (16 prior samples at each temperature, left to right),
and for a collage run ``NAME_scales.png`` (the same 4 latent samples decoded at 1x, 2x, 4x,
8x: pixels drawn from the likelihood on top, the mixture mean below). It prints markdown tables:
final bits/dim, parameter counts (also of the paper-sized configs next to the paper's), train
step time and samples/s on this machine (1 device).
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

from benchmarks.timing import best_time
from collage import images
from collage.nn import vdvae as V
from collage.ops import dmol
from collage.train import loop, optimizer, registry

matplotlib.use("Agg")  # files only: before pyplot is imported
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position  # noqa: E402

CONFIG = "experiments/configs/vdvae.py"
TEMPERATURES = (0.6, 0.85, 1.0)
SCALES = (1, 2, 4, 8)
PAPER = {"cifar10": 39e6, "imagenet32": 119e6, "imagenet64": 125e6, "ffhq256": 115e6}


def _metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _curves(runs: dict[str, str], path: str) -> None:
  fig, ax = plt.subplots(figsize=(6, 4), dpi=80)
  for (name, workdir), color in zip(runs.items(), ("C0", "C1", "C2", "C3")):
    rows = _metrics(workdir)
    train = [(r["step"], r["bpd"]) for r in rows if "bpd" in r]
    held = [(r["step"], r["eval/bpd"]) for r in rows if "eval/bpd" in r]
    ax.plot(*zip(*train), color=color, alpha=0.5, label=f"{name} train (batch mean)")
    ax.plot(*zip(*held), "o-", color=color, label=f"{name} held-out (EMA)")
  ax.set_xlabel("step")
  ax.set_ylabel("bits / dim (negative ELBO)")
  ax.set_ylim(1.0, 3.0)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _restore(workdir: str, variant: str):
  cfg = registry.load_config(f"{CONFIG}:{variant}")
  task = registry.task_of(cfg)
  state = loop.run(task, cfg, workdir, "sample", devices=jax.devices()[:1])
  params = jax.tree.map(jnp.asarray, jax.device_get(task.task_params(state.eval_params)))
  return cfg, task, task.bridge.merge(params)


def _keys(n: int, seed: int = 0) -> jax.Array:
  return jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(jnp.arange(n))


def _samples(model: V.VDVAE, out: str, name: str) -> None:
  draw = jax.jit(model.sample, static_argnums=(1, 2))
  grids = [images.image_grid(np.asarray(draw(_keys(16), t, 1)), columns=4)
           for t in TEMPERATURES]
  images.save_png(os.path.join(out, f"{name}_temperatures.png"),
                  images.image_grid(np.stack(grids), columns=len(grids), pad=6))
  if model.cfg.head != "collage":
    return
  keys = _keys(4, seed=1)
  top = jax.jit(lambda k: model.prior_features(k, 0.85))(keys)
  rows = []
  for k in SCALES:
    params = jax.jit(model.likelihood, static_argnums=1)(top, k)
    pix = np.asarray(jax.jit(model.sample_pixels)(keys, params))
    mean = np.asarray(dmol.mean(params, model.cfg.channels, model.cfg.num_mix))
    rows.append(images.image_grid(np.concatenate([pix, mean]), columns=4, pad=2))
    images.save_png(os.path.join(out, f"{name}_scale{k}.png"), rows[-1])


def _speed(cfg, task, model: V.VDVAE) -> tuple[float, float]:
  """(seconds per train step at the config's batch, samples/s at batch 64, scale 1)."""
  params = task.bridge.params(model)
  tx = optimizer.make_optimizer(cfg.optimizer, int(cfg.total_steps))
  opt = tx.init(params)
  batch = {"image": jnp.round(jax.random.uniform(jax.random.PRNGKey(0), (
      int(cfg.batch_size), cfg.model.image_size, cfg.model.image_size,
      cfg.model.channels)) * 255) / 255}

  @jax.jit
  def step(params, opt):
    grads = jax.grad(lambda p: task.loss_fn(p, batch, jax.random.PRNGKey(1))[0])(params)
    updates, opt = tx.update(grads, opt, params, step=jnp.int32(100))
    return optax.apply_updates(params, updates), opt

  train = best_time(lambda: step(params, opt), 5)
  draw = jax.jit(lambda k: model.sample(k, 1.0, 1))
  keys = _keys(64)
  sample = best_time(lambda: draw(keys), 3)
  return train, 64 / sample


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--runs", required=True, help="NAME=WORKDIR:VARIANT,... (comma-separated)")
  ap.add_argument("--out", default=os.path.join("benchmarks", "vdvae"))
  args = ap.parse_args()
  os.makedirs(args.out, exist_ok=True)
  runs = {}
  for item in args.runs.split(","):
    name, rest = item.split("=", 1)
    workdir, variant = rest.rsplit(":", 1)
    runs[name] = (workdir, variant)
  _curves({n: w for n, (w, _) in runs.items()}, os.path.join(args.out, "curves.png"))

  print("| run | variant | parameters | steps | held-out bits/dim (EMA) | train step (s) "
        "| samples/s |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for name, (workdir, variant) in runs.items():
    cfg, task, model = _restore(workdir, variant)
    held = [r for r in _metrics(workdir) if "eval/bpd" in r][-1]
    _samples(model, args.out, name)
    train_s, per_s = _speed(cfg, task, model)
    print(f"| {name} | {variant} | {V.param_count(model.cfg):,} | {held['step']} "
          f"| {held['eval/bpd']:.3f} | {train_s:.3f} | {per_s:.1f} |")

  print("\n| config | parameters | paper | difference |")
  print("| --- | --- | --- | --- |")
  for name, paper in PAPER.items():
    n = V.param_count(V.VDVAEConfig(**registry.load_config(f"{CONFIG}:{name}").model.to_dict()))
    print(f"| {name} | {n:,} | {paper / 1e6:.0f}M | {100 * (n - paper) / paper:+.2f}% |")


if __name__ == "__main__":
  main()
