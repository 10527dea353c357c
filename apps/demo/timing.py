"""How long the demo makes a person wait: the ``compress`` endpoint through ``gradio_client``
on one image (upload, encode, decode, PSNR and MS-SSIM, the decoded PNG, the download), and
the page's two steps behind the Compress button (the codec's result; then JPEG and WebP
searched to the same size), in a demo serving in this process.

    python -m apps.demo.timing ../shared/data/kodak/kodim23.png --codec neural --quality 50

The first call compiles the codec's programs for the image's size (``COLLAGE_CACHE_DIR=off``
for a cold compile; by default JAX's persistent cache may already hold them); the repeats are
the warm response times, given as median and max.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Sequence

import jax
from gradio_client import Client, handle_file

from apps.demo import app, inputs
from collage import compilation_cache


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m apps.demo.timing",
                              description="Response times of the demo's compress.")
  p.add_argument("image", help="an image file (e.g. a Kodak photograph, 768 x 512)")
  p.add_argument("--codec", default="neural", help="codec name (default neural)")
  p.add_argument("--quality", type=int, default=50, help="quality 1..100 (default 50)")
  p.add_argument("--repeat", type=int, default=10, help="warm calls to time (default 10)")
  args = p.parse_args(argv)

  compilation_cache.enable()
  image = inputs.read_upload(args.image)
  outputs = app.Outputs()
  demo = app.build_app(outputs=outputs)
  url = app.launch(demo, outputs=outputs)
  try:
    client = Client(url, verbose=False)
    handlers = app.CompressHandlers(outputs)

    def endpoint():
      return client.predict(handle_file(args.image), args.codec, args.quality,
                            api_name="/compress")[1]

    def page_steps():
      start = time.perf_counter()
      *_, state, _, _ = handlers.compress(args.image, args.codec, args.quality, None)
      shown = time.perf_counter() - start
      handlers.compare(state)
      return shown, time.perf_counter() - start

    start = time.perf_counter()
    stats = endpoint()
    first = time.perf_counter() - start
    calls, warm = [], stats
    for _ in range(args.repeat):
      start = time.perf_counter()
      warm = endpoint()
      calls.append(time.perf_counter() - start)
    page = [page_steps() for _ in range(max(1, args.repeat // 2))]
  finally:
    demo.close()
  h, w, c = image.shape
  print(f"{os.path.basename(args.image)}: {w}x{h}x{c}, {args.codec} quality {args.quality}: "
        f"{stats['bytes']} bytes, {stats['bpp']:.3f} bpp, {stats['psnr']:.2f} dB "
        f"({jax.devices()[0].platform}, {os.cpu_count()} CPUs)")
  print(f"compress endpoint, first call (compiles, unless cached): {first:.2f} s")
  print(f"compress endpoint, warm: median {statistics.median(calls):.3f} s, max "
        f"{max(calls):.3f} s over {len(calls)} calls (the last one's encode "
        f"{warm['encode_s']:.3f} s, decode {warm['decode_s']:.3f} s)")
  print(f"page, the codec's result shown: median {statistics.median(s for s, _ in page):.3f} s; "
        f"with JPEG and WebP at the same size: median "
        f"{statistics.median(t for _, t in page):.3f} s over {len(page)} presses")
  return 0


if __name__ == "__main__":
  sys.exit(main())
