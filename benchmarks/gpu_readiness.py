r"""Paper-sized train steps on the device at hand: step time, peak memory, TFLOP/s and MFU,
beside what ``--mode plan`` predicted for the same compiled step.

    python -m benchmarks.gpu_readiness --config experiments/configs/vdvae.py:cifar10 \
        --batch 16 --steps 20 [--set model.remat=blocks ...] [--out DIR]

One config per process (a device's peak memory counter only rises). The state is initialised
for real (float32 parameters, optimizer state, EMA), the batch is synthetic, of the shapes and
dtypes the task declares (``Task.batch_spec``: uniform [0, 1) floats, zero integers, true
booleans), because a lent GPU machine has no datasets. The step is the runtime's own
(``collage.train.plan.compile_train_step``: the loop's jit, donation and shardings), compiled
once; its ``memory_analysis()`` is the plan's prediction, ``memory_stats()`` the measurement.
Step time is the median over ``--steps`` steps after two warm-up steps, each synchronised.
MFU is the jaxpr's matmul and convolution FLOPs per step over the time, against the device's
dense peak in the config's compute dtype (``collage.train.plan.PEAKS``).

Writes ``OUT/NAME.json`` with every figure; ``benchmarks/gpu_readiness.sh`` runs the paper's
configs one after another.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import numpy as np

from collage.train import mesh as mesh_lib
from collage.train import plan as plan_lib
from collage.train import registry
from collage.train.setup import StateSetup


def _synthetic(spec: dict, sharding) -> dict:
  """A batch of ``spec``'s shapes: floats uniform in [0, 1), integers 0, booleans True."""
  rng = np.random.default_rng(0)
  out = {}
  for k, s in spec.items():
    dtype = np.dtype(s.dtype)
    if np.issubdtype(dtype, np.floating):
      value = rng.random(s.shape, np.float32).astype(dtype)
    elif dtype == np.bool_:
      value = np.ones(s.shape, bool)
    else:
      value = np.zeros(s.shape, dtype)
    out[k] = jax.device_put(value, sharding)
  return out


def _peak_name(kind: str) -> str | None:
  kind = kind.lower()
  for name in plan_lib.PEAKS:
    if name.lower().replace("tpu ", "") in kind.replace("tpu ", "").replace("lite", "v5e"):
      return name
  return None


def measure(spec: str, batch: int, steps: int, overrides: list[str]) -> dict:
  """Runs ``steps`` train steps of config ``spec`` at ``batch`` on one device; the figures."""
  config = registry.load_config(spec)
  pairs = [tuple(o.split("=", 1)) for o in overrides]
  registry.check_overrides(config, pairs)
  for key, text in [("batch_size", str(batch)), *pairs]:
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    old = node[leaf]
    node[leaf] = text.lower() in ("1", "true") if isinstance(old, bool) else type(old)(text)
  task = registry.task_of(config)
  device = jax.devices()[0]
  mesh = mesh_lib.make_mesh([device])
  setup = StateSetup(task, config, mesh)
  compiled, figures = plan_lib.compile_train_step(task, config, mesh, setup)
  state = setup.init_state()
  data = _synthetic(task.batch_spec(batch), mesh_lib.batch_sharding(mesh))
  times = []
  for i in range(steps + 2):
    start = time.perf_counter()
    state, metrics = compiled(state, data)
    jax.block_until_ready((state, metrics))
    if i >= 2:
      times.append(time.perf_counter() - start)
  step_s = statistics.median(times)
  stats = device.memory_stats() or {}
  dtype = str(config.model.get("dtype", "float32")) if "model" in config else "float32"
  peak_name = _peak_name(device.device_kind)
  achieved = figures["matmul_flops_per_device"] / step_s
  result = {
      "config": spec, "overrides": overrides, "batch_per_device": batch, "steps": steps,
      "device": device.device_kind, "compute_dtype": dtype,
      "remat": str(config.model.get("remat", "none")) if "model" in config else "none",
      "step_seconds_median": step_s, "step_seconds": times,
      "measured_peak_bytes": stats.get("peak_bytes_in_use"),
      "predicted_peak_bytes": figures["peak_bytes"],
      "compile_seconds": figures["compile_seconds"],
      "matmul_flops_per_step": figures["matmul_flops_per_device"],
      "achieved_tflops": achieved / 1e12,
      "mfu": (achieved / plan_lib.PEAKS[peak_name]["bfloat16" if dtype == "bfloat16"
                                                   else "float32"]) if peak_name else None,
      "loss_finite": bool(all(np.isfinite(np.asarray(v)).all()
                              for v in jax.tree.leaves(metrics))),
  }
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="experiments/configs/NAME.py:VARIANT")
  parser.add_argument("--batch", type=int, required=True, help="batch on the one device")
  parser.add_argument("--steps", type=int, default=20, help="timed steps (after 2 warm-ups)")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a config override, e.g. model.remat=blocks (repeatable)")
  parser.add_argument("--out", default="", help="folder for NAME.json (default: print only)")
  args = parser.parse_args()
  result = measure(args.config, args.batch, args.steps, args.set)
  line = (f"{args.config} batch {args.batch} on {result['device']}: "
          f"{result['step_seconds_median'] * 1e3:.1f} ms/step, "
          f"{result['achieved_tflops']:.1f} TFLOP/s"
          + (f" (MFU {result['mfu']:.1%})" if result["mfu"] is not None else "")
          + f", peak {(result['measured_peak_bytes'] or 0) / 1e9:.2f} GB measured / "
          f"{result['predicted_peak_bytes'] / 1e9:.2f} GB planned, compile "
          f"{result['compile_seconds']:.0f} s, finite: {result['loss_finite']}")
  print(line, flush=True)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    name = args.config.split("/")[-1].replace(".py", "").replace(":", "_")
    with open(os.path.join(args.out, f"{name}.json"), "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
