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
import os
import time

import numpy as np

from collage.codec import rd
from collage.codec.base import codec_names, get_codec
from collage.codec.rd import AVERAGED, FIELDS, average_rows, fmt, measure, summary_markdown
from collage.codec.rd_plot import plot_averages
from collage.train.writer import write_config


# -- inputs -------------------------------------------------------------------------------------

def _parse_list(text: str, kind, what: str) -> list:
  try:
    return [kind(t.strip()) for t in str(text).split(",") if t.strip()]
  except ValueError:
    raise ValueError(f"{what} must be a comma-separated list of {kind.__name__}s, got "
                     f"{text!r}") from None


def load_images(config) -> list[tuple[str, np.ndarray]]:
  """[(name, uint8 [H, W, C])] as the config selects them (``collage.codec.rd.load_images``)."""
  if config.channels not in (1, 3):
    raise ValueError(f"config.channels must be 1 or 3, got {config.channels}")
  source = f"embedded:{config.embedded_split}"
  if config.images:
    source = os.path.abspath(config.images)
    if not os.path.isdir(source):
      raise FileNotFoundError(f"config.images={config.images!r}: no such folder ({source})")
  return rd.load_images(source, config.channels, config.max_images, config.crop)


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


# -- artifacts ----------------------------------------------------------------------------------

def write_csv(path: str, rows: list[dict], fields) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
      writer.writerow({k: fmt(r[k], 6) for k in fields})


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
          writer.writerow({k: fmt(row[k], 6) for k in FIELDS})
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
    plot_averages(averages, folder, f"average of {len(images)} images: {source}")
  print(text, flush=True)
  print(f"codec_benchmark: artifacts in {folder}", flush=True)
  return {"averages": averages, "rows": rows}
