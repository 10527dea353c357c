r"""The paper-sized configs planned on this CPU: parameters, FLOPs and peak memory per device in
float32 and in bfloat16, and whether each fits the hardware its paper used.

    python -m benchmarks.scale [--rows vdvae_cifar10,magic_guided] [--out benchmarks/data/scale]

Each row runs ``python -m experiments.main --mode plan`` in its own process (compile only:
nothing is allocated), once with ``model.dtype=float32`` and once with ``bfloat16``, both with
the config's own remat, on the paper's device count with the paper's batch per device; the
plan.json files go to ``OUT/ROW_DTYPE.json`` and the table to ``OUT/table.md``. The step time
is the one implied at 40 % of an H100's dense bfloat16 peak (float32: TF32) by the matmul and
convolution FLOPs of one device's step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPACITY = {"V100-32": 32, "A100-40": 40, "H100-80": 80}

# name: (config, per-device batch, devices, the target in GB, extra overrides, the paper's setting)
ROWS = {
    # VDVAE is planned on one device at the per-GPU batch (plain data parallelism, no chunked
    # loops: the per-device step is the same on 8; a 680 s compile here is 8x that on 8).
    "vdvae_cifar10": ("vdvae.py:cifar10", 16, 1, 32, [], "openai/vdvae hps.py: n_batch 16 per GPU"),
    "collage_vdvae_cifar10": ("vdvae.py:cifar10", 16, 1, 32, ["model.head=collage"], "the twin"),
    "vdvae_imagenet32": ("vdvae.py:imagenet32", 8, 1, 32, [], "n_batch 8 per GPU"),
    "collage_vdvae_imagenet32": ("vdvae.py:imagenet32", 8, 1, 32, ["model.head=collage"],
                                 "the twin"),
    "vdvae_imagenet64": ("vdvae.py:imagenet64", 4, 1, 32, [], "n_batch 4 per GPU"),
    "collage_vdvae_imagenet64": ("vdvae.py:imagenet64", 4, 1, 32, ["model.head=collage"],
                                 "the twin"),
    "vdvae_ffhq256": ("vdvae.py:ffhq256", 1, 1, 32, [], "n_batch 1 per GPU"),
    "collage_vdvae_ffhq256": ("vdvae.py:ffhq256", 1, 1, 32, ["model.head=collage"], "the twin"),
    "magic_guided": ("magic.py:guided", 2, 3, 32, [], "K = 50, 256 px, batch 6 on 3 V100s"),
    "magic_unguided": ("magic.py:unguided", 4, 3, 32, ["data.crop=256"],
                       "K <= 12, 256 px, batch 12 on 3 V100s"),
    "dctransformer_imagenet": ("dctransformer.py:imagenet", 8, 1, 80, [],
                               "the paper's sequence length, batch 8 per device"),
    "dctransformer_lsun": ("dctransformer.py:lsun", 8, 1, 80, [], "the same"),
    "compress_full": ("compress.py:full", 32, 1, 16, [], "its batch (32)"),
}


def plan_row(name: str, dtype: str, out: str, timeout: int) -> dict:
  """Plans one row at one compute dtype; returns its plan.json (or the error)."""
  spec, batch, devices, _, extra, _ = ROWS[name]
  path = os.path.join(out, f"{name}_{dtype}.json")
  with tempfile.TemporaryDirectory() as workdir:
    cmd = [sys.executable, "-m", "experiments.main", "--config",
           os.path.join("experiments", "configs", spec), "--workdir", workdir, "--mode", "plan",
           f"--config.batch_size={batch * devices}", f"--config.plan.devices={devices}",
           "--config.plan.sample=false", f"--config.model.dtype={dtype}",
           *[f"--config.{e}" for e in extra]]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
      result = {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else
                f"exit {done.returncode}", "command": " ".join(cmd[1:])}
    else:
      with open(os.path.join(workdir, "plan.json"), encoding="utf-8") as f:
        result = json.load(f)
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1, sort_keys=True)
  return result


def _gb(result: dict) -> str:
  if "error" in result:
    return "not planned" if result["error"] == "not run" else "error"
  gb = result["train"]["peak_bytes"] / 1e9
  return f"{gb:.1f}" if gb >= 1 else f"{gb:.3f}"


def _gflop(flops: float) -> str:
  g = flops / 1e9
  return f"{g:,.0f}" if g >= 100 else f"{g:.4g}"


def table(results: dict) -> str:
  """The markdown table of ``{name: {dtype: plan}}``."""
  head = ("| row | config | the paper's setting | per device | parameters | GFLOP / step "
          "| peak GB fp32 | peak GB bf16 | remat | " + " | ".join(CAPACITY)
          + " | target | step at 40 % of an H100 |")
  lines = [head, "|" + " --- |" * (head.count("|") - 1)]
  for name, by_dtype in results.items():
    spec, batch, devices, target, extra, paper = ROWS[name]
    bf = by_dtype.get("bfloat16", {"error": "not run"})
    fp = by_dtype.get("float32", {"error": "not run"})
    ok = bf if "error" not in bf else fp
    if "error" in ok:
      lines.append(f"| {name} | `{spec}` {' '.join(extra)} | {paper} | {batch} | error: "
                   f"{ok['error'][:120]} |" + " |" * 9)
      continue
    params = sum(n["parameters"] for n in ok["networks"].values())
    peak = ok["train"]["peak_bytes"]  # the bfloat16 default where the config allows it
    fits = ["yes" if peak <= gb * 1e9 else "no" for gb in CAPACITY.values()]
    meets = "met" if peak <= target * 1e9 else "**not met**"
    step = ok["train"]["step_seconds_at_mfu"]["H100"]
    bf_cell = _gb(bf) if "error" not in bf else "float32 only" if "float32" in bf["error"] \
        else "error"
    lines.append(
        f"| {name} | `{spec}`{' ' + ' '.join(extra) if extra else ''} | {paper} | {batch} "
        f"({devices} devices) | {params / 1e6:.1f} M | "
        f"{_gflop(ok['train']['matmul_flops_per_device'])} | {_gb(fp)} | {bf_cell} | "
        f"{ok['remat']} | {' | '.join(fits)} | {target} GB: {meets} | {step * 1e3:.3g} ms "
        f"({ok['compute_dtype']}) |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "data", "scale"))
  parser.add_argument("--timeout", type=int, default=1800, help="seconds per plan")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  results: dict = {}
  for name in [r for r in args.rows.split(",") if r]:  # --rows "": rebuild the table only
    if name not in ROWS:
      parser.error(f"unknown row {name!r}; valid: {', '.join(ROWS)}")
    for dtype in [d for d in args.dtypes.split(",") if d]:
      result = plan_row(name, dtype, args.out, args.timeout)
      results.setdefault(name, {})[dtype] = result
      print(f"{name} {dtype}: peak {_gb(result)} GB ({result['wall_seconds']} s)"
            + (f" {result['error']}" if "error" in result else ""), flush=True)
  # Rows planned earlier (other --rows) stay in the table.
  for f in sorted(os.listdir(args.out)):
    stem, _, ext = f.rpartition(".")
    name, _, dtype = stem.rpartition("_")
    if ext == "json" and name in ROWS and dtype not in results.get(name, {}):
      with open(os.path.join(args.out, f), encoding="utf-8") as fh:
        results.setdefault(name, {})[dtype] = json.load(fh)
  ordered = {n: results[n] for n in ROWS if n in results}
  text = table(ordered)
  with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  print(text)


if __name__ == "__main__":
  main()
