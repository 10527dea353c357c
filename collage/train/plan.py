r"""``--mode plan``: a config's cost and fit, compiled from shapes only.

    python -m experiments.main --config experiments/configs/magic.py:guided --workdir DIR \
        --mode plan [--config.plan.devices=3] [--config.plan.device_memory_gb=32] \
        [--config.plan.target=tpu:v5e-8]

The train step (and the sample step, where the task has one) is built from
``jax.ShapeDtypeStruct``\ s: the state from ``jax.eval_shape`` of the task's ``init``, the batch
from ``Task.batch_spec``. No parameter is allocated, nothing trains, no data or checkpoint is
read. Both steps are lowered and compiled for a mesh of ``plan.devices`` devices: this machine's
when it has that many, else as many fake CPU devices (``--mode plan`` asks for them before JAX
starts), or a TPU slice's when ``plan.target`` names one (libtpu compiles for a topology from a
CPU machine: ``pip install -e '.[tpu]'``). Only ``DIR/plan.json`` is written.

What is reported, per device (the state is replicated, the batch split over the devices):
- parameters per network and their bytes; the optimizer state, EMA and model state bytes;
- peak memory = arguments + outputs + temporaries - aliases (XLA's ``memory_analysis()`` of
  the compiled executable; the donated state aliases its update), the temporaries being the
  activations and everything else the step holds at once;
- FLOPs: XLA's ``cost_analysis()`` of the compiled step, which counts a loop's body once, and
  the matmul and convolution FLOPs counted from the step's jaxpr, where a ``scan`` counts
  ``length`` times (what MFU is measured against). A ``while`` loop of unknown trip count is
  counted once, and the plan says so;
- the step time those matmul FLOPs imply at ``plan.mfu`` of each device's dense peak
  (:data:`PEAKS`) in the config's compute dtype;
- the verdict against ``plan.device_memory_gb`` (GB = 1e9 bytes), and whether the peak fits in
  the 75 % of a GPU that JAX's allocator takes by default (``XLA_PYTHON_CLIENT_MEM_FRACTION``).

The figures are XLA's for the backend it compiled for: a CPU compile's buffer assignment is
close to a GPU's but not the same (fusions differ); a TPU target's is the TPU compiler's own.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from collage.train import mesh as mesh_lib
from collage.train.errors import ConfigError
from collage.train.sampling import Sampler, task_options
from collage.train.setup import StateSetup
from collage.train.step import make_train_step
from collage.train.task import Task

PLAN_FILE = "plan.json"
# The XLA flag under which a CPU compile schedules for memory as GPU/TPU compilers do
# (experiments.main sets it for --mode plan before JAX starts).
CPU_MEMORY_SCHEDULER = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
GB = 1e9
DEFAULT_MEM_FRACTION = 0.75  # JAX's default XLA_PYTHON_CLIENT_MEM_FRACTION on a GPU

# Dense (no sparsity) peak FLOP/s per device, by compute dtype. "float32" is what a float32
# matmul runs at by JAX's default precision: TF32 tensor cores on A100/H100, plain FP32 on a
# V100; a TPU runs float32 matmuls as bfloat16 passes (quoted at the bfloat16 peak / 3,
# XLA's default three-pass "HIGHEST" is slower still; JAX's default precision is one pass).
#   H100 SXM: NVIDIA H100 Tensor Core GPU datasheet (BF16 1,979 TFLOPS with sparsity -> 989
#     dense; TF32 989 with sparsity -> 494 dense), 80 GB.
#   A100 SXM: NVIDIA A100 datasheet (BF16 312, TF32 156 TFLOPS dense), 40 or 80 GB.
#   V100 SXM2: NVIDIA V100 datasheet (tensor FP16 125, FP32 15.7 TFLOPS; no bfloat16: its
#     bfloat16 row is the FP16 tensor peak, what the paper-era fp16 runs used), 16 or 32 GB.
#   TPU v4: Google Cloud TPU v4 docs (275 TFLOPS bf16 per chip), 32 GB HBM per chip.
#   TPU v5e: Google Cloud TPU v5e docs (197 TFLOPS bf16 per chip), 16 GB HBM per chip.
PEAKS = {
    "H100": {"bfloat16": 989e12, "float32": 494e12, "memory_gb": 80},
    "A100": {"bfloat16": 312e12, "float32": 156e12, "memory_gb": 40},
    "V100": {"bfloat16": 125e12, "float32": 15.7e12, "memory_gb": 32},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12 / 3, "memory_gb": 32},
    "TPU v5e": {"bfloat16": 197e12, "float32": 197e12 / 3, "memory_gb": 16},
}
# TPU slices ``plan.target`` names: "tpu:v5e-8" -> libtpu's topology name.
TPU_TOPOLOGIES = {"v5e-1": "v5e:1x1", "v5e-4": "v5e:2x2", "v5e-8": "v5e:2x4",
                  "v5e-16": "v5e:4x4", "v5e-32": "v5e:4x8", "v5e-64": "v5e:8x8",
                  "v4-8": "v4:2x2x1", "v4-16": "v4:2x2x2", "v4-32": "v4:2x2x4"}


# -- FLOPs of a jaxpr -------------------------------------------------------------------------

def _dot_flops(eqn) -> float:
  lhs = eqn.invars[0].aval
  (lhs_contract, _), _ = eqn.params["dimension_numbers"]
  out = eqn.outvars[0].aval
  return 2.0 * math.prod(out.shape) * math.prod(lhs.shape[d] for d in lhs_contract)


def _conv_flops(eqn) -> float:
  rhs = eqn.invars[1].aval
  out = eqn.outvars[0].aval
  dn = eqn.params["dimension_numbers"]
  out_features = rhs.shape[dn.rhs_spec[0]]
  return 2.0 * math.prod(out.shape) * math.prod(rhs.shape) / out_features


def matmul_flops(jaxpr: Any) -> tuple[float, int]:
  """(matmul + convolution FLOPs of a (closed) jaxpr, ``while`` loops counted once).

  Sub-jaxprs (jit, remat, custom derivatives, cond branches: the largest) count once; a
  ``scan`` body counts ``length`` times.
  """
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  flops, whiles = 0.0, 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      flops += _dot_flops(eqn)
    elif name == "conv_general_dilated":
      flops += _conv_flops(eqn)
    subs = [v for v in eqn.params.values() if hasattr(v, "eqns") or hasattr(v, "jaxpr")]
    branches = eqn.params.get("branches", ())
    if branches:
      counted = [matmul_flops(b) for b in branches]
      flops += max(f for f, _ in counted)
      whiles += sum(w for _, w in counted)
      continue
    times = float(eqn.params.get("length", 1)) if name == "scan" else 1.0
    whiles += name == "while"
    for sub in subs:
      f, w = matmul_flops(sub)
      flops += times * f
      whiles += w
  return flops, whiles


# -- devices ----------------------------------------------------------------------------------

def plan_devices(config: ml_collections.ConfigDict) -> tuple[list[Any], str]:
  """(the devices to compile for, their description).

  Raises:
    ConfigError: an unknown TPU target, libtpu missing, or too few devices.
  """
  plan = config.plan
  target = str(plan.target)
  if target:
    if not target.startswith("tpu:"):
      raise ConfigError(f"plan.target={target!r} is unknown; valid: '' (this machine's "
                        f"devices), tpu:{', tpu:'.join(TPU_TOPOLOGIES)} or tpu:TOPOLOGY")
    name = target[len("tpu:"):]
    topology = TPU_TOPOLOGIES.get(name, name)
    try:
      from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
      desc = topologies.get_topology_desc(platform="tpu", topology_name=topology)
    except Exception as e:  # libtpu missing, or a topology it does not know
      raise ConfigError(
          f"plan.target={target!r}: cannot describe the TPU topology {topology!r} ({e}). It "
          "needs libtpu (pip install -e '.[tpu]'); known slices: "
          f"{', '.join(TPU_TOPOLOGIES)}") from None
    devices = list(desc.devices)
    if int(plan.devices) and int(plan.devices) != len(devices):
      raise ConfigError(f"plan.devices={plan.devices} but {target} has {len(devices)} "
                        "devices; leave plan.devices at 0 with a TPU target")
    return devices, f"{len(devices)} x {devices[0].device_kind} ({topology}, compiled by libtpu)"
  want = int(plan.devices) or jax.device_count()
  devices = jax.devices()
  if len(devices) < want:
    devices = jax.devices("cpu")
  if len(devices) < want:
    raise ConfigError(
        f"plan.devices={want} but only {len(devices)} devices are here; run --mode plan "
        "through python -m experiments.main, which asks for that many fake CPU devices "
        "before JAX starts")
  devices = devices[:want]
  return devices, f"{want} x {devices[0].device_kind} ({devices[0].platform})"


# -- the plan ---------------------------------------------------------------------------------

def _nbytes(tree: Any) -> int:
  return int(sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _count(tree: Any) -> int:
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(tree)))


def _compiled_figures(compiled: Any, jaxpr_flops: float, whiles: int, devices: int,
                      seconds: float) -> dict[str, Any]:
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
  peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
          - mem.alias_size_in_bytes)
  out = {
      "compile_seconds": round(time.perf_counter() - seconds, 2),
      "peak_bytes": int(peak),
      "argument_bytes": int(mem.argument_size_in_bytes),
      "output_bytes": int(mem.output_size_in_bytes),
      "alias_bytes": int(mem.alias_size_in_bytes),
      "temp_bytes": int(mem.temp_size_in_bytes),
      "xla_flops_per_device": float(cost.get("flops", float("nan"))),
      "matmul_flops": float(jaxpr_flops),
      "matmul_flops_per_device": float(jaxpr_flops) / devices,
  }
  if whiles:
    out["flops_note"] = (f"{whiles} while loop(s) of unknown trip count: their matmuls are "
                         "counted once (a lower bound)")
  return out


def step_times(flops_per_device: float, dtype: str, mfu: float) -> dict[str, float]:
  key = "bfloat16" if dtype == "bfloat16" else "float32"
  return {name: flops_per_device / (mfu * peak[key]) for name, peak in PEAKS.items()}


def abstract_batch(task: Task, batch_size: int, mesh: Any) -> dict[str, jax.ShapeDtypeStruct]:
  """``task.batch_spec(batch_size)`` with the batch sharding of ``mesh``."""
  mesh_lib.check_batch_size(batch_size, mesh)
  shard = mesh_lib.batch_sharding(mesh)
  return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=shard)
          for k, v in task.batch_spec(batch_size).items()}


def compile_train_step(task: Task, config: ml_collections.ConfigDict, mesh: Any,
                       setup: StateSetup) -> tuple[Any, dict[str, Any]]:
  """(the train step compiled from shapes, exactly as the loop jits it; its figures)."""
  batch = abstract_batch(task, int(config.batch_size), mesh)
  step = make_train_step(task, setup.update)
  start = time.perf_counter()
  flops, whiles = matmul_flops(jax.make_jaxpr(step)(setup.abstract_state, batch))
  compiled = jax.jit(step, in_shardings=(setup.state_sharding, mesh_lib.batch_sharding(mesh)),
                     out_shardings=(setup.state_sharding, mesh_lib.replicated(mesh)),
                     donate_argnums=(0,)).lower(setup.abstract_state, batch).compile()
  figures = {"batch_per_device": int(config.batch_size) // mesh.devices.size,
             **_compiled_figures(compiled, flops, whiles, mesh.devices.size, start)}
  return compiled, figures


def _sample_figures(task: Task, config: ml_collections.ConfigDict, mesh: Any,
                    setup: StateSetup) -> dict[str, Any]:
  sample = config.sample
  sampler = Sampler(task, mesh, task_options(sample), int(sample.batch_size))
  state = setup.abstract_state
  start = time.perf_counter()
  lowered, keys = sampler.lower(state.eval_params, state.model_state)
  jaxpr = jax.make_jaxpr(sampler.draw_fn)(state.eval_params, state.model_state, keys)
  flops, whiles = matmul_flops(jaxpr)
  return {"samples_per_call": sampler.chunk,
          **_compiled_figures(lowered.compile(), flops, whiles, mesh.devices.size, start)}


def plan(task: Task, config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The plan of ``task`` under ``config`` (see the module docstring) as a JSON-able dict.

  Raises:
    ConfigError: no ``config.plan``, a bad target, too few devices, a batch the devices do not
      divide.
  """
  if "plan" not in config:
    raise ConfigError("this config has no plan block; build it on "
                      "collage.train.config.training_defaults()")
  devices, description = plan_devices(config)
  mesh = mesh_lib.make_mesh(devices)
  setup = StateSetup(task, config, mesh)
  state = setup.abstract_state
  model = config.get("model", ml_collections.ConfigDict())
  dtype = str(model.get("dtype", "float32"))
  result: dict[str, Any] = {
      "task": config.task,
      "devices": len(devices),
      "device": description,
      "cpu_scheduler": ("memory-minimizing" if CPU_MEMORY_SCHEDULER in os.environ.get(
          "XLA_FLAGS", "") else "concurrency-optimized (peaks overstated: plan through "
          "python -m experiments.main, which schedules for memory)"),
      "compute_dtype": dtype,
      "param_dtype": str(model.get("param_dtype", "float32")),
      "remat": str(model.get("remat", "none")),
      "device_memory_gb": float(config.plan.device_memory_gb),
      "mfu": float(config.plan.mfu),
      "networks": {n: {"parameters": _count(p), "parameter_bytes": _nbytes(p)}
                   for n, p in state.params.items()},
      "state_bytes": {"parameters": _nbytes(state.params),
                      "optimizer": _nbytes(state.opt_state),
                      "ema": _nbytes(state.ema_params),
                      "model_state": _nbytes(state.model_state)},
  }
  result["train"] = compile_train_step(task, config, mesh, setup)[1]
  steps = {"train": result["train"]}
  if bool(config.plan.sample) and task.can_sample() and "sample" in config:
    result["sample"] = steps["sample"] = _sample_figures(task, config, mesh, setup)
  capacity = float(config.plan.device_memory_gb) * GB
  for figures in steps.values():
    figures["step_seconds_at_mfu"] = step_times(figures["matmul_flops_per_device"], dtype,
                                                 float(config.plan.mfu))
    figures["fits"] = figures["peak_bytes"] <= capacity
    figures["margin_gb"] = (capacity - figures["peak_bytes"]) / GB
    figures["fits_default_mem_fraction"] = (
        figures["peak_bytes"] <= DEFAULT_MEM_FRACTION * capacity)
  result["fits"] = all(f["fits"] for f in steps.values())
  return result


