r"""Sample quality of every generative system on the embedded digits: digits FID, KID,
precision, recall (:mod:`collage.evals.digits`, the shipped digit classifier's features against
the 4,500 training digits), samples/s; see sample_quality.md.

    python -m benchmarks.sample_quality reference              # the reference rows (no model)
    python -m benchmarks.sample_quality eval vdvae runs/vdvae_mnist \
        experiments/configs/vdvae.py:mnist [--step S] [--set sample.temperature=0.85] [--label L]
    python -m benchmarks.sample_quality table                  # markdown from the rows so far
    python -m benchmarks.sample_quality plot vdvae collage_vdvae   # FID against the step

``eval`` runs the one entrypoint (``python -m experiments.main --mode eval``, the config's digit
evaluators, ``--config.checkpoint_step=S``; each ``--set KEY=VALUE`` becomes
``--config.KEY=VALUE``) and appends the logged digit scores to
``benchmarks/data/sample_quality/rows.jsonl`` (``--snapshot``: of a copy of the checkpoint, for
a run still training); ``reference`` writes ``reference.json`` there:
the 500 held-out digits (the floor a perfect model reaches at that count), 2,000 training
digits (the same set as the reference: below any honest model), and 2,000 training digits
blurred or with added noise (bad models).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import matplotlib
import numpy as np
from skimage import filters

from collage.data import digits
from collage.evals.digits import DigitScorer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "sample_quality")  # the rows (JSON)
PICTURES = os.path.join(HERE, "sample_quality")     # the plot and sample grids of the .md
ROWS = os.path.join(OUT, "rows.jsonl")
REFERENCE = os.path.join(OUT, "reference.json")
KEYS = {"digits_fid/fid": "fid", "digits_kid/kid": "kid", "digits_kid/kid_std": "kid_std",
        "digits_prec_recall/precision": "precision", "digits_prec_recall/recall": "recall",
        "digits_fid/samples_per_sec": "samples_per_sec"}
NUM = 2000
BLUR_SIGMA = 1.0    # pixels
NOISE_SIGMA = 0.25  # of the full range, then clipped


def _reference(args: argparse.Namespace) -> int:
  scorer = DigitScorer()
  real = scorer.reference("train")
  train, _ = digits.digit_images("train")
  held, _ = digits.digit_images("eval")
  rng = np.random.default_rng(0)
  subset = train[rng.choice(len(train), args.num, replace=False)]
  x = subset.astype(np.float64) / 255.0
  blurred = np.stack([filters.gaussian(im[..., 0], sigma=BLUR_SIGMA)[..., None] for im in x])
  noisy = np.clip(x + NOISE_SIGMA * rng.normal(size=x.shape), 0, 1)
  to8 = lambda v: np.round(np.clip(v, 0, 1) * 255).astype(np.uint8)
  rows = {
      "held-out digits (500)": held,
      f"training digits ({args.num}, drawn from the reference set)": subset,
      f"training digits blurred (Gaussian sigma {BLUR_SIGMA} px, {args.num})": to8(blurred),
      f"training digits + noise (sigma {NOISE_SIGMA}, clipped, {args.num})": to8(noisy)}
  out = {"network_sha256": scorer.sha256, "reference": f"train ({len(real)} digits)", "rows": {}}
  for name, imgs in rows.items():
    out["rows"][name] = {"num": len(imgs), **DigitScorer.scores(real, scorer.features(imgs))}
    print(name, out["rows"][name])
  os.makedirs(OUT, exist_ok=True)
  with open(REFERENCE, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
  print(f"wrote {REFERENCE}")
  return 0


def _metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _snapshot(workdir: str, step: int) -> str:
  """A new directory holding ``workdir``'s config and its checkpoint ``step`` (-1: the newest
  complete one), so a run that is still training is read, never written to."""
  ckpts = os.path.join(workdir, "checkpoints")
  steps = sorted(int(p) for p in os.listdir(ckpts) if p.isdigit())
  if step < 0:
    step = steps[-1]
  if step not in steps:
    raise SystemExit(f"error: {ckpts} has no checkpoint {step}; it has {steps}")
  snap = tempfile.mkdtemp(prefix=f"{os.path.basename(os.path.normpath(workdir))}-{step}-",
                          dir=os.path.dirname(os.path.abspath(workdir)))
  shutil.copy(os.path.join(workdir, "config.json"), snap)
  shutil.copytree(os.path.join(ckpts, str(step)), os.path.join(snap, "checkpoints", str(step)))
  return snap


def _eval(args: argparse.Namespace) -> int:
  workdir = _snapshot(args.workdir, args.step) if args.snapshot else args.workdir
  try:
    return _eval_in(args, workdir)
  finally:
    if args.snapshot:
      shutil.rmtree(workdir, ignore_errors=True)


def _eval_in(args: argparse.Namespace, workdir: str) -> int:
  before = len(_metrics(workdir))
  cmd = [sys.executable, "-m", "experiments.main", "--mode", "eval", "--config", args.config,
         "--workdir", workdir, f"--config.checkpoint_step={args.step}",
         f"--config.evals.digits_fid.num_samples={args.num}",
         f"--config.evals.digits_kid.num_samples={args.num}",
         f"--config.evals.digits_prec_recall.num_samples={args.num}",
         *[f"--config.{s}" for s in args.set]]
  print(" ".join(cmd[1:]), flush=True)
  t0 = time.time()
  done = subprocess.run(cmd, check=False)
  if done.returncode:
    print(f"error: the evaluation failed (exit {done.returncode})", file=sys.stderr)
    return done.returncode
  new = _metrics(workdir)[before:]
  logged = {}
  for row in new:
    if any(k in row for k in KEYS):
      logged.update(row)
  if not logged:
    print("error: the run logged no digit scores: does its config name the digit evaluators?",
          file=sys.stderr)
    return 1
  row = {"name": args.name, "label": args.label or args.name, "workdir": args.workdir,
         "config": args.config, "step": logged["step"], "num": args.num, "set": args.set,
         "wall_s": round(time.time() - t0, 1), **{v: logged[k] for k, v in KEYS.items()}}
  os.makedirs(OUT, exist_ok=True)
  with open(ROWS, "a", encoding="utf-8") as f:
    f.write(json.dumps(row) + "\n")
  print(json.dumps(row))
  return 0


def _rows() -> list[dict]:
  if not os.path.isfile(ROWS):
    return []
  with open(ROWS, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _table(args: argparse.Namespace) -> int:
  print("| model | checkpoint step | samples | digits FID | KID (± std) | precision | "
        "recall | samples/s |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- |")
  latest = {}
  for r in _rows():  # the last row of each (label, step) counts
    latest[(r["label"], r["step"])] = r
  if args.final:  # each label's newest checkpoint only
    newest = {}
    for (label, step), r in latest.items():
      if label not in newest or step > newest[label]["step"]:
        newest[label] = r
    latest = {(k, r["step"]): r for k, r in newest.items()}
  for r in latest.values():
    print(f"| {r['label']} | {r['step']} | {r['num']} | {r['fid']:.2f} | "
          f"{r['kid']:.1f} ± {r['kid_std']:.1f} | {r['precision']:.3f} | "
          f"{r['recall']:.3f} | {r['samples_per_sec']:.0f} |")
  if os.path.isfile(REFERENCE):
    with open(REFERENCE, encoding="utf-8") as f:
      ref = json.load(f)
    for name, r in ref["rows"].items():
      print(f"| *{name}* | - | {r['num']} | {r['fid']:.2f} | {r['kid']:.1f} ± "
            f"{r['kid_std']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} | - |")
  return 0


def _plot(args: argparse.Namespace) -> int:
  fig, ax = plt.subplots(figsize=(6, 4), dpi=80)
  for name in args.names:
    points = {}
    for r in _rows():
      if r["label"] == name:
        points[r["step"]] = r["fid"]
    if points:
      steps = sorted(points)
      ax.plot(steps, [points[s] for s in steps], "o-", label=name)
  ax.set_xlabel("training step (EMA parameters)")
  ax.set_ylabel(f"digits FID ({NUM} samples)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  path = os.path.join(PICTURES, "fid_vs_step.png")
  os.makedirs(PICTURES, exist_ok=True)
  fig.savefig(path)
  print(f"wrote {path}")
  return 0


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.sample_quality",
                              description=__doc__.split("\n\n")[0])
  sub = p.add_subparsers(dest="command", required=True)
  r = sub.add_parser("reference", help="the reference rows (held-out, blurred, noisy digits)")
  r.add_argument("--num", type=int, default=NUM)
  e = sub.add_parser("eval", help="score one run's checkpoint through the entrypoint")
  e.add_argument("name")
  e.add_argument("workdir")
  e.add_argument("config", help="the run's config, e.g. experiments/configs/vdvae.py:mnist")
  e.add_argument("--step", type=int, default=-1, help="checkpoint step (-1: the latest)")
  e.add_argument("--num", type=int, default=NUM, help="samples drawn")
  e.add_argument("--set", action="append", default=[], help="KEY=VALUE: --config.KEY=VALUE")
  e.add_argument("--label", default="", help="the row's label (default: NAME)")
  e.add_argument("--snapshot", action="store_true",
                 help="evaluate a copy of the checkpoint (a run that is still training)")
  t = sub.add_parser("table", help="the markdown table of the rows so far")
  t.add_argument("--final", action="store_true", help="each label's newest checkpoint only")
  pl = sub.add_parser("plot", help="digits FID against the checkpoint step")
  pl.add_argument("names", nargs="+", help="row labels to plot")
  args = p.parse_args(argv)
  return {"reference": _reference, "eval": _eval, "table": _table, "plot": _plot}[args.command](
      args)


if __name__ == "__main__":
  sys.exit(main())
