"""Reading RD curves against each other: PSNR at target rates, the gap to a reference codec,
and encode speed against a reference at equal PSNR.

Rows are dicts with "codec" (a curve's label), "bpp", "psnr", "encode_s" and "quality" or a
"setting" string (``collage.codec.rd.curve_rows``, or the stored files of
``benchmarks/data/neural_codec/``); "per_image" (lists in image order) when the rows hold
each image's figures. Along bpp curves are linear and never extrapolated
(``collage.metrics.rd.value_at_rate``); along PSNR a reference's encode time and rate are
linear between its rows, and nothing is read outside its PSNR span.
"""

from __future__ import annotations

import json
import os

import numpy as np

from collage.metrics.rd import value_at_rate


def setting(row: dict) -> str:
  """What made a row on its curve: its "setting", else "quality Q"."""
  return row.get("setting", f"quality {row.get('quality')}")


def load_rows(paths: list[str]) -> list[dict]:
  """Every row of the JSON row files, in order (rows of one run: their times compare)."""
  rows = []
  for path in paths:
    with open(path) as f:
      rows += json.load(f)
  return rows


def save_rows(path: str, rows) -> None:
  """Writes rows (or any JSON result) to ``path`` as the tools pass them on; ``""``: nowhere."""
  if path:
    with open(path, "w") as f:
      json.dump(rows, f, indent=1)


def merge_curves(paths: list[str]) -> list[dict]:
  """The rows of the JSON row files as curves, in order.

  Rows of one codec label from several files form one curve, a row repeated (same setting,
  same bpp and PSNR to 1e-6: a deterministic reference run again) once. If two files
  disagree at a shared setting (the same encoder with other models, say), each file's rows of
  that label become their own curve, ``label [file]``, the file named by its stem (or its
  path, when two files share a stem). Runs with other models at disjoint settings are not
  told apart: give such files distinct labels or compare them separately."""
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  if len(set(stems)) < len(stems):
    stems = [os.path.splitext(p)[0] for p in paths]
  per_file = [(stem, load_rows([path])) for stem, path in zip(stems, paths)]
  seen: dict[tuple[str, str], tuple[float, float]] = {}
  split_labels = set()
  for _, rows in per_file:
    for r in rows:
      key, point = (r["codec"], setting(r)), (r["bpp"], r["psnr"])
      if not np.allclose(seen.setdefault(key, point), point, rtol=0.0, atol=1e-6):
        split_labels.add(r["codec"])
  out, done = [], set()
  for stem, rows in per_file:
    for r in rows:
      label = f"{r['codec']} [{stem}]" if r["codec"] in split_labels else r["codec"]
      if (label, setting(r)) not in done:
        done.add((label, setting(r)))
        out.append({**r, "codec": label})
  return out


def labels(rows: list[dict]) -> list[str]:
  """The curves' labels, in first-seen order."""
  return list(dict.fromkeys(r["codec"] for r in rows))


# -- rate–distortion ---------------------------------------------------------------------------

def compare(rows: list[dict], reference: str, targets: list[float]) -> dict[str, dict]:
  """Every curve against ``reference``: {label: {"psnr_at": {target: PSNR or None},
  "gaps": [(bpp, PSNR - reference's PSNR)]}}, the gaps at every measured rate of either curve
  where both are defined (the "above it at every rate" check)."""
  if reference not in labels(rows):
    raise ValueError(f"no codec {reference!r} in the rows; codecs: {sorted(labels(rows))}")
  out = {}
  for label in labels(rows):
    rates = sorted({r["bpp"] for r in rows if r["codec"] in (label, reference)})
    gaps = [(rate, value_at_rate(rows, label, rate) - value_at_rate(rows, reference, rate))
            for rate in rates]
    psnr_at = [value_at_rate(rows, label, t) for t in targets]
    out[label] = {"psnr_at": {t: None if np.isnan(v) else v for t, v in zip(targets, psnr_at)},
                  "gaps": [g for g in gaps if not np.isnan(g[1])]}
  return out


def compare_table(result: dict[str, dict], reference: str, targets: list[float]) -> str:
  """:func:`compare`'s result as markdown: PSNR at the targets, the least and largest gap."""
  cell = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
  lines = ["| codec | " + " | ".join(f"{t:g} bpp" for t in targets) +
           f" | min gap to {reference} (at bpp) | max gap |",
           "| --- |" + " ---: |" * (len(targets) + 2)]
  for label, r in result.items():
    gaps = r["gaps"]
    worst = min(gaps, key=lambda g: g[1]) if gaps else None
    best = max(g[1] for g in gaps) if gaps else None
    lines.append(f"| {label} | " + " | ".join(cell(r["psnr_at"][t]) for t in targets) + " | " +
                 ("n/a" if worst is None else f"{worst[1]:+.2f} ({worst[0]:.3f})") + " | " +
                 ("n/a" if best is None else f"{best:+.2f}") + " |")
  return "\n".join(lines)


# -- speed at equal PSNR -----------------------------------------------------------------------

def _reference(rows: list[dict], reference: str) -> list[dict]:
  ref = sorted((r for r in rows if r["codec"] == reference), key=lambda r: r["psnr"])
  if len(ref) < 2:
    raise ValueError(f"need at least two {reference!r} rows to read its encode time at a "
                     f"PSNR; codecs: {sorted(labels(rows))}")
  return ref


