r"""RD curves (bpp, PSNR) of JSON row files, one PNG (the README's neural_codec_rd.png).

    python -m benchmarks.neural_codec_plot --inputs a.json,b.json --out rd.png \
        [--title "Kodak (24 images)"] [--exclude LABEL ...]

Every codec label is a curve (``collage.codec.rd_compare.merge_curves``), beside the
published JPEG and COIN Kodak points.
"""

from __future__ import annotations

import argparse

from collage.codec.rd_compare import labels, merge_curves
from collage.codec.rd_plot import plot_rows


def main(argv=None) -> str:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--inputs", required=True, help="comma-separated JSON row files")
  p.add_argument("--title", default="Kodak (24 images)")
  p.add_argument("--out", default="neural_codec_rd.png")
  p.add_argument("--exclude", action="append", default=[],
                 help="a codec label to leave out (repeat for several; labels hold commas), "
                      "e.g. a curve that another file holds under another label")
  args = p.parse_args(argv)
  rows = merge_curves(args.inputs.split(","))
  unknown = set(args.exclude) - set(labels(rows))
  if unknown:
    raise SystemExit(f"--exclude {sorted(unknown)}: no such codec label in {args.inputs}")
  plot_rows([r for r in rows if r["codec"] not in args.exclude], args.out, args.title)
  print(f"wrote {args.out}")
  return args.out


if __name__ == "__main__":
  main()
