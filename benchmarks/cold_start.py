r"""How long a person waits for ``collage-codec compress``: a fresh process with an empty
compilation cache, a fresh process with a warm one, the cache off, and a warm process.

    python -m benchmarks.cold_start [--image PATH] [--repeats 3] [--quality 30]

Each command time is the median wall time of ``--repeats`` fresh processes
(``collage-codec compress --codec neural``); "cold" gives each process its own empty cache
directory, "warm" reuses one that a first run filled, "off" sets ``COLLAGE_CACHE_DIR=off``.
"startup" is ``collage-codec codecs`` (imports only: the floor of any command). "in-process" is
the encode time of a second ``compress`` call in one Python process (nothing compiles). The
default image is scikit-image's astronaut (512x512), which every install has.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import skimage.data
from PIL import Image

from collage.codec.base import get_codec
from collage import images


def _wall(cmd: list[str], env: dict[str, str]) -> float:
  start = time.perf_counter()
  done = subprocess.run(cmd, env=env, capture_output=True, text=True)
  if done.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-1000:]}")
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--image", default="", help="a PNG (default: the embedded astronaut)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--quality", type=int, default=30)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    image = args.image
    if not image:
      image = os.path.join(tmp, "astronaut.png")
      Image.fromarray(skimage.data.astronaut()).save(image)
    width, height = Image.open(image).size
    out = os.path.join(tmp, "out.clg")
    tool = [sys.executable, "-m", "collage.codec.cli"]
    compress = [*tool, "compress", "--codec", "neural", "-q", str(args.quality), "-f", image, out]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    rows = {}
    rows["startup (collage-codec codecs)"] = [_wall([*tool, "codecs"], env)
                                              for _ in range(args.repeats)]
    rows["compress, empty cache (cold)"] = [
        _wall(compress, {**env, "COLLAGE_CACHE_DIR": os.path.join(tmp, f"cold{i}")})
        for i in range(args.repeats)]
    warm = {**env, "COLLAGE_CACHE_DIR": os.path.join(tmp, "warm")}
    _wall(compress, warm)  # fills the cache
    rows["compress, warm cache"] = [_wall(compress, warm) for _ in range(args.repeats)]
    rows["compress, cache off"] = [_wall(compress, {**env, "COLLAGE_CACHE_DIR": "off"})
                                   for _ in range(args.repeats)]
    pixels = images.load_image(image)
    codec = get_codec("neural")
    codec.compress(pixels, args.quality)
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      codec.compress(pixels, args.quality)
      times.append(time.perf_counter() - start)
    rows["compress in a warm process (no compile, no imports)"] = times
  print(f"image {width}x{height}, neural quality {args.quality}, median of {args.repeats}\n")
  print("| what | seconds (median) | all runs |")
  print("| --- | --- | --- |")
  for name, values in rows.items():
    print(f"| {name} | {statistics.median(values):.2f} | "
          f"{', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
  main()