def speedup(rows: list[dict], reference: str) -> list[dict]:
  """Every other row's encode time against the reference's at the same PSNR.

  -> [{codec, setting, bpp, psnr, encode_s, and inside the reference's PSNR span
  reference_encode_s, reference_bpp (interpolated linearly in PSNR) and speedup}]."""
  ref = _reference(rows, reference)
  ref_psnr = np.array([r["psnr"] for r in ref])
  out = []
  for r in rows:
    if r["codec"] == reference:
      continue
    row = {"codec": r["codec"], "setting": setting(r), "bpp": r["bpp"], "psnr": r["psnr"],
           "encode_s": r["encode_s"]}
    if ref_psnr[0] <= r["psnr"] <= ref_psnr[-1]:
      t = float(np.interp(r["psnr"], ref_psnr, [x["encode_s"] for x in ref]))
      b = float(np.interp(r["psnr"], ref_psnr, [x["bpp"] for x in ref]))
      row.update(reference_encode_s=t, reference_bpp=b, speedup=t / r["encode_s"])
    out.append(row)
  return out


def speedup_table(result: list[dict], rows: list[dict], reference: str) -> str:
  """:func:`speedup`'s result as markdown (``rows``: its input, for the reference's span)."""
  ref_psnr = [r["psnr"] for r in _reference(rows, reference)]
  lines = [f"| codec | setting | bpp | PSNR | encode s | {reference} s at that PSNR | "
           f"{reference} bpp there | speed-up |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for r in result:
    head = (f"| {r['codec']} | {r['setting']} | {r['bpp']:.3f} | {r['psnr']:.2f} | "
            f"{r['encode_s']:.3f} | ")
    if "speedup" in r:
      lines.append(head + f"{r['reference_encode_s']:.3f} | {r['reference_bpp']:.3f} | "
                   f"{r['speedup']:.1f}x |")
    else:
      lines.append(head + f"outside {reference}'s {ref_psnr[0]:.2f}-{ref_psnr[-1]:.2f} dB "
                   "| | |")
  return "\n".join(lines)


def worst_speedup(ref: list[tuple[float, float]], rows: list[tuple[float, float, str]],
                  points: int = 400) -> dict:
  """The lowest ratio, over the reference's PSNR span, of the reference's encode time
  (interpolated linearly in PSNR between its (psnr, seconds) points) to the fastest of
  ``rows`` (psnr, seconds, name) that reaches at least that PSNR."""
  ref = sorted(ref)
  ps, ts = np.array([r[0] for r in ref]), np.array([r[1] for r in ref])
  grid = np.unique(np.concatenate([np.linspace(ps[0], ps[-1], points), ps,
                                   [r[0] for r in rows if ps[0] <= r[0] <= ps[-1]]]))
  worst = {"speedup": np.inf}
  for p in grid:
    reach = [r for r in rows if r[0] >= p]
    if not reach:
      return {"speedup": 0.0, "psnr": float(p), "by": "nothing reaches it"}
    best = min(reach, key=lambda r: r[1])
    ratio = float(np.interp(p, ps, ts)) / best[1]
    if ratio < worst["speedup"]:
      worst = {"speedup": ratio, "psnr": float(p), "by": best[2], "encode_s": best[1],
               "reference_encode_s": float(np.interp(p, ps, ts))}
  return worst


def coverage(rows: list[dict], reference: str, prefix: str = "") -> list[dict]:
  """The worst speed-up over the reference across its PSNR span (:func:`worst_speedup`),
  taking at each PSNR the fastest other row (those whose label starts with ``prefix``) that
  reaches it: on the averages ("image": "average"), then per image when every row holds
  each image's encode time."""
  ref = [r for r in rows if r["codec"] == reference]
  cands = [r for r in rows if r["codec"] != reference and r["codec"].startswith(prefix)]
  if len(ref) < 2 or not cands:
    raise ValueError(f"coverage needs two {reference!r} rows and others; codecs: "
                     f"{sorted(labels(rows))}")
  name = lambda r: f"{r['codec']}, {r.get('setting', r.get('quality'))}"  # noqa: E731
  out = [{"image": "average",
          **worst_speedup([(r["psnr"], r["encode_s"]) for r in ref],
                          [(r["psnr"], r["encode_s"], name(r)) for r in cands])}]
  if all("encode_s" in r.get("per_image", {}) for r in ref + cands):
    names = ref[0]["per_image"].get("image")
    for i in range(len(ref[0]["per_image"]["psnr"])):
      at = lambda r, k, i=i: r["per_image"][k][i]  # noqa: E731
      out.append({"image": names[i] if names else i, **worst_speedup(
          [(at(r, "psnr"), at(r, "encode_s")) for r in ref],
          [(at(r, "psnr"), at(r, "encode_s"), name(r)) for r in cands])})
  return out


def coverage_table(result: list[dict], reference: str) -> str:
  """:func:`coverage`'s result as markdown."""
  lines = [f"| image | worst speed-up over {reference}'s PSNR span | at PSNR | by |",
           "| --- | ---: | ---: | --- |"]
  lines += [f"| {o['image']} | {o['speedup']:.1f}x | {o['psnr']:.2f} | {o['by']} |"
            for o in result]
  return "\n".join(lines)
