"""The codec rate-distortion benchmark (config: experiments/configs/codec_benchmark.py).

Not a training task: ``run`` encodes every image with every codec at every quality, decodes
it, and measures bpp from the real file bytes, PSNR (RGB or gray, over all channels, peak
255), MS-SSIM, and encode / decode seconds. Artifacts in ``WORKDIR/artifacts/``:

  per_image.csv   one row per (codec, quality, image)
  averages.csv    one row per (codec, quality): the mean of each column over the images
  summary.md      the averages table, and PSNR / MS-SSIM at the target rates
  rd_psnr.png, rd_msssim.png   rate-distortion curves of the averages

PSNR at a target rate is read off the curve of averages (mean bpp, mean PSNR per quality
setting, as CompressAI does), linearly interpolated in bpp; a target outside a codec's
range of mean bpp is reported as "n/a", never extrapolated.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from typing import Any

import numpy as np

from collage.codec.base import CodecError, codec_names, get_codec, round_trip
from collage.data import augment
from collage.metrics.distortion import psnr
from collage.metrics.msssim import min_side, ms_ssim
from collage.metrics.rate import bpp
from collage.metrics.rd import value_at_rate
from collage.train.writer import write_config

FIELDS = ("codec", "quality", "image", "height", "width", "channels", "bytes", "bpp", "psnr",
          "ms_ssim", "encode_s", "decode_s")
AVERAGED = ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s")


# -- inputs -------------------------------------------------------------------------------------

def _parse_list(text: str, kind, what: str) -> list:
  try:
    return [kind(t.strip()) for t in str(text).split(",") if t.strip()]
  except ValueError:
    raise ValueError(f"{what} must be a comma-separated list of {kind.__name__}s, got "
                     f"{text!r}") from None


def _crop(image: np.ndarray, size: int) -> np.ndarray:
  if size <= 0:
    return image
  h, w = image.shape[:2]
  if h < size or w < size:
    raise ValueError(f"config.crop={size} is larger than an image of {h}x{w}")
  return np.ascontiguousarray(augment.center_crop(image, (size, size)))


def load_images(config) -> list[tuple[str, np.ndarray]]:
  """[(name, uint8 [H, W, C])] as the config selects them."""
  from collage.data import embedded, images  # pylint: disable=import-outside-toplevel
  if config.channels not in (1, 3):
    raise ValueError(f"config.channels must be 1 or 3, got {config.channels}")
  if config.images:
    folder = os.path.abspath(config.images)
    if not os.path.isdir(folder):
      raise FileNotFoundError(f"config.images={config.images!r}: no such folder ({folder})")
    paths = images.image_paths(folder)
    if config.max_images:
      paths = paths[:config.max_images]
    out = [(os.path.splitext(os.path.relpath(p, folder))[0],
            images.to_channels(images.load_image(p), config.channels)) for p in paths]
  else:
    out = embedded.embedded_images(config.channels, config.embedded_split)
    if config.max_images:
      out = out[:config.max_images]
  return [(name, _crop(np.asarray(img), config.crop)) for name, img in out]


def select_codecs(config) -> list[tuple[str, list[int]]]:
  """[(codec name, qualities)] of ``config.codecs``.

  Raises:
    ValueError: an unknown codec (listing the registered ones) or a codec with no sweep.
  """
  available = codec_names()
  chosen = []
  sweeps = dict(config.qualities.items())
  for name in _parse_list(config.codecs, str, "config.codecs"):
    if name not in available:
      raise ValueError(f"config.codecs names an unknown codec {name!r}; valid: "
                       f"{', '.join(available)}")
    if name not in sweeps:
      raise ValueError(f"config.qualities has no sweep for codec {name!r}; it has: "
                       f"{', '.join(sorted(sweeps))}")
    chosen.append((name, _parse_list(sweeps[name], int, f"config.qualities.{name}")))
  return chosen


# -- measurement --------------------------------------------------------------------------------

def measure(codec, quality: int, image: np.ndarray, with_ms_ssim: bool = True) -> dict[str, Any]:
  """One encode + decode of ``image`` -> the metrics of FIELDS (without names)."""
  h, w, c = image.shape
  data, decoded, encode_s, decode_s = round_trip(codec, image, quality)
  if decoded.shape != image.shape:
    raise CodecError(f"codec {codec.name!r} decoded shape {decoded.shape}, expected "
                     f"{image.shape}")
  use_ms = with_ms_ssim and min(h, w) >= min_side()
  return {
      "height": h, "width": w, "channels": c, "bytes": len(data),
      "bpp": bpp(len(data), h, w),
      "psnr": psnr(image, decoded, peak=255.0),
      "ms_ssim": ms_ssim(image, decoded) if use_ms else float("nan"),
      "encode_s": encode_s, "decode_s": decode_s,
  }


def average_rows(rows: list[dict]) -> list[dict]:
  """Mean of AVERAGED per (codec, quality), in first-seen order."""
  groups: dict[tuple[str, int], list[dict]] = {}
  for r in rows:
    groups.setdefault((r["codec"], r["quality"]), []).append(r)
  out = []
  for (name, quality), members in groups.items():
    avg = {"codec": name, "quality": quality, "images": len(members)}
    for key in AVERAGED:
      avg[key] = float(np.mean([m[key] for m in members]))
    out.append(avg)
  return out


# -- artifacts ----------------------------------------------------------------------------------

def _fmt(v: Any, digits: int = 4) -> str:
  if isinstance(v, float):
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"
  return str(v)


def write_csv(path: str, rows: list[dict], fields) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
      writer.writerow({k: _fmt(r[k], 6) for k in fields})


def summary_markdown(averages: list[dict], targets: list[float],
                     n_images: int, source: str) -> str:
  lines = [f"# Codec benchmark: {n_images} images ({source})", ""]
  codecs = list(dict.fromkeys(a["codec"] for a in averages))
  header = " | ".join(f"{t:g} bpp" for t in targets)
  lines += ["## PSNR (dB) at target rates (curve of per-quality averages, linear in bpp)", "",
            f"| codec | {header} |", "| --- |" + " --- |" * len(targets)]
  for name in codecs:
    vals = " | ".join(_fmt(value_at_rate(averages, name, t), 2) for t in targets)
    lines.append(f"| {name} | {vals} |")
  lines += ["", "## MS-SSIM at target rates", "", f"| codec | {header} |",
            "| --- |" + " --- |" * len(targets)]
  for name in codecs:
    vals = " | ".join(_fmt(value_at_rate(averages, name, t, "ms_ssim"), 4) for t in targets)
    lines.append(f"| {name} | {vals} |")
  lines += ["", "## Averages per quality setting", "",
            "| codec | quality | bpp | PSNR (dB) | MS-SSIM | encode (s) | decode (s) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for a in averages:
    lines.append(f"| {a['codec']} | {a['quality']} | {a['bpp']:.4f} | {_fmt(a['psnr'], 2)} | "
                 f"{_fmt(a['ms_ssim'], 4)} | {a['encode_s']:.3f} | {a['decode_s']:.3f} |")
  return "\n".join(lines) + "\n"


def plot_curves(averages: list[dict], folder: str, title: str = "") -> list[str]:
  """rd_psnr.png and rd_msssim.png: each codec's average curve; ``title`` says what was measured."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  paths = []
  for key, label, name in [("psnr", "PSNR (dB)", "rd_psnr.png"),
                           ("ms_ssim", "MS-SSIM", "rd_msssim.png")]:
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for codec in dict.fromkeys(a["codec"] for a in averages):
      pts = sorted((a["bpp"], a[key]) for a in averages if a["codec"] == codec)
      ax.plot(*zip(*pts), marker="o", markersize=3, label=codec)
    ax.set_xlabel("bits per pixel (from file bytes)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
      ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = os.path.join(folder, name)
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)
  return paths


