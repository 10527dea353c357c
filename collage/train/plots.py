r"""A run's curves as a picture, without TensorBoard: every metric of ``DIR/metrics.jsonl``
against the step, one panel each, written to ``DIR/artifacts/metrics.png``.

    python -m collage.train.plots DIR [--metrics loss,eval/bpd] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Sequence

# Bookkeeping the runtime logs beside the metrics: left out unless asked for by name.
_BOOKKEEPING = ("steps_per_sec", "/skipped", "/learning_rate", "/skipped_nonfinite",
                "/skipped_large")


def read_curves(workdir: str) -> dict[str, list[tuple[int, float]]]:
  """``{metric: [(step, value), ...]}`` from ``workdir/metrics.jsonl``.

  Raises:
    FileNotFoundError: the directory has no metrics.jsonl (not a run, or nothing logged yet).
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{workdir} has no metrics.jsonl: not a run directory, or the run "
                            "has not logged yet")
  curves: dict[str, list[tuple[int, float]]] = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      if not line.strip():
        continue
      row = json.loads(line)
      for key, value in row.items():
        if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
          curves.setdefault(key, []).append((int(row["step"]), float(value)))
  return curves


def plot_curves(workdir: str, metrics: Sequence[str] = (), out: str = "") -> str:
  """Draws the chosen metrics (default: all but the runtime's bookkeeping); returns the PNG path.

  Raises:
    ValueError: a metric the run never logged (listing the ones it did).
  """
  # matplotlib (about 0.3 s) only when a run is drawn; a Figure of its own, no pyplot state.
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  curves = read_curves(workdir)
  unknown = [m for m in metrics if m not in curves]
  if unknown:
    raise ValueError(f"{workdir} never logged {', '.join(unknown)}; it logged: "
                     f"{', '.join(sorted(curves))}")
  names = list(metrics) or sorted(k for k in curves if not any(b in k for b in _BOOKKEEPING))
  if not names:
    raise ValueError(f"{workdir}/metrics.jsonl holds no metrics yet")
  cols = min(3, len(names))
  rows = -(-len(names) // cols)
  fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=110)
  axes = fig.subplots(rows, cols, squeeze=False)
  for ax, name in zip(axes.flat, names):
    steps, values = zip(*curves[name])
    ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(names):]:
    ax.axis("off")
  fig.suptitle(os.path.basename(os.path.abspath(workdir)), fontsize=10)
  fig.tight_layout()
  out = out or os.path.join(workdir, "artifacts", "metrics.png")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out)
  return out


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m collage.train.plots",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir", help="a run directory (with metrics.jsonl)")
  parser.add_argument("--metrics", default="", help="comma-separated metrics (default: all)")
  parser.add_argument("--out", default="", help="PNG path (default: DIR/artifacts/metrics.png)")
  args = parser.parse_args(argv)
  try:
    path = plot_curves(args.workdir, [m for m in args.metrics.split(",") if m], args.out)
  except (FileNotFoundError, ValueError) as e:
    sys.stderr.write(f"error: {e}\n")
    return 2
  print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