def _gb(n: float) -> str:
  return f"{n / GB:.2f} GB" if abs(n) >= 0.1 * GB else f"{n / 1e6:.1f} MB"


def table(result: Mapping[str, Any]) -> str:
  """The plan as the text table ``--mode plan`` prints."""
  lines = [f"plan of {result['task']} on {result['device']}: compute {result['compute_dtype']}, "
           f"parameters {result['param_dtype']}, remat {result['remat']}"]
  for name, n in result["networks"].items():
    lines.append(f"  {name:<22} {n['parameters'] / 1e6:12.2f} M parameters  "
                 f"{_gb(n['parameter_bytes'])}")
  sb = result["state_bytes"]
  lines.append(f"  state per device       params {_gb(sb['parameters'])}, optimizer "
               f"{_gb(sb['optimizer'])}, EMA {_gb(sb['ema'])}, model state "
               f"{_gb(sb['model_state'])}")
  capacity = result["device_memory_gb"]
  for step in ("train", "sample"):
    if step not in result:
      continue
    f = result[step]
    rows = (f"batch {f['batch_per_device']} per device" if step == "train"
            else f"{f['samples_per_call']} samples per call")
    times = ", ".join(f"{d} {s * 1e3:.3g} ms" for d, s in f["step_seconds_at_mfu"].items())
    verdict = (f"FITS {capacity:g} GB (margin {f['margin_gb']:.2f} GB"
               + ("" if f["fits_default_mem_fraction"] else
                  "; above JAX's default 75 % GPU pool: set XLA_PYTHON_CLIENT_MEM_FRACTION")
               + ")") if f["fits"] else (
               f"DOES NOT FIT {capacity:g} GB (over by {-f['margin_gb']:.2f} GB)")
    lines += [
        f"  {step} step ({rows}, compiled in {f['compile_seconds']:.1f} s):",
        f"    peak per device      {_gb(f['peak_bytes'])} = arguments "
        f"{_gb(f['argument_bytes'])} + outputs {_gb(f['output_bytes'])} + temporaries "
        f"{_gb(f['temp_bytes'])} - aliased {_gb(f['alias_bytes'])}",
        f"    FLOPs per device     {f['matmul_flops_per_device'] / 1e9:.4g} GFLOP in matmuls "
        f"and convolutions (XLA's count: {f['xla_flops_per_device'] / 1e9:.4g} GFLOP)"
        + (f"; {f['flops_note']}" if "flops_note" in f else ""),
        f"    time at {result['mfu']:.0%} of peak  {times}",
        f"    verdict              {verdict}",
    ]
  return "\n".join(lines)


def run_plan(task: Task, config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Plans ``task``, prints the table, writes ``workdir/plan.json`` (only that); returns it."""
  result = plan(task, config)
  if jax.process_index() == 0:
    print(table(result), flush=True)
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, PLAN_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    logging.info("plan written to %s", path)
  return result
