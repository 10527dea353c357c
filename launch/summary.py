"""What a sweep's runs logged: progress for ``status``, final and best values for ``summary``."""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Sequence

from launch.plan import Run, Sweep


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The rows of ``WORKDIR/metrics.jsonl`` ([] when there is none yet)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(path):
    return []
  rows = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:  # a line being written right now
        continue
  return rows


def logged_metrics(sweep: Sweep) -> list[str]:
  """Every metric any run of ``sweep`` has logged so far, sorted."""
  names = set()
  for run in sweep.runs:
    for row in read_metrics(run.workdir):
      names.update(k for k in row if k != "step")
  return sorted(names)


def total_steps(workdir: str) -> int | None:
  """``total_steps`` from the run's ``config.json`` (None before the run wrote it)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f).get("total_steps")


def log_tail(workdir: str, lines: int = 5) -> list[str]:
  """The last ``lines`` non-empty lines of the run's ``log.txt``."""
  path = os.path.join(workdir, "log.txt")
  if not os.path.isfile(path):
    return []
  with open(path, encoding="utf-8", errors="replace") as f:
    return [l.rstrip() for l in f.read().splitlines() if l.strip()][-lines:]


def metric_values(rows: Sequence[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
  """``[(step, value)]`` of ``metric`` over the logged rows (finite values only)."""
  out = []
  for r in rows:
    v = r.get(metric)
    if isinstance(v, (int, float)) and math.isfinite(v):
      out.append((int(r["step"]), float(v)))
  return out


def collect(sweep: Sweep, metric: str, mode: str = "min") -> list[dict[str, Any]]:
  """One row per run: its overrides, the final and best value of ``metric`` and their steps,
  sorted best first (runs without the metric last).

  Raises:
    ValueError: ``mode`` is not min or max.
  """
  if mode not in ("min", "max"):
    raise ValueError(f"--mode={mode!r} is unknown; valid: min, max")
  pick = min if mode == "min" else max
  table = []
  for run in sweep.runs:
    values = metric_values(read_metrics(run.workdir), metric)
    row: dict[str, Any] = {"run": run.name, **dict(run.overrides)}
    if values:
      best = pick(values, key=lambda sv: sv[1])
      row.update(final=values[-1][1], final_step=values[-1][0], best=best[1], best_step=best[0])
    table.append(row)
  sign = 1.0 if mode == "min" else -1.0
  table.sort(key=lambda r: (0, sign * r["best"]) if "best" in r else (1, 0.0))
  return table


def write_summary(sweep: Sweep, table: list[dict[str, Any]], metric: str) -> list[str]:
  """``summary.csv``, ``summary.md`` and ``summary.png`` (the metric against each swept key)
  in the sweep directory; returns their paths."""
  keys = sorted({k for run in sweep.runs for k, _ in run.overrides})
  columns = ["run", *keys, "final", "final_step", "best", "best_step"]
  csv_path = os.path.join(sweep.directory, "summary.csv")
  with open(csv_path, "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=columns)
    w.writeheader()
    for row in table:
      w.writerow({c: row.get(c, "") for c in columns})
  md_path = os.path.join(sweep.directory, "summary.md")
  fmt = lambda v: f"{v:.5g}" if isinstance(v, float) else str(v)
  with open(md_path, "w", encoding="utf-8") as f:
    f.write(f"# Sweep {os.path.basename(os.path.abspath(sweep.directory))}: {metric}\n\n")
    f.write(f"`{sweep.config}`, {len(sweep.runs)} runs, best first.\n\n")
    f.write("| " + " | ".join(columns[1:]) + " |\n|" + "---|" * (len(columns) - 1) + "\n")
    for row in table:
      f.write("| " + " | ".join(fmt(row.get(c, "—")) for c in columns[1:]) + " |\n")
  paths = [csv_path, md_path]
  plotted = _plot(sweep, table, keys, metric)
  if plotted:
    paths.append(plotted)
  return paths


def _as_number(text: str) -> float | None:
  try:
    return float(text)
  except (TypeError, ValueError):
    return None


def _plot(sweep: Sweep, table: list[dict[str, Any]], keys: list[str], metric: str) -> str | None:
  rows = [r for r in table if "best" in r]
  if not rows or not keys:
    return None
  # Imported here: `python -m launch.sweep` imports this module for every command, and
  # matplotlib (0.9 s) and its file-only backend are needed only when a plot is drawn.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
  for ax, key in zip(axes[0], keys):
    xs = [r.get(key) for r in rows]
    nums = [_as_number(x) for x in xs]
    if all(n is not None for n in nums):
      ax.scatter(nums, [r["final"] for r in rows], label="final")
      ax.scatter(nums, [r["best"] for r in rows], marker="x", label="best")
      positive = [n for n in nums if n > 0]
      if len(positive) == len(nums) and max(positive) / min(positive) >= 20:
        ax.set_xscale("log")
    else:
      labels = sorted(set(xs))
      pos = [labels.index(x) for x in xs]
      ax.scatter(pos, [r["final"] for r in rows], label="final")
      ax.scatter(pos, [r["best"] for r in rows], marker="x", label="best")
      ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
  axes[0][0].legend()
  fig.tight_layout()
  path = os.path.join(sweep.directory, "summary.png")
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def progress(run: Run) -> tuple[int | None, int | None, dict[str, float]]:
  """(last logged step, total steps, the latest logged metrics worth a glance)."""
  rows = read_metrics(run.workdir)
  last = rows[-1]["step"] if rows else None
  shown = {}
  for r in reversed(rows):
    for k, v in r.items():
      if k in ("step", "steps_per_sec") or "/" in k and not k.startswith("eval"):
        continue
      if k not in shown and isinstance(v, (int, float)):
        shown[k] = float(v)
    if len(shown) >= 3:
      break
  return last, total_steps(run.workdir), dict(sorted(shown.items())[:3])