class Eta:
  """Time left, from the work done: each codec's measured seconds per pixel times the pixels
  it has left. Codecs differ a thousandfold in speed, so a count of items misleads until
  every codec has run; codecs not timed yet are named rather than guessed."""

  def __init__(self, codecs: list[tuple[str, list[int]]], images: list[tuple[str, np.ndarray]]):
    pixels = sum(image.shape[0] * image.shape[1] for _, image in images)
    self.left: dict[str, int] = {}
    for name, qualities in codecs:
      self.left[name] = self.left.get(name, 0) + pixels * len(qualities)
    self.done = dict.fromkeys(self.left, 0)
    self.seconds = dict.fromkeys(self.left, 0.0)

  def add(self, name: str, pixels: int, seconds: float) -> None:
    """One item of ``name`` done: ``pixels`` coded (and decoded, measured) in ``seconds``."""
    self.left[name] -= pixels
    self.done[name] += pixels
    self.seconds[name] += seconds

  def __str__(self) -> str:
    eta = sum(self.left[n] * self.seconds[n] / self.done[n] for n in self.left if self.done[n])
    untimed = [n for n in self.left if self.left[n] and not self.done[n]]
    return f"ETA {eta:.0f} s" + (f" + {', '.join(untimed)} (not timed yet)" if untimed else "")


