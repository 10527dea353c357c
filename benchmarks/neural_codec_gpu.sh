#!/usr/bin/env bash
# The GPU measurements of benchmarks/neural_codec.md (section "On a GPU"), as they were run on
# a lent H100 through the workplace's device tool.
#
# That machine's python3 has jax (CUDA), flax, optax, orbax, einops, numpy, Pillow; it cannot
# reach a package index, so the other runtime dependencies the codec and the benchmark import
# travel as wheels in .whl/ and the Kodak images in .devdata/kodak (both git-ignored):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#       --platform any -d .whl constriction==0.5.0 grain==0.2.18 array_record \
#       ml_collections==1.1.0 portpicker
#   mkdir -p .devdata && cp -r ../shared/data/kodak .devdata/
#
# Usage, from the repository root:  bash benchmarks/neural_codec_gpu.sh OUT_DIR PART...
#   check   versions, devices, and a bit-exactness check of GPU encode -> file -> GPU decode
#   speed   on kodim23, 5 timed round trips each: the variable-rate model at 64 and 512 tiles
#           per pass, the per-tile choice and PIFS at 512, then PIFS's speed-up at equal PSNR
#   rdN     rate-distortion over the 24 Kodak images, per-tile model choice with --refine N
#           (e.g. rd300), at the qualities in $RD_QUALITIES (default 55,65,75,85), and PIFS at
#           the qualities in $RD_PIFS (default none)
# (The session-10 runs used the retired benchmarks/neural_codec.py; neural_codec_log.md.)
# Each part writes its JSON to OUT_DIR and stops at its own time limit ($PART_TIMEOUT seconds).
# The exit status is that of the first part that failed (0 if none).
set -uo pipefail
out=${1:?usage: neural_codec_gpu.sh OUT_DIR PART...}
shift
mkdir -p "$out"
export PYTHONUNBUFFERED=1
wheels=${WHEELS:-.whl}  # WHEELS=none: the dependencies are installed already
if [ -d "$wheels" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$wheels"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
kodak=${KODAK:-.devdata/kodak}
limit=${PART_TIMEOUT:-300}
rd="timeout $limit python3 -m benchmarks.neural_codec_rd"

status=0
for part in "$@"; do
  echo "== $part ($(date +%T))"
  case $part in
    check)
      nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
          --format=csv
      python3 - "$kodak" <<'EOF'
import os, sys, time
import jax, flax, numpy as np
print("jax", jax.__version__, "flax", flax.__version__, jax.devices())
from collage.codec import neural
from collage.data.images import image_paths, load_image
from collage.metrics.rate import bpp
codec = neural.NeuralCollageCodec(refine=30, mix=True)
for p in image_paths(sys.argv[1])[:3]:
  img = load_image(p)
  h, w, c = img.shape
  t = time.perf_counter()
  code = codec.encode_code(img, 70)
  data = codec.write_code(code, h, w, c)
  enc = time.perf_counter() - t
  same = np.array_equal(codec.reconstruct(code, h, w, c), codec.decompress(data))
  print(f"{os.path.basename(p)}: {bpp(len(data), h, w):.4f} bpp, encode {enc:.2f} s, "
        f"file decode == encoder reconstruction: {same}")
  if not same:
    sys.exit("GPU decode is not bit-exact")
EOF
      ;;
    speed)
      one="--images $kodak/kodim23.png --repeats 5"
      for b in 64 512; do
        $rd $one --qualities 21,61 --batch $b --out "$out/speed_neural_b$b.json"
      done
      $rd $one --mix --qualities 50,70 --batch 512 --out "$out/speed_mix.json"
      $rd $one --codec pifs --qualities 30,45,60,70 --out "$out/speed_pifs.json"
      python3 -m benchmarks.neural_codec_speed speedup --reference pifs \
          --inputs "$out/speed_neural_b512.json,$out/speed_mix.json,$out/speed_pifs.json" \
          --out "$out/speedup.json"
      ;;
    rd*)
      $rd --images "$kodak" --mix --qualities "${RD_QUALITIES:-55,65,75,85}" \
          --refine "${part#rd}" --batch 512 --out "$out/mix24_r${part#rd}_gpu.json"
      if [ -n "${RD_PIFS:-}" ]; then
        $rd --images "$kodak" --codec pifs --qualities "$RD_PIFS" --out "$out/pifs24_gpu.json"
      fi
      ;;
    *) echo "unknown part $part (check, speed, rdN)"; exit 2 ;;
  esac
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "== $part failed (exit $rc)"
    [ $status -ne 0 ] || status=$rc
  fi
done
echo "== done ($(date +%T))"
exit $status
