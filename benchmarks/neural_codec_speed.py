r"""Encode speed against a reference codec (PIFS) at equal PSNR, from JSON row files.

    python -m benchmarks.neural_codec_speed speedup --inputs neural.json,pifs.json \
        [--reference pifs] [--out speedup.json]
    python -m benchmarks.neural_codec_speed coverage --inputs neural.json,pifs.json \
        [--reference pifs] [--codecs PREFIX] [--out coverage.json]

``speedup``: every row's encode time against the reference's at the same PSNR (the
reference's time and rate interpolated linearly in PSNR between its rows, never
extrapolated). ``coverage``: the worst speed-up across the reference's whole PSNR span,
taking at each PSNR the fastest other row that reaches at least it; on the averages, and per
image when the rows hold every image's time. Times compare only between rows measured on one
machine at one time (``neural_codec_rd`` runs back to back).
"""

from __future__ import annotations

import argparse

from collage.codec import rd_compare


def main(argv=None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  for name in ("speedup", "coverage"):
    s = sub.add_parser(name)
    s.add_argument("--inputs", required=True, help="comma-separated JSON row files")
    s.add_argument("--reference", default="pifs", help="the codec label to compare against")
    s.add_argument("--out", default="")
    if name == "coverage":
      s.add_argument("--codecs", default="",
                     help="only rows whose codec label starts with this (default: every other)")
  args = p.parse_args(argv)
  rows = rd_compare.load_rows(args.inputs.split(","))
  try:
    if args.cmd == "speedup":
      result = rd_compare.speedup(rows, args.reference)
      print(rd_compare.speedup_table(result, rows, args.reference))
    else:
      result = rd_compare.coverage(rows, args.reference, args.codecs)
      print(rd_compare.coverage_table(result, args.reference))
  except ValueError as e:
    raise SystemExit(f"{args.inputs}: {e}") from None
  rd_compare.save_rows(args.out, result)
  return result


if __name__ == "__main__":
  main()
