r"""Curves of JSON row files against a reference codec (results: neural_codec.md).

    python -m benchmarks.neural_codec_compare --inputs a.json,b.json [--reference pifs] \
        [--targets 0.25,0.5,1.0] [--out compare.json]

PSNR of every curve at the target rates, and its gap to the reference at every measured rate
of either curve, both linear in bpp and never extrapolated: the least gap is the "above it at
every rate" check. Rows of one label from several files are one curve; files that disagree
at a shared setting keep their own, labelled ``label [file]``
(``collage.codec.rd_compare.merge_curves``).
"""

from __future__ import annotations

import argparse

from collage.codec.rd_compare import compare, compare_table, merge_curves, save_rows


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--inputs", required=True, help="comma-separated JSON row files")
  p.add_argument("--reference", default="pifs", help="the codec label to compare against")
  p.add_argument("--targets", default="0.25,0.5,1.0", help="rates to read PSNR at")
  p.add_argument("--out", default="")
  args = p.parse_args(argv)
  rows = merge_curves(args.inputs.split(","))
  targets = [float(v) for v in args.targets.split(",")]
  try:
    result = compare(rows, args.reference, targets)
  except ValueError as e:
    raise SystemExit(f"{args.inputs}: {e}") from None
  print(compare_table(result, args.reference, targets))
  save_rows(args.out, result)
  return result


if __name__ == "__main__":
  main()
