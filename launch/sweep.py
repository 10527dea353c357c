r"""Expands a grid of ``--config.key=value`` overrides into one command per run.

    python launch/sweep.py --config experiments/configs/NAME.py:quick --workdir runs/sweep \
        --grid optimizer.learning_rate=1e-3,3e-4 --grid seed=0,1,2 [--set total_steps=2000]

prints 6 commands, each with its own workdir ``runs/sweep/optimizer.learning_rate=1e-3,seed=0``
etc. Pipe them into a scheduler, e.g. ``| xargs -P1 -I{} sh -c {}`` locally, or with
``--sbatch`` wrap each in ``sbatch launch/slurm.sbatch CONFIG WORKDIR OVERRIDES``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex


def expand(grid: list[str]) -> list[list[tuple[str, str]]]:
  """``["a=1,2", "b=x"]`` -> ``[[("a","1"),("b","x")], [("a","2"),("b","x")]]``."""
  axes = []
  for item in grid:
    key, sep, values = item.partition("=")
    if not sep or not key or not values:
      raise SystemExit(f"--grid {item!r}: expected key=value1,value2,...")
    axes.append([(key, v) for v in values.split(",")])
  return [list(combo) for combo in itertools.product(*axes)]


def commands(config: str, workdir: str, grid: list[str], fixed: list[str],
             sbatch: bool) -> list[str]:
  out = []
  for combo in expand(grid):
    name = ",".join(f"{k}={v}" for k, v in combo) or "run"
    run_dir = os.path.join(workdir, name)
    overrides = [f"--config.{k}={v}" for k, v in combo] + [f"--config.{s}" for s in fixed]
    if sbatch:
      cmd = ["sbatch", f"--job-name={name}", "launch/slurm.sbatch", config, run_dir, *overrides]
    else:
      cmd = ["python", "-m", "experiments.main", "--config", config, "--workdir", run_dir,
             *overrides]
    out.append(shlex.join(cmd))
  return out


def main() -> None:
  p = argparse.ArgumentParser(description="Expand a grid of config overrides into commands.")
  p.add_argument("--config", required=True, help="experiments/configs/NAME.py[:ARG]")
  p.add_argument("--workdir", required=True, help="parent directory; one subdirectory per run")
  p.add_argument("--grid", action="append", default=[], help="key=v1,v2,... (repeatable)")
  p.add_argument("--set", action="append", default=[], help="key=value for every run")
  p.add_argument("--sbatch", action="store_true", help="emit sbatch commands")
  a = p.parse_args()
  print("\n".join(commands(a.config, a.workdir, a.grid, a.set, a.sbatch)))


if __name__ == "__main__":
  main()
