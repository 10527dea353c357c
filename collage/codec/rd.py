"""Rate–distortion of a codec over images: one ``measure`` for every RD row, and its tables.

A *per-image row* (:func:`measure`, named by the caller) holds FIELDS: the file's real bytes,
bpp from them, PSNR (RGB or gray, over all channels, peak 255), MS-SSIM and the encode /
decode seconds. A *curve row* (:func:`curve_rows`) is the mean of each AVERAGED field over the
images of one (codec, quality), with every image's values kept under ``per_image``: what the
benchmark tools pass to each other as JSON and read back with ``collage.codec.rd_compare``.
Curves are read as CompressAI reads them: the per-quality means, linear in bpp
(``collage.metrics.rd.value_at_rate``), never extrapolated.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from collage.codec.base import Codec, CodecError, round_trip
from collage import images as image_io
from collage.data import augment, embedded
from collage.metrics.distortion import psnr
from collage.metrics.msssim import min_side, ms_ssim
from collage.metrics.rate import bpp
from collage.metrics.rd import value_at_rate

FIELDS = ("codec", "quality", "image", "height", "width", "channels", "bytes", "bpp", "psnr",
          "ms_ssim", "encode_s", "decode_s")
AVERAGED = ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s")
# The per-image values a curve row keeps under "per_image" (lists in image order).
PER_IMAGE = ("image", "bytes", "bpp", "psnr", "ms_ssim", "encode_s", "decode_s")


# -- images ------------------------------------------------------------------------------------

def load_images(source: str, channels: int = 3, max_images: int = 0,
                crop: int = 0) -> list[tuple[str, np.ndarray]]:
  """The images of ``source`` -> [(name, uint8 [H, W, channels])].

  source: a folder (PNG / JPEG, recursive; names are paths relative to it without the
  extension), one image file (its name without the extension), or ``embedded:SPLIT``
  (the photographs the packages ship; ``embedded`` alone is every one of them).
  ``max_images`` keeps the first N (0: all); ``crop`` centre-crops each to crop x crop (0:
  full size).
  """
  if source == "embedded" or source.startswith("embedded:"):
    out = embedded.embedded_images(channels, source.partition(":")[2] or "all")
  elif os.path.isfile(source):
    name = os.path.splitext(os.path.basename(source))[0]
    out = [(name, image_io.to_channels(image_io.load_image(source), channels))]
  elif os.path.isdir(source):
    folder = os.path.abspath(source)
    out = [(os.path.splitext(os.path.relpath(p, folder))[0],
            image_io.to_channels(image_io.load_image(p), channels))
           for p in image_io.image_paths(folder)[:max_images or None]]
  else:
    raise FileNotFoundError(f"images {source!r}: no such folder or file, and not "
                            "'embedded[:SPLIT]'")
  return [(name, _crop(np.asarray(img), crop, name)) for name, img in out[:max_images or None]]


def _crop(image: np.ndarray, size: int, name: str) -> np.ndarray:
  if size <= 0:
    return image
  h, w = image.shape[:2]
  if h < size or w < size:
    raise ValueError(f"crop={size} is larger than the image {name!r} of {h}x{w}")
  return np.ascontiguousarray(augment.center_crop(image, (size, size)))


# -- measurement -------------------------------------------------------------------------------

def measure(codec: Codec, quality: int, image: np.ndarray, with_ms_ssim: bool = True,
            repeats: int = 1) -> dict[str, Any]:
  """Encode + decode ``image`` (uint8 [H, W, C]) -> the metrics of FIELDS (without names).

  ``repeats`` round trips (a first one at a new image size may compile): the times are the
  least of them; a codec that writes other bytes on a repeat is an error.
  """
  h, w, c = image.shape
  data, decoded, encode_s, decode_s = round_trip(codec, image, quality)
  for _ in range(repeats - 1):
    again, _, enc, dec = round_trip(codec, image, quality)
    if again != data:
      raise CodecError(f"codec {codec.name!r} wrote other bytes on a repeat at quality "
                       f"{quality}")
    encode_s, decode_s = min(encode_s, enc), min(decode_s, dec)
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


def measure_images(codec: Codec, name: str, quality: int, images: list[tuple[str, np.ndarray]],
                   with_ms_ssim: bool = True, repeats: int = 1) -> list[dict[str, Any]]:
  """One per-image row (FIELDS) per image, the codec labelled ``name``."""
  return [{"codec": name, "quality": quality, "image": image_name,
           **measure(codec, quality, image, with_ms_ssim, repeats)}
          for image_name, image in images]


def average_rows(rows: list[dict]) -> list[dict]:
  """Mean of AVERAGED per (codec, quality), in first-seen order."""
  groups = _groups(rows)
  out = []
  for (name, quality), members in groups.items():
    avg = {"codec": name, "quality": quality, "images": len(members)}
    for key in AVERAGED:
      avg[key] = float(np.mean([m[key] for m in members]))
    out.append(avg)
  return out


def curve_rows(rows: list[dict]) -> list[dict]:
  """Per-image rows -> one curve row per (codec, quality): :func:`average_rows`, plus each
  image's PER_IMAGE values under "per_image"; a field never measured (MS-SSIM off) is left
  out rather than written as NaN."""
  out = []
  for avg, members in zip(average_rows(rows), _groups(rows).values()):
    per_image = {k: [m[k] for m in members] for k in PER_IMAGE}
    row = {**avg, "per_image": per_image}
    if all(math.isnan(v) for v in per_image["ms_ssim"]):
      del row["ms_ssim"], per_image["ms_ssim"]
    out.append(row)
  return out


def _groups(rows: list[dict]) -> dict[tuple[str, int], list[dict]]:
  groups: dict[tuple[str, int], list[dict]] = {}
  for r in rows:
    groups.setdefault((r["codec"], r["quality"]), []).append(r)
  return groups


# -- tables ------------------------------------------------------------------------------------

def fmt(v: Any, digits: int = 4) -> str:
  """A table cell: floats to ``digits`` places, NaN as "n/a"."""
  if isinstance(v, float):
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"
  return str(v)


def summary_markdown(averages: list[dict], targets: list[float],
                     n_images: int, source: str) -> str:
  """The averages as markdown: PSNR and MS-SSIM at the ``targets`` rates, then every row."""
  lines = [f"# Codec benchmark: {n_images} images ({source})", ""]
  codecs = list(dict.fromkeys(a["codec"] for a in averages))
  header = " | ".join(f"{t:g} bpp" for t in targets)
  lines += ["## PSNR (dB) at target rates (curve of per-quality averages, linear in bpp)", "",
            f"| codec | {header} |", "| --- |" + " --- |" * len(targets)]
  for name in codecs:
    vals = " | ".join(fmt(value_at_rate(averages, name, t), 2) for t in targets)
    lines.append(f"| {name} | {vals} |")
  lines += ["", "## MS-SSIM at target rates", "", f"| codec | {header} |",
            "| --- |" + " --- |" * len(targets)]
  for name in codecs:
    vals = " | ".join(fmt(value_at_rate(averages, name, t, "ms_ssim"), 4) for t in targets)
    lines.append(f"| {name} | {vals} |")
  lines += ["", "## Averages per quality setting", "",
            "| codec | quality | bpp | PSNR (dB) | MS-SSIM | encode (s) | decode (s) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for a in averages:
    lines.append(f"| {a['codec']} | {a['quality']} | {a['bpp']:.4f} | {fmt(a['psnr'], 2)} | "
                 f"{fmt(a['ms_ssim'], 4)} | {a['encode_s']:.3f} | {a['decode_s']:.3f} |")
  return "\n".join(lines) + "\n"
