r"""MAGIC measurements: train step time, the tiled poster roll-out, and collage statistics.

    python -m benchmarks.magic steptime --variant guided --batch 1 --crop 128 --steps 2
    python -m benchmarks.magic poster --workdir runs/magic_gq --side 2048 --k 10 --tile 256
    python -m benchmarks.magic table runs/magic_gq runs/magic_gq_tv runs/magic_gq_e

``steptime``: one jitted train step of a config variant (discriminator then generator, on the
real data pipeline's batches): the median seconds per step after two warm-up steps, and the peak
process resident memory. ``poster``: a guided poster of ``--side`` x ``--side`` from a run's latest
checkpoint (EMA parameters) with templates from ``--templates``; megapixels per second of the
roll-out (compiling included, and without it: the second of two renders) and peak memory; the
pictures go to ``--out``. ``table``: a markdown row per run with the lambdas and the held-out
collage statistics of its last evaluation and of its artifact poster.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import jax
import numpy as np

from collage.train import loop
from collage.train import mesh as mesh_lib
from collage.train import registry
from collage.train.optimizer import make_optimizer
from collage.train.state import create_state
from collage.train.step import NetworkUpdate, make_train_step

# The MAGIC config file, resolved by path as the entrypoint resolves it (benchmarks import
# only collage/; the task comes from the config's name through collage.train.registry).
CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "experiments", "configs", "magic.py")


def _peak_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def steptime(args) -> None:
  cfg = registry.load_config(f"{CONFIG}:{args.variant}")
  if args.batch:
    cfg.batch_size = args.batch
  if args.crop:
    cfg.data.crop = args.crop
  if args.remat:
    cfg.model.remat = args.remat
  if args.dtype:
    cfg.model.dtype = args.dtype
  task = registry.task_of(cfg)
  blocks = dict(cfg.optimizers.items())
  optimizers = {n: make_optimizer(b, int(cfg.total_steps)) for n, b in blocks.items()}
  update = NetworkUpdate(optimizers, {"generator": float(blocks["generator"].ema_decay)})
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  state = jax.jit(lambda: create_state(*task.init(jax.random.PRNGKey(0)), optimizers,
                                       jax.random.PRNGKey(1), ("generator",)))()
  step = jax.jit(make_train_step(task, update), donate_argnums=(0,))
  data = task.dataset("train", seed=0, process_index=0, process_count=1,
                      batch_size=int(cfg.batch_size))
  batches = [mesh_lib.global_batch(next(data), mesh) for _ in range(args.steps + 2)]
  # The first call compiles; the second may compile again (the state it returns can differ
  # in weak types from the one create_state made), so two warm-up steps precede the timing.
  times = []
  for b in batches:
    start = time.perf_counter()
    state, metrics = step(state, b)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  compile_s = times[0] + times[1]
  per_step = float(np.median(times[2:]))
  n_params = {n: sum(x.size for x in jax.tree.leaves(p)) for n, p in state.params.items()}
  name = f"{args.variant} ({cfg.model.dtype}, remat {cfg.model.remat})"
  print(f"| {name} | {cfg.batch_size} | {cfg.data.k_min}..{cfg.data.k_max} | "
        f"{cfg.data.crop} | {n_params['generator'] / 1e6:.2f} M / "
        f"{n_params['discriminator'] / 1e6:.2f} M | {compile_s:.1f} | {per_step:.2f} | "
        f"{_peak_gib():.1f} |")


def poster(args) -> None:
  with open(os.path.join(args.workdir, "config.json"), encoding="utf-8") as f:
    saved = json.load(f)
  cfg = registry.load_config(f"{CONFIG}:{args.variant}")
  cfg.update_from_flattened_dict({k: v for k, v in _flat(saved).items()
                                  if k in _flat(cfg.to_dict())})
  task = registry.task_of(cfg)
  state, _ = loop.restore_for_inference(task, cfg, args.workdir, devices=jax.devices()[:1])
  params = mesh_lib.to_host(state.eval_params)["generator"]
  opts = {"k": args.k, "height": args.side, "width": args.side, "seed": args.seed,
          "tile": args.tile, "window": -1, "halo": -1, "templates": args.templates,
          "content": args.content}
  os.makedirs(args.out, exist_ok=True)
  reports = []
  for i in range(args.repeats):
    reports.append(registry.load_task(cfg.task).write_poster(
        task, params, opts, os.path.join(args.out, "poster")))
    print(f"render {i}: {json.dumps(reports[-1])}", flush=True)
  print(f"| {args.side}x{args.side} | {args.k} | {args.tile} | {reports[-1]['halo']} | "
        f"{reports[-1]['tiles']} | {reports[0]['seconds']:.1f} | {reports[-1]['seconds']:.1f} | "
        f"{reports[-1]['megapixels_per_second']:.3f} | {_peak_gib():.1f} |")


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def table(args) -> None:
  print("| run | lambda_TV | lambda_E | steps | content PSNR (dB) | dominated share | templates "
        "used | TV of A | poster: PSNR / dominated / used / TV |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
  for wd in args.runs:
    with open(os.path.join(wd, "config.json"), encoding="utf-8") as f:
      cfg = json.load(f)
    rows = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"), encoding="utf-8")]
    ev = [r for r in rows if "eval/content_psnr" in r][-1]
    path = os.path.join(wd, "artifacts", "poster.json")
    p = json.load(open(path, encoding="utf-8")) if os.path.exists(path) else None
    ptxt = (f"{p['content_psnr']:.2f} / {p['dominant']:.2f} / {p['used']} / {p['tv']:.3f}"
            if p else "—")
    print(f"| {os.path.basename(wd)} | {cfg['loss']['tv']} | {cfg['loss']['entropy']} | "
          f"{ev['step']} | {ev['eval/content_psnr']:.2f} | {ev['eval/dominant']:.2f} | "
          f"{ev['eval/used']:.2f} | {ev['eval/tv']:.3f} | {ptxt} |")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  s = sub.add_parser("steptime", help="seconds per train step of a config variant")
  s.add_argument("--variant", default="guided", help="guided | guided_quick | unguided | ...")
  s.add_argument("--batch", type=int, default=0, help="global batch (0: the config's)")
  s.add_argument("--crop", type=int, default=0, help="crop side (0: the config's)")
  s.add_argument("--steps", type=int, default=3, help="measured steps after the warm-up")
  s.add_argument("--remat", default="", help="model.remat: none | blocks | a policy ('' = the "
                 "config's)")
  s.add_argument("--dtype", default="", help="model.dtype: float32 | bfloat16 ('' = the config's)")
  s = sub.add_parser("poster", help="time a tiled guided poster")
  s.add_argument("--workdir", required=True, help="a trained run")
  s.add_argument("--variant", default="guided_quick", help="the run's config variant")
  s.add_argument("--side", type=int, default=2048, help="poster side (pixels)")
  s.add_argument("--k", type=int, default=10, help="templates in the set")
  s.add_argument("--tile", type=int, default=256, help="tile interior side")
  s.add_argument("--seed", type=int, default=0, help="template seed")
  s.add_argument("--templates", default="", help="template folder or source ('' = the run's)")
  s.add_argument("--content", default="", help="content image ('' = the run's)")
  s.add_argument("--repeats", type=int, default=1, help="renders (the first compiles)")
  s.add_argument("--out", default="/tmp/magic_poster", help="where the PNGs go")
  s = sub.add_parser("table", help="collage statistics of runs, as markdown")
  s.add_argument("runs", nargs="+", help="run directories")
  args = p.parse_args()
  {"steptime": steptime, "poster": poster, "table": table}[args.cmd](args)


if __name__ == "__main__":
  main()
