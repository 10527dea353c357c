"""FID, sFID, precision / recall and Inception score between two statistics files.

    python -m collage.evals.compare_stats REFERENCE.npz SAMPLES.npz

Both files come from ``python -m collage.evals.reference_stats`` with the same Inception
weights (a file of other weights is refused). Prints what guided-diffusion's
``evaluations/evaluator.py REF_BATCH SAMPLE_BATCH`` prints, in its order: the Inception score of
the second file, FID and sFID between the two, precision (second inside the first's manifold)
and recall (first inside the second's), k = 3.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from collage.evals import reference
from collage.metrics import frechet, prec_recall


def compare(ref: reference.Reference, other: reference.Reference) -> dict[str, float]:
  """The five numbers of the module docstring."""
  precision, recall = prec_recall.precision_recall(ref.features, other.features)
  return {"inception_score": other.inception_score,
          "fid": frechet.frechet_distance(other.mu, other.sigma, ref.mu, ref.sigma),
          "sfid": frechet.frechet_distance(other.mu_s, other.sigma_s, ref.mu_s, ref.sigma_s),
          "precision": precision, "recall": recall}


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m collage.evals.compare_stats",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("reference", help="statistics of the reference data (.npz)")
  p.add_argument("other", help="statistics of the samples to evaluate (.npz)")
  args = p.parse_args(argv)
  try:
    ref = reference.load(args.reference)
    other = reference.load(args.other, weights_sha256=ref.weights_sha256)
  except reference.ReferenceError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"reference: {ref.dataset}, {ref.num_images} images ({len(ref.features)} for P/R)")
  print(f"other:     {other.dataset}, {other.num_images} images ({len(other.features)} for P/R)")
  values = compare(ref, other)
  for key, name in (("inception_score", "Inception Score"), ("fid", "FID"), ("sfid", "sFID"),
                    ("precision", "Precision"), ("recall", "Recall")):
    print(f"{name}: {values[key]}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
