"""Rate–distortion plots: one PNG of labelled (bpp, value) curves."""

from __future__ import annotations

import os

from matplotlib.figure import Figure  # a figure of its own: no pyplot, no global backend

# Published Kodak points (bpp, PSNR) drawn dashed beside measured curves.
PUBLISHED = {"JPEG (published)": [(0.25, 24.55), (0.5, 28.94), (1.0, 32.59)],
             "COIN (published)": [(0.25, 25.72), (0.5, 27.68), (1.0, 29.86)]}


def plot_rd(curves: dict[str, list[tuple[float, float]]], path: str, ylabel: str, *,
            xlabel: str = "bpp (from file bytes)", title: str = "",
            references: dict[str, list[tuple[float, float]]] | None = None,
            marker_size: float | None = None, title_size: float | None = None,
            legend_size: float | None = None, layout_dpi: float | None = None) -> str:
  """``curves`` {label: [(bpp, value)]} (sorted by bpp here) as lines with markers, and
  ``references`` {label: points} dashed, to the PNG ``path`` (6 x 4.5 inches, 120 dpi; the
  figure is laid out at ``layout_dpi``, matplotlib's default when None)."""
  fig = Figure(figsize=(6, 4.5), dpi=layout_dpi)
  ax = fig.subplots()
  for label, pts in curves.items():
    ax.plot(*zip(*sorted(pts)), "o-", markersize=marker_size, label=label)
  for label, pts in (references or {}).items():
    ax.plot(*zip(*pts), "x--", label=label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title, **({} if title_size is None else {"fontsize": title_size}))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=legend_size)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  return path


def plot_rows(rows: list[dict], path: str, title: str = "", published: bool = True) -> str:
  """The (bpp, PSNR) curve of every codec label in ``rows`` (a repeated point once), and the
  PUBLISHED Kodak points when ``published``, to the PNG ``path``."""
  curves: dict[str, set[tuple[float, float]]] = {}
  for row in rows:
    curves.setdefault(row["codec"], set()).add((row["bpp"], row["psnr"]))
  return plot_rd({k: list(v) for k, v in curves.items()}, path, "PSNR (dB, RGB)", title=title,
                 references=PUBLISHED if published else None, legend_size=8)


def plot_averages(averages: list[dict], folder: str, title: str = "") -> list[str]:
  """rd_psnr.png and rd_msssim.png in ``folder``: each codec's curve of per-quality averages;
  ``title`` says what was measured."""
  paths = []
  for key, label, name in [("psnr", "PSNR (dB)", "rd_psnr.png"),
                           ("ms_ssim", "MS-SSIM", "rd_msssim.png")]:
    curves = {codec: [(a["bpp"], a[key]) for a in averages if a["codec"] == codec]
              for codec in dict.fromkeys(a["codec"] for a in averages)}
    paths.append(plot_rd(curves, os.path.join(folder, name), label,
                         xlabel="bits per pixel (from file bytes)", title=title, marker_size=3,
                         title_size=9, layout_dpi=120))
  return paths
