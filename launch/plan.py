"""A sweep's plan: the runs a grid or a seeded random search makes, and ``SWEEP/sweep.json``.

A run is the normal entrypoint command with its own workdir, named by its overrides
(``optimizer.learning_rate=0.001,seed=0``), so it can also be rerun by hand. ``sweep.json`` is
the sweep written down: what was asked, every run, and each run's submissions (job ids).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import sys
from typing import Any, Sequence

import numpy as np

DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")
SWEEP_FILE = "sweep.json"


@dataclasses.dataclass
class Run:
  """One run of a sweep.

  Attributes:
    name: its overrides as ``key=value,...`` (the workdir's name).
    workdir: its run directory.
    overrides: ``[(dotted config key, value text)]``.
    submissions: ``[{"job_id": ..., "executor": ..., "time": ...}]``, oldest first.
  """
  name: str
  workdir: str
  overrides: list[tuple[str, str]]
  submissions: list[dict[str, Any]] = dataclasses.field(default_factory=list)

  def command(self, config: str, fixed: Sequence[tuple[str, str]] = (),
              python: str | None = None) -> list[str]:
    """The entrypoint command of this run."""
    sets = [f"--config.{k}={v}" for k, v in [*self.overrides, *fixed]]
    return [python or sys.executable, "-m", "experiments.main", "--config", config,
            "--workdir", self.workdir, *sets]

  @property
  def job_id(self) -> str | None:
    return self.submissions[-1]["job_id"] if self.submissions else None


def parse_pairs(items: Sequence[str], flag: str,
                allow_empty: bool = False) -> list[tuple[str, str]]:
  """``["a=1,2", ...]`` -> ``[("a", "1,2"), ...]``; raises ValueError naming a malformed item.

  ``allow_empty``: ``key=`` gives the empty string (``--set`` clears a string field).
  """
  out = []
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key or not (value or allow_empty):
      raise ValueError(f"{flag} {item!r}: expected key=value")
    out.append((key.strip(), value.strip()))
  return out


def grid_points(grid: Sequence[tuple[str, str]]) -> list[list[tuple[str, str]]]:
  """Every combination of ``[(key, "v1,v2,...")]``, the first key varying slowest."""
  axes = [[(key, v) for v in values.split(",") if v] for key, values in grid]
  return [list(combo) for combo in itertools.product(*axes)]


def _format(value: float) -> str:
  return f"{value:.4g}"


def random_points(spec: Sequence[tuple[str, str]], num: int,
                  seed: int) -> list[list[tuple[str, str]]]:
  """``num`` seeded draws of ``[(key, "dist:args")]``.

  Distributions: ``uniform:LO:HI``, ``log_uniform:LO:HI`` (LO, HI > 0), ``int_uniform:LO:HI``
  (inclusive), ``choice:A|B|C``.

  Raises:
    ValueError: an unknown distribution (listing the valid ones) or bad bounds.
  """
  rng = np.random.default_rng(seed)
  parsed = []
  for key, text in spec:
    kind, _, args = text.partition(":")
    if kind not in DISTRIBUTIONS:
      raise ValueError(f"--random {key}={text}: unknown distribution {kind!r}; valid: "
                       f"{', '.join(DISTRIBUTIONS)}")
    if kind == "choice":
      options = [a for a in args.split("|") if a]
      if not options:
        raise ValueError(f"--random {key}={text}: choice needs options, e.g. choice:a|b")
      parsed.append((key, kind, options))
      continue
    try:
      lo, hi = (float(a) for a in args.split(":"))
    except ValueError:
      raise ValueError(f"--random {key}={text}: expected {kind}:LOW:HIGH") from None
    if hi < lo or (kind == "log_uniform" and lo <= 0):
      raise ValueError(f"--random {key}={text}: need LOW <= HIGH"
                       + (" and LOW > 0" if kind == "log_uniform" else ""))
    parsed.append((key, kind, (lo, hi)))
  points = []
  for _ in range(num):
    point = []
    for key, kind, args in parsed:
      if kind == "choice":
        value = args[int(rng.integers(len(args)))]
      elif kind == "uniform":
        value = _format(rng.uniform(*args))
      elif kind == "log_uniform":
        value = _format(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
      else:
        value = str(int(rng.integers(int(args[0]), int(args[1]) + 1)))
      point.append((key, value))
    points.append(point)
  return points


def make_runs(sweep_dir: str, points: Sequence[Sequence[tuple[str, str]]]) -> list[Run]:
  """One run per point; duplicate points (a random draw repeating itself) are numbered."""
  runs, seen = [], {}
  for point in points:
    name = ",".join(f"{k}={v}" for k, v in point) or "run"
    seen[name] = seen.get(name, 0) + 1
    if seen[name] > 1:
      name = f"{name},draw={seen[name]}"
    runs.append(Run(name, os.path.join(sweep_dir, name), list(point)))
  return runs


@dataclasses.dataclass
class Sweep:
  """A sweep as written in ``sweep.json``.

  Attributes:
    directory: the sweep directory (``runs/NAME``).
    config: ``experiments/configs/NAME.py[:ARG]``.
    request: what was asked (grid, random spec, num, seed, fixed overrides, executor and its
      resources), for the record and for ``resume``.
    runs: the runs.
  """
  directory: str
  config: str
  request: dict[str, Any]
  runs: list[Run]

  @property
  def path(self) -> str:
    return os.path.join(self.directory, SWEEP_FILE)

  @property
  def fixed(self) -> list[tuple[str, str]]:
    return [tuple(p) for p in self.request.get("set", [])]

  def save(self) -> None:
    """Writes ``sweep.json`` atomically."""
    os.makedirs(self.directory, exist_ok=True)
    data = {"config": self.config, "request": self.request,
            "runs": [dataclasses.asdict(r) for r in self.runs]}
    tmp = self.path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(data, f, indent=1)
    os.replace(tmp, self.path)

  @classmethod
  def load(cls, directory: str) -> "Sweep":
    """Reads ``directory/sweep.json``.

    Raises:
      FileNotFoundError: the directory holds no sweep.
    """
    path = os.path.join(directory, SWEEP_FILE)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{directory} holds no sweep ({SWEEP_FILE} is missing); start one "
                              "with python -m launch.sweep --config ... --workdir DIR")
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
    runs = [Run(r["name"], r["workdir"], [tuple(p) for p in r["overrides"]],
                r.get("submissions", [])) for r in data["runs"]]
    return cls(directory, data["config"], data["request"], runs)