# -- the task -----------------------------------------------------------------------------------

def write_plan(config, workdir: str) -> dict:
  """``DIR/plan.json`` of a benchmark: no train or sample step, nothing compiled ahead."""
  result = {"task": config.task, "train": None, "sample": None, "fits": True,
            "note": "codec_benchmark trains nothing and has no sampler: each codec compiles "
                    "its own encoder for each image size as it runs; plan the codec trainer "
                    "(experiments/configs/compress.py) instead"}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "plan.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1, sort_keys=True)
  print(f"plan of codec_benchmark: {result['note']}", flush=True)
  return result


def run(config, workdir: str, mode: str = "train") -> dict:
  """Runs the benchmark -> the averages; ``--mode plan`` writes a plan with no steps (there
  is nothing to train or sample: the codecs run image by image), other modes run it."""
  if mode == "plan":
    return write_plan(config, workdir)
  if mode != "train":
    raise ValueError(f"--mode {mode}: codec_benchmark has no checkpoint to evaluate or sample "
                     "from; its modes are train (run the benchmark) and plan")
  targets = _parse_list(config.target_bpps, float, "config.target_bpps")
  codecs = select_codecs(config)
  images = load_images(config)
  if not images:
    raise ValueError("no images selected (check config.images / config.max_images)")
  write_config(config, workdir)  # everything is checked: from here on the run writes
  folder = os.path.join(workdir, "artifacts")
  os.makedirs(folder, exist_ok=True)
  total = len(images) * sum(len(q) for _, q in codecs)
  rows, done, start, eta = [], 0, time.perf_counter(), Eta(codecs, images)
  # per_image.csv grows row by row, so an interrupted run keeps what it measured.
  with open(os.path.join(folder, "per_image.csv"), "w", newline="") as per_image:
    writer = csv.DictWriter(per_image, fieldnames=list(FIELDS))
    writer.writeheader()
    for name, qualities in codecs:
      if name == "neural":
        codec = get_codec(name, refine=config.neural_refine, mix=bool(config.neural_mix))
      else:
        codec = get_codec(name)
      if config.warmup and qualities:
        codec.decompress(codec.compress(images[0][1], qualities[0]))
      for quality in qualities:
        for image_name, image in images:
          row = {"codec": name, "quality": quality, "image": image_name}
          item_start = time.perf_counter()
          row.update(measure(codec, quality, image, config.ms_ssim))
          eta.add(name, image.shape[0] * image.shape[1], time.perf_counter() - item_start)
          rows.append(row)
          writer.writerow({k: _fmt(row[k], 6) for k in FIELDS})
          per_image.flush()
          done += 1
          print(f"[{done}/{total}] {name} q={quality} {image_name}: {row['bpp']:.3f} bpp "
                f"{row['psnr']:.2f} dB | {time.perf_counter() - start:.0f} s elapsed, {eta}",
                flush=True)
  averages = average_rows(rows)
  write_csv(os.path.join(folder, "averages.csv"), averages,
            ("codec", "quality", "images") + AVERAGED)
  source = config.images or f"embedded:{config.embedded_split}"
  if config.crop:
    source += f", centre crop {config.crop}x{config.crop}"
  text = summary_markdown(averages, targets, len(images), source)
  with open(os.path.join(folder, "summary.md"), "w") as f:
    f.write(text)
  if averages:
    plot_curves(averages, folder, f"average of {len(images)} images: {source}")
  print(text, flush=True)
  print(f"codec_benchmark: artifacts in {folder}", flush=True)
  return {"averages": averages, "rows": rows}
