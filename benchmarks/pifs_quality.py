"""Rate-distortion of the PIFS codec (rate from real file bytes) next to JPEG (Pillow).

  python -m benchmarks.pifs_quality [--gray_q 50 55 60 65] [--kodak 3]
      [--kodak_q 30 40 50 60 70] [--jpeg_q 10 20 30 50 70 90]

Grayscale 512x512 photographs shipped with the dependencies (skimage camera, moon; pywt
ascent, camera, aero): bpp / PSNR per quality and PSNR interpolated at 0.6 bpp, for PIFS and
for JPEG on the same image (the published fractal figures are on Lenna / Boat / Mandrill, which
no dependency ships; JPEG on the same picture is the yardstick here). Kodak (RGB,
/work/shared/data/kodak, the first --kodak images): average bpp / PSNR (RGB, 8-bit peak) per
quality, and the average of per-image PSNR interpolated (linearly in bpp) at 0.25/0.5/1 bpp
for PIFS and JPEG. Also: payload size with entropy coding vs plain bit packing.
"""

import argparse
import glob
import io
import os
import time

import numpy as np
import pywt.data
import skimage.data
from PIL import Image

from collage.codec.pifs import PIFSCodec
from collage.metrics.distortion import psnr
from collage.metrics.rate import bpp
from collage.metrics.rd import curve_at_rate


def gray_images():
  out = {"skimage camera": skimage.data.camera(), "skimage moon": skimage.data.moon()}
  for name in ("ascent", "camera", "aero"):
    x = getattr(pywt.data, name)()
    out[f"pywt {name}"] = np.clip(np.round(x), 0, 255).astype(np.uint8)
  return {k: v[..., None] for k, v in out.items()}


def jpeg(img, q):
  buf = io.BytesIO()
  Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, "JPEG", quality=q)
  data = buf.getvalue()
  rec = np.asarray(Image.open(io.BytesIO(data)))
  return bpp(len(data), img.shape[0], img.shape[1]), psnr(rec.reshape(img.shape), img, 255)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--gray_q", type=int, nargs="*", default=[50, 55, 60, 65])
  ap.add_argument("--kodak", type=int, default=3)
  ap.add_argument("--kodak_q", type=int, nargs="*", default=[30, 40, 50, 60, 70])
  ap.add_argument("--jpeg_q", type=int, nargs="*", default=[5, 10, 20, 30, 50, 70, 90])
  args = ap.parse_args()
  codec, raw = PIFSCodec(), PIFSCodec(entropy_coding=False)
  print(f"load average {os.getloadavg()}", flush=True)
  print("| image | quality | bpp | bpp (bit packing) | PSNR dB | encode s | decode s |")
  print("|---|---|---|---|---|---|---|")
  summary = {}
  for name, img in gray_images().items():
    pts = []
    for q in args.gray_q:
      t = time.perf_counter()
      data = codec.compress(img, q)
      te = time.perf_counter() - t
      t = time.perf_counter()
      rec = codec.decompress(data)
      td = time.perf_counter() - t
      rate = bpp(len(data), img.shape[0], img.shape[1])
      rate_raw = bpp(len(raw.serialize(codec.parse(data))), img.shape[0], img.shape[1])
      p = psnr(rec, img, 255)
      pts.append((rate, p))
      print(f"| {name} | {q} | {rate:.3f} | {rate_raw:.3f} | {p:.2f} | {te:.1f} | {td:.1f} |",
            flush=True)
    jp = [jpeg(img, q) for q in args.jpeg_q + [40, 60, 80]]
    summary[name] = (curve_at_rate(pts, 0.6), curve_at_rate(jp, 0.6))
  print("\nPSNR at 0.6 bpp (interpolated), PIFS / JPEG on the same image:")
  for k, (v, j) in summary.items():
    print(f"  {k}: {v:.2f} / {j:.2f} dB")

  files = sorted(glob.glob("/work/shared/data/kodak/*.png"))[:args.kodak]
  if not files:
    return
  print(f"\nKodak ({len(files)} images)\n| image | codec | quality | bpp | PSNR dB |")
  print("|---|---|---|---|---|")
  per = {"pifs": [], "jpeg": []}
  for f in files:
    img = np.asarray(Image.open(f).convert("RGB"))
    pts = []
    for q in args.kodak_q:
      data = codec.compress(img, q)
      rate = bpp(len(data), img.shape[0], img.shape[1])
      p = psnr(codec.decompress(data), img, 255)
      pts.append((rate, p))
      print(f"| {os.path.basename(f)} | pifs | {q} | {rate:.3f} | {p:.2f} |", flush=True)
    per["pifs"].append(pts)
    jp = [jpeg(img, q) for q in args.jpeg_q]
    for q, (b, p) in zip(args.jpeg_q, jp):
      print(f"| {os.path.basename(f)} | jpeg | {q} | {b:.3f} | {p:.2f} |", flush=True)
    per["jpeg"].append(jp)
  print("\nKodak average PSNR at target rates (per-image interpolation; nan = outside sweep):")
  for c, lst in per.items():
    vals = [np.mean([curve_at_rate(pts, r) for pts in lst]) for r in (0.25, 0.5, 1.0)]
    print(f"  {c}: 0.25 bpp {vals[0]:.2f} dB, 0.5 bpp {vals[1]:.2f} dB, 1.0 bpp {vals[2]:.2f} dB")


if __name__ == "__main__":
  main()
