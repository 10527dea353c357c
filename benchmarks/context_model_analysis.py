"""How many bits the context model can save on a trained model's codes, before any training.

    python -m benchmarks.context_model_analysis [--model collage/assets/neural_retired/r4_var8]
        [--qualities 25,55,85] [--data ../shared/data]

Codes every other shared photograph and every third aerial (their top-left 768 x 768) with a
factorized-prior model, then splits the tiles by image into two halves: statistics are fitted
on one and the code lengths measured on the other (never Kodak). Rows, per quality:

* ``model tables``: what the model's own integer tables spend (what its files cost);
* ``per-slot empirical``: one pmf per slot fitted on the other half (the factorized prior at its
  best: how far the learned prior is from the data);
* ``context, empirical``: the context model's binarization with the contexts of
  :func:`collage.nn.entropy_model.weight_contexts` (a significance flag per weight under its
  slot and context, the nonzero values per slot, bias coefficients per slot), fitted likewise.

The last over the second is what the context structure itself buys; the training of a context
model then also moves the code towards what the contexts predict well. (The nonzero values'
fitted pmfs keep a little smoothing mass on zero, which they never code: the context model's
gain is slightly understated.)
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

from collage.codec import neural_models
from collage.codec.neural_tiles import image_tiles
from collage.images import load_image
from collage.nn import entropy_model as em


def _codes(m, files, quality):
  codes, owner = [], []
  for i, f in enumerate(files):
    img = load_image(f)[:768, :768]
    if img.shape[-1] == 1:
      img = np.repeat(img, 3, axis=-1)
    q = m.analyse(image_tiles(img, m.cfg.tile), quality=quality if m.levels else None)
    codes.append(q)
    owner += [i] * len(q)
  return np.concatenate(codes), np.asarray(owner)


def _fit_bits(sym_fit, ctx_fit, sym, ctx, n_ctx, k, alpha):
  """Bits of ``sym`` under per-context pmfs fitted (add-alpha) on ``sym_fit``."""
  h = np.zeros((n_ctx, k))
  np.add.at(h, (ctx_fit, sym_fit), 1.0)
  p = (h + alpha) / (h + alpha).sum(1, keepdims=True)
  return float(-np.log2(p[ctx, sym]).sum())


def analyse(m, q, fit, quality):
  """Bits per pixel of the held-out tiles (rows ``~fit``) under the three models."""
  lay = m.layout
  slots, n_slots = lay.slots, lay.num_slots
  mm = m.cfg.support
  k = 2 * mm + 1
  test = ~fit
  px = test.sum() * m.cfg.tile ** 2
  out = {"model tables": float(m.code_bits(q[test], 3, quality if m.levels else None).sum())}
  s = np.broadcast_to(slots, q.shape)
  out["per-slot empirical"] = _fit_bits((q[fit] + mm).ravel(), s[fit].ravel(),
                                        (q[test] + mm).ravel(), s[test].ravel(), n_slots, k, 0.1)
  ctx = lay.code_contexts(q)
  w = np.broadcast_to(lay.is_weight, q.shape)
  nz = q != 0
  flag_ctx = s * em.CONTEXTS + ctx
  sel_f, sel_t = w & fit[:, None], w & test[:, None]
  bits = _fit_bits(nz[sel_f].astype(int), flag_ctx[sel_f], nz[sel_t].astype(int),
                    flag_ctx[sel_t], n_slots * em.CONTEXTS, 2, 0.5)
  vf, vt = sel_f & nz, sel_t & nz
  bits += _fit_bits(q[vf] + mm, s[vf], q[vt] + mm, s[vt], n_slots, k, 0.1)
  bf, bt = ~w & fit[:, None], ~w & test[:, None]
  bits += _fit_bits(q[bf] + mm, s[bf], q[bt] + mm, s[bt], n_slots, k, 0.1)
  out["context, empirical"] = bits
  return {name: b / px for name, b in out.items()}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--model", default=os.path.join(neural_models.RETIRED_DIR, "r4_var8"))
  ap.add_argument("--qualities", default="25,55,85")
  ap.add_argument("--data", default="../shared/data")
  args = ap.parse_args(argv)
  (m,) = neural_models.load_models(args.model)
  if m.cfg.context_model:
    sys.exit("--model must be a factorized-prior model (the analysis fits the context model)")
  files = (sorted(glob.glob(os.path.join(args.data, "photos", "*.png")))[::2]
           + sorted(glob.glob(os.path.join(args.data, "aerials", "*.png")))[::3])
  print(f"{len(files)} images, model {m.name}")
  print("| quality | model tables | per-slot empirical | context, empirical | context vs model |")
  print("| ---: | ---: | ---: | ---: | ---: |")
  for quality in (int(v) for v in args.qualities.split(",")):
    q, owner = _codes(m, files, quality)
    r = analyse(m, q, owner % 2 == 0, quality)
    a, b, c = r["model tables"], r["per-slot empirical"], r["context, empirical"]
    print(f"| {quality} | {a:.4f} | {b:.4f} | {c:.4f} | {100 * (c / a - 1):+.1f} % |", flush=True)


if __name__ == "__main__":
  main()
