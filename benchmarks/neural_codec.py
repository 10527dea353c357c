r"""Measurements of the neural collage codec (results in benchmarks/neural_codec.md).

    python benchmarks/neural_codec.py rd --images ../shared/data/kodak \
        [--models DIR1,DIR2,...] [--baselines DIR,...] [--pifs 20,50,80] [--jpeg 5,10,20,40]
        [--webp 5,20,50]
        [--refine STEPS] [--mix 30,45,60 [--skip_single]] [--qualities 1,50,100]
        [--downscale 1,2]
    python benchmarks/neural_codec.py speed --image ../shared/data/kodak/kodim23.png
    python benchmarks/neural_codec.py sr --images ../shared/data/kodak [--models DIR]
    python benchmarks/neural_codec.py sweep --image ../shared/data/kodak/kodim23.png
    python benchmarks/neural_codec.py diagnose --image ../shared/data/kodak/kodim05.png
    python benchmarks/neural_codec.py compare --inputs rd.json[,more.json] [--reference pifs]
    python benchmarks/neural_codec.py speedup --inputs sweep.json[,more.json] [--reference pifs]
    python benchmarks/neural_codec.py coverage --inputs rd.json[,more.json] [--reference pifs]
    python benchmarks/neural_codec.py coding --against OLD_neural_coding.py
    python benchmarks/neural_codec.py plot --inputs rd.json[,more.json] --out rd.png

``rd``: average bpp (from the real file bytes) and RGB PSNR over the images, one row per
model / quality, for the neural models (``--models``; default: the shipped ones; a
variable-rate model at each of ``--qualities``), the
per-tile model choice at the qualities ``--mix``, L2 + bit packing baselines
(``--baselines``), PIFS, JPEG and WebP (via the codec registry). ``--out`` JSON rows also hold
the per-image figures. ``--downscale 1,2``: a curve of the neural rows per D, coding at 1/D
resolution.
``speed``: encode time of the neural codec and the PIFS encoder on the same image, and the
neural encoder's batch throughput (megapixels/s, tiles per forward pass = ``--batch``,
default neural_models.ENCODE_BATCH).
``sr``: PSNR of ``decode(encode(box-downsampled x), scale=2)`` against ``x``, next to bicubic
upsampling of the same downsampled image.
``sweep``: encode / decode seconds, bpp and PSNR of the neural (one model; per-tile choice
with ``--mix_q``) and PIFS codecs over their quality settings on one image, in one process
(speed at equal rate or equal PSNR); ``--downscale_q`` adds rows of the neural codec coding
at 1/D resolution for every D of ``--downscale`` (e.g. ``1.5,2``).
``speedup``: every row's encode time against the reference codec's (default PIFS) at the
same PSNR, interpolated linearly in PSNR between the reference's rows and never extrapolated,
from ``sweep`` or ``rd`` JSON files (rows of one run: the times are only comparable there).
``coverage``: the worst speed-up over the reference across its PSNR span, taking at each PSNR
the fastest other row (any codec label, or those starting with ``--codecs``) that reaches at
least that PSNR; on the averages, and per image for ``rd`` files (which hold per-image times).
``compare``: PSNR of every curve in ``rd`` JSON files at the target rates, and its gap to a
reference codec (default PIFS) at every measured point of either curve, both interpolated
linearly in bpp and never extrapolated: the minimum gap is the "above it at every rate" check.
``coding``: host range-coding time of the default model's codes of a few Kodak images at a
few qualities, this checkout's ``collage.codec.neural_coding.encode_context`` against the
same function of another version's file (``--against``, e.g. ``git show
REV:collage/codec/neural_coding.py > /tmp/old_coding.py``), alternating, min of
``--repeats``; the two must write the same bytes.
``diagnose``: where a model's distortion comes from: PSNR per YCbCr channel, RGB PSNR with
the true luma or the true chroma put back, and test-time refinement of the code (Adam on the
model's own rate-distortion loss, or on distortion alone with ``--rate_weight 0``: the best
the decoder can do with these collage parameters, the encoder taken out of the picture).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from collage.codec import base  # noqa: E402
from collage.codec import container  # noqa: E402
from collage.codec import neural  # noqa: E402
from collage.codec import neural_models  # noqa: E402
from collage.data.images import image_paths, load_image  # noqa: E402
from collage.metrics.distortion import psnr  # noqa: E402
from collage.metrics.rate import bpp  # noqa: E402
from collage.metrics.rd import rd_cost, value_at_rate  # noqa: E402


def _images(folder: str, max_images: int) -> list[tuple[str, np.ndarray]]:
  if folder == "embedded":  # the photographs that scikit-image and PyWavelets ship
    from collage.data.embedded import embedded_images  # pylint: disable=import-outside-toplevel
    images = [(n, im) for n, im in embedded_images(3) if min(im.shape[:2]) >= 64]
    return images[:max_images] if max_images else images
  paths = image_paths(folder)
  if max_images:
    paths = paths[:max_images]
  return [(os.path.basename(p), load_image(p)) for p in paths]


def _rd_row(codec, images, quality, repeats: int = 1) -> dict:
  """Mean bpp / PSNR / seconds over the images, and each image's; an image's encode time is
  the least of ``repeats`` passes (a first pass at a new image size may compile)."""
  bpps, psnrs, encs, dec = [], [], [], 0.0
  for _, img in images:
    times = []
    for _ in range(max(1, repeats)):
      t = time.perf_counter()
      data = codec.compress(img, quality)
      times.append(time.perf_counter() - t)
    encs.append(min(times))
    t = time.perf_counter()
    out = codec.decompress(data)
    dec += time.perf_counter() - t
    bpps.append(bpp(len(data), img.shape[0], img.shape[1]))
    psnrs.append(psnr(out, img, peak=255.0))
  n = len(images)
  return {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs)),
          "encode_s": float(np.sum(encs)) / n, "decode_s": dec / n,
          "per_image": {"image": [name for name, _ in images],
                        "bpp": [float(v) for v in bpps], "psnr": [float(v) for v in psnrs],
                        "encode_s": [float(v) for v in encs]}}


def _warm(codec, images, quality):
  img = images[0][1]
  codec.decompress(codec.compress(img, quality))


def cmd_rd(args) -> list[dict]:
  images = _images(args.images, args.max_images)
  rows = []

  def emit(row):
    rows.append(row)
    print(f"| {row['codec']} | {row['setting']} | {row['bpp']:.4f} | {row['psnr']:.2f} | "
          f"{row['encode_s']:.3f} | {row['decode_s']:.3f} |", flush=True)

  print(f"{len(images)} images from {args.images}")
  print("| codec | setting | bpp | PSNR (dB) | encode (s) | decode (s) |")
  print("| --- | --- | ---: | ---: | ---: | ---: |")
  suffix = f", refine {args.refine}" if args.refine else ""
  scales = _downscales(args.downscale)
  down = lambda d: f", downscale {_number(d)}" if d > 1 else ""  # noqa: E731
  stem = args.label or "neural"
  groups = [] if args.skip_single else [
      (stem + suffix + down(d), m, args.refine, d)
      for d in scales for m in (args.models.split(",") if args.models else [None])]
  groups += [("neural-l2-bitpack", m, 0, 1) for m in args.baselines.split(",") if m]
  for d in scales if args.mix else ():
    path = args.models or None
    codec = neural.NeuralCollageCodec(model=path, refine=args.refine, mix=True, downscale=d)
    qs = [int(v) for v in args.mix.split(",")]
    _warm(codec, images, qs[0])
    for q in qs:
      emit({"codec": "neural, per-tile model" + suffix + down(d),
            "setting": f"quality {q} (lam={codec.mix_lam(q):.5f})",
            **_rd_row(codec, images, q, args.repeats)})
  for label, path, refine, d in groups:
    codec = neural.NeuralCollageCodec(model=path, refine=refine, downscale=d)
    n = len(codec.models)
    if codec.models[0].levels:  # one variable-rate model: a row per quality
      m = codec.models[0]
      qs = [int(v) for v in args.qualities.split(",")]
      _warm(codec, images, qs[0])
      for q in qs:
        emit({"codec": label if args.label else label + ", variable rate",
              "setting": f"{os.path.relpath(m.directory)} quality {q} "
                         f"(lam={m.level_lam(q):.5f})",
              **_rd_row(codec, images, q, args.repeats)})
      continue
    for i, m in enumerate(codec.models):
      q = 1 + (i * 100) // n  # the first quality of model i's band
      _warm(codec, images, q)
      row = _rd_row(codec, images, q, args.repeats)
      emit({"codec": label, "setting": f"{os.path.relpath(m.directory)} (lam={m.lam:g})",
            **row})
  for name, qualities in (("pifs", args.pifs), ("jpeg", args.jpeg), ("webp", args.webp)):
    if not qualities:
      continue
    try:
      codec = base.get_codec(name)
    except base.CodecError as e:
      print(f"skipping {name}: {e}")
      continue
    qs = [int(v) for v in qualities.split(",")]
    _warm(codec, images, qs[0])
    for q in qs:
      emit({"codec": name, "setting": f"quality {q}", **_rd_row(codec, images, q, args.repeats)})
  return rows


def cmd_speed(args) -> dict:
  img = load_image(args.image)
  h, w = img.shape[:2]
  res = {"image": args.image, "size": f"{w}x{h}", "device": _device(),
         "encode_batch": neural_models.ENCODE_BATCH}
  codec = neural.NeuralCollageCodec(model=args.model)
  q = args.quality
  codec.compress(img, q)  # compile
  times = []
  for _ in range(args.repeats):
    t = time.perf_counter()
    codec.compress(img, q)
    times.append(time.perf_counter() - t)
  res["neural_encode_s"] = float(np.median(times))
  # Of which the entropy coding (on the host): the code -> file step alone.
  code, codes = codec.encode_code(img, q), []
  for _ in range(args.repeats):
    t = time.perf_counter()
    codec.write_code(code, h, w, img.shape[2])
    codes.append(time.perf_counter() - t)
  res["neural_entropy_coding_s"] = float(np.median(codes))
  # Batch throughput of the encoder forward pass alone (tiles already cut).
  m = codec.model_for_quality(q)
  tiles = np.random.default_rng(0).random(
      (neural_models.ENCODE_BATCH * 8, m.cfg.tile, m.cfg.tile, 3), np.float32)
  mq = q if m.levels else None  # a variable-rate model's quality
  m.analyse(tiles[:neural_models.ENCODE_BATCH], quality=mq)
  dts = []
  for _ in range(args.repeats):
    t = time.perf_counter()
    m.analyse(tiles, quality=mq)
    dts.append(time.perf_counter() - t)
  dt = float(np.median(dts))
  res["neural_encoder_mpix_per_s"] = float(tiles.shape[0] * m.cfg.tile ** 2 / dt / 1e6)
  res["neural_encode_mpix_per_s"] = float(h * w / res["neural_encode_s"] / 1e6)
  t = time.perf_counter()
  codec.decompress(codec.compress(img, q))
  res["neural_roundtrip_s"] = time.perf_counter() - t
  try:
    pifs = base.get_codec("pifs")
    pifs.compress(img, args.pifs_quality)  # compile
    t = time.perf_counter()
    pifs.compress(img, args.pifs_quality)
    res["pifs_encode_s"] = time.perf_counter() - t
    res["speedup"] = res["pifs_encode_s"] / res["neural_encode_s"]
  except base.CodecError as e:
    res["pifs"] = f"unavailable: {e}"
  print(json.dumps(res, indent=1))
  return res


def _device() -> str:
  import jax  # pylint: disable=import-outside-toplevel
  d = jax.devices()[0]
  return f"{d.platform}: {getattr(d, 'device_kind', '')} x{jax.device_count()}"


def _box_down(img: np.ndarray) -> np.ndarray:
  h, w, c = img.shape
  x = img[:h - h % 2, :w - w % 2].astype(np.float64)
  x = x.reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))
  return np.round(x).astype(np.uint8)


def cmd_sr(args) -> list[dict]:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  images = _images(args.images, args.max_images)
  codec = neural.NeuralCollageCodec(model=args.models.split(",")[0] if args.models else None)
  rows = []
  for q in [int(v) for v in args.qualities.split(",")]:
    p_sr, p_bic, p_near, p_low = [], [], [], []
    for _, img in images:
      x = img[:img.shape[0] - img.shape[0] % 2, :img.shape[1] - img.shape[1] % 2]
      small = _box_down(x)
      data = codec.compress(small, q)
      up = codec.decompress(data, scale=2)
      p_sr.append(psnr(up, x, 255.0))
      p_low.append(psnr(codec.decompress(data), small, 255.0))
      bic = np.asarray(Image.fromarray(small).resize((x.shape[1], x.shape[0]), Image.BICUBIC))
      p_bic.append(psnr(bic, x, 255.0))
      dec_bic = np.asarray(Image.fromarray(codec.decompress(data)).resize(
          (x.shape[1], x.shape[0]), Image.BICUBIC))
      p_near.append(psnr(dec_bic, x, 255.0))
    row = {"quality": q, "model": os.path.relpath(codec.model_for_quality(q).directory),
           "collage_scale2_psnr": float(np.mean(p_sr)),
           "bicubic_of_uncompressed_psnr": float(np.mean(p_bic)),
           "bicubic_of_decoded_psnr": float(np.mean(p_near)),
           "scale1_decode_vs_downsampled_psnr": float(np.mean(p_low))}
    print(json.dumps(row), flush=True)
    rows.append(row)
  return rows


def _downscales(text: str) -> list:
  """'1,1.5,2' -> the downscale factors (Fractions; neural.check_downscale's errors)."""
  return [neural.check_downscale(v) for v in text.split(",")]


def _number(d) -> str:
  """A downscale factor as a label: 2, 1.5, 1.25."""
  return str(int(d)) if d == int(d) else str(float(d))


def cmd_sweep(args) -> list[dict]:
  img = load_image(args.image)
  h, w = img.shape[:2]
  print(f"load average {os.getloadavg()}; {_device()}; "
        f"encode batch {neural_models.ENCODE_BATCH}", flush=True)
  rows = []
  model = {"model": args.model} if args.model else {}
  runs = (("neural", model, args.neural_q), ("neural-mix", {"mix": True}, args.mix_q),
          *((f"neural-downscale{_number(d)}", {**model, "downscale": d}, args.downscale_q)
            for d in _downscales(args.downscale)),
          ("pifs", {}, args.pifs_q))
  for name, kwargs, qualities in runs:
    if not qualities:
      continue
    codec = base.get_codec(name.split("-")[0], **kwargs)
    for q in [int(v) for v in qualities.split(",")]:
      data = codec.compress(img, q)  # compile
      times = []
      for _ in range(args.repeats):
        t = time.perf_counter()
        data = codec.compress(img, q)
        times.append(time.perf_counter() - t)
      t = time.perf_counter()
      out = codec.decompress(data)
      row = {"codec": name, "quality": q, "bpp": bpp(len(data), h, w),
             "psnr": psnr(out, img, 255.0), "encode_s": float(np.min(times)),
             "encode_median_s": float(np.median(times)),
             "decode_s": time.perf_counter() - t}
      print(json.dumps(row), flush=True)
      rows.append(row)
  print(f"load average {os.getloadavg()}", flush=True)
  return rows


def cmd_diagnose(args) -> list[dict]:
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from collage.nn import entropy_model as em  # pylint: disable=import-outside-toplevel
  from collage.ops import color  # pylint: disable=import-outside-toplevel
  img = load_image(args.image)
  h, w = img.shape[:2]
  codec = neural.NeuralCollageCodec(model=args.model)
  ycc = lambda a: np.asarray(color.rgb_to_ycbcr(jnp.asarray(a / 255.0, jnp.float32)))
  to_rgb = lambda a: np.clip(np.round(np.asarray(color.ycbcr_to_rgb(jnp.asarray(a))) * 255),
                             0, 255)
  rows = []
  for q in [int(v) for v in args.qualities.split(",")]:
    m = codec.model_for_quality(q)
    mq = q if m.levels else None  # a variable-rate model's quality
    data = codec.compress(img, q)
    out = codec.decompress(data)
    a, b = ycc(img), ycc(out)
    true_y, true_c = b.copy(), a.copy()
    true_y[..., 0] = a[..., 0]
    true_c[..., 0] = b[..., 0]
    row = {"quality": q, "model": os.path.relpath(m.directory), "bpp": bpp(len(data), h, w),
           "psnr": psnr(out, img, 255.0),
           "psnr_ycbcr": [psnr(b[..., i], a[..., i], 1.0) for i in range(3)],
           "psnr_with_true_luma": psnr(to_rgb(true_y), img, 255.0),
           "psnr_with_true_chroma": psnr(to_rgb(true_c), img, 255.0)}
    # Test-time refinement of the continuous code of every tile (decoder unchanged).
    mdl, t = m.model, m.cfg.tile
    tiles = jnp.asarray(neural.image_tiles(img, t))
    lo, hi = mdl.clip_range()
    lv = None if mq is None else jnp.full(tiles.shape[:1], m.level(mq), jnp.float32)
    lam = m.lam if mq is None else m.level_lam(mq)

    def loss(y, key):
      yc = jnp.clip(y, lo, hi)
      q = em.round_ste(yc)
      mse = jnp.mean((mdl.synthesise(q, 3, level=lv) - tiles) ** 2)
      bits = mdl.bits(em.uniform_noise(key, yc), lv, jax.lax.stop_gradient(q))
      rate = jnp.sum(bits) / (tiles.shape[0] * t * t)
      return rd_cost(args.rate_weight * rate, mse, lam)

    opt = optax.adam(args.lr)

    @jax.jit
    def step(y, state, key):
      g = jax.grad(loss)(y, key)
      u, state = opt.update(g, state)
      return optax.apply_updates(y, u), state

    y = mdl.analyse(tiles, lv)
    state, key, t0 = opt.init(y), jax.random.PRNGKey(0), time.perf_counter()
    for _ in range(args.steps):
      key, k = jax.random.split(key)
      y, state = step(y, state, k)
    qv = np.asarray(mdl.quantize(y)).astype(np.int64)
    payload = neural.encode_symbols(m, qv, 3, mq)
    # Same container around the refined payload: the file's bytes minus its own payload.
    overhead = len(data) - len(container.unpack(data)[2])
    row.update({"refine_steps": args.steps, "refine_rate_weight": args.rate_weight,
                "refined_bpp": bpp(len(payload) + overhead, h, w),
                "refined_psnr": psnr(codec.reconstruct(neural.TileCode.single(m, qv, mq), h, w,
                                                       3), img, 255.0),
                "refine_s": time.perf_counter() - t0})
    print(json.dumps(row), flush=True)
    rows.append(row)
  return rows


def _rows(paths: str) -> list[dict]:
  """The rows of the ``rd`` JSON files (comma-separated paths), in order.

  Rows of one codec label from several files form one curve, a row repeated (same setting,
  same bpp and PSNR to 1e-6: a deterministic reference run again) once. If two files
  disagree at a shared setting (the same encoder with other models, say), each file's rows of
  that label become their own curve, ``label [file]``, the file named by its stem (or its
  path, when two files share a stem). Runs with other models at disjoint settings are not
  told apart: give such files distinct settings or compare them separately."""
  files = paths.split(",")
  stems = [os.path.splitext(os.path.basename(p))[0] for p in files]
  if len(set(stems)) < len(stems):
    stems = [os.path.splitext(p)[0] for p in files]
  per_file = []
  for stem, path in zip(stems, files):
    with open(path) as f:
      per_file.append((stem, json.load(f)))
  seen: dict[tuple[str, str], tuple[float, float]] = {}
  split_labels = set()
  for _, rows in per_file:
    for r in rows:
      key, point = (r["codec"], r["setting"]), (r["bpp"], r["psnr"])
      if not np.allclose(seen.setdefault(key, point), point, rtol=0.0, atol=1e-6):
        split_labels.add(r["codec"])
  out, done = [], set()
  for stem, rows in per_file:
    for r in rows:
      label = f"{r['codec']} [{stem}]" if r["codec"] in split_labels else r["codec"]
      if (label, r["setting"]) not in done:
        done.add((label, r["setting"]))
        out.append({**r, "codec": label})
  return out


def cmd_compare(args) -> dict:
  """Every curve against the reference codec: PSNR at the target rates, and the gap at every
  measured point of either curve where both are defined (the "above at every rate" check).
  Curves are read like the codec benchmark's (``collage.metrics.rd.value_at_rate``: linear in
  bpp, NaN outside)."""
  rows = _rows(args.inputs)
  labels = list(dict.fromkeys(r["codec"] for r in rows))
  if args.reference not in labels:
    raise SystemExit(f"no codec {args.reference!r} in {args.inputs}; codecs: {sorted(labels)}")
  at = lambda label, rate: value_at_rate(rows, label, rate)
  targets = [float(v) for v in args.targets.split(",")]
  fmt = lambda v: "n/a" if np.isnan(v) else f"{v:.2f}"
  print("| codec | " + " | ".join(f"{t:g} bpp" for t in targets) +
        f" | min gap to {args.reference} (at bpp) | max gap |")
  print("| --- |" + " ---: |" * (len(targets) + 2))
  out = {}
  for label in labels:
    rates = sorted({r["bpp"] for r in rows if r["codec"] in (label, args.reference)})
    gaps = [(rate, at(label, rate) - at(args.reference, rate)) for rate in rates]
    gaps = [g for g in gaps if not np.isnan(g[1])]
    psnr_at = [at(label, t) for t in targets]
    out[label] = {"psnr_at": {t: None if np.isnan(v) else v for t, v in zip(targets, psnr_at)},
                  "gaps": gaps}
    worst = min(gaps, key=lambda g: g[1]) if gaps else None
    best = max(g[1] for g in gaps) if gaps else None
    print(f"| {label} | " + " | ".join(fmt(v) for v in psnr_at) + " | " +
          ("n/a" if worst is None else f"{worst[1]:+.2f} ({worst[0]:.3f})") + " | " +
          ("n/a" if best is None else f"{best:+.2f}") + " |")
  return out


def _load_rows(inputs: str) -> list[dict]:
  rows = []
  for path in inputs.split(","):
    with open(path) as f:
      rows += json.load(f)
  return rows


def _worst_speedup(ref: list[tuple[float, float]], rows: list[tuple[float, float, str]],
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


def cmd_coverage(args) -> list[dict]:
  """The speed-up over the reference at every PSNR of its span, taking at each PSNR the
  fastest other row that reaches it: the worst case, on the averages and per image."""
  rows = _load_rows(args.inputs)
  ref = [r for r in rows if r["codec"] == args.reference]
  cands = [r for r in rows if r["codec"] != args.reference
           and (not args.codecs or r["codec"].startswith(args.codecs))]
  if len(ref) < 2 or not cands:
    raise SystemExit(f"coverage needs two {args.reference!r} rows and others in {args.inputs}")
  name = lambda r: f"{r['codec']}, {r.get('setting', r.get('quality'))}"  # noqa: E731
  out = [{"image": "average",
          **_worst_speedup([(r["psnr"], r["encode_s"]) for r in ref],
                           [(r["psnr"], r["encode_s"], name(r)) for r in cands])}]
  if all("encode_s" in r.get("per_image", {}) for r in ref + cands):
    for i in range(len(ref[0]["per_image"]["psnr"])):
      at = lambda r, k, i=i: r["per_image"][k][i]  # noqa: E731
      names = ref[0]["per_image"].get("image")
      out.append({"image": names[i] if names else i, **_worst_speedup(
          [(at(r, "psnr"), at(r, "encode_s")) for r in ref],
          [(at(r, "psnr"), at(r, "encode_s"), name(r)) for r in cands])})
  print(f"| image | worst speed-up over {args.reference}'s PSNR span | at PSNR | by |")
  print("| --- | ---: | ---: | --- |")
  for o in out:
    print(f"| {o['image']} | {o['speedup']:.1f}x | {o['psnr']:.2f} | {o['by']} |")
  return out


def cmd_speedup(args) -> list[dict]:
  rows = _load_rows(args.inputs)
  ref = sorted((r for r in rows if r["codec"] == args.reference), key=lambda r: r["psnr"])
  if len(ref) < 2:
    raise SystemExit(f"speedup needs at least two {args.reference!r} rows in {args.inputs}")
  ref_psnr = np.array([r["psnr"] for r in ref])
  out = []
  print(f"| codec | setting | bpp | PSNR | encode s | {args.reference} s at that PSNR | "
        f"{args.reference} bpp there | speed-up |")
  print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
  for r in rows:
    if r["codec"] == args.reference:
      continue
    setting = r.get("setting", f"quality {r.get('quality')}")
    row = {"codec": r["codec"], "setting": setting, "bpp": r["bpp"], "psnr": r["psnr"],
           "encode_s": r["encode_s"]}
    if ref_psnr[0] <= r["psnr"] <= ref_psnr[-1]:
      t = float(np.interp(r["psnr"], ref_psnr, [x["encode_s"] for x in ref]))
      b = float(np.interp(r["psnr"], ref_psnr, [x["bpp"] for x in ref]))
      row.update(reference_encode_s=t, reference_bpp=b, speedup=t / r["encode_s"])
      print(f"| {r['codec']} | {setting} | {r['bpp']:.3f} | {r['psnr']:.2f} | "
            f"{r['encode_s']:.3f} | {t:.3f} | {b:.3f} | {t / r['encode_s']:.1f}x |")
    else:
      print(f"| {r['codec']} | {setting} | {r['bpp']:.3f} | {r['psnr']:.2f} | "
            f"{r['encode_s']:.3f} | outside {args.reference}'s {ref_psnr[0]:.2f}-"
            f"{ref_psnr[-1]:.2f} dB | | |")
    out.append(row)
  return out


def cmd_coding(args) -> list[dict]:
  import importlib.util  # pylint: disable=import-outside-toplevel
  import constriction  # pylint: disable=import-outside-toplevel
  from collage.codec import neural_coding  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("other_neural_coding", args.against)
  other = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(other)
  codec = neural.NeuralCollageCodec(model=args.model)
  m = codec.model_for_quality(1)
  if not m.cfg.context_model:
    raise SystemExit(f"{m.name} is not a context model")
  rows = []
  for name in args.images.split(","):
    img = load_image(os.path.join(args.folder, name))
    tiles = neural.image_tiles(img, m.cfg.tile)
    for q in [int(v) for v in args.qualities.split(",")]:
      code, tables = m.analyse(tiles, quality=q), m.tables(q)

      def run(fn):
        coder = constriction.stream.queue.RangeEncoder()
        fn(coder, code, m.layout, tables)
        return coder.get_compressed().tobytes()

      if run(other.encode_context) != run(neural_coding.encode_context):
        raise SystemExit(f"{name} quality {q}: the two coders wrote different bytes")
      times = {"other": [], "this": []}
      for _ in range(args.repeats):
        for key, fn in (("other", other.encode_context), ("this", neural_coding.encode_context)):
          t = time.perf_counter()
          run(fn)
          times[key].append(time.perf_counter() - t)
      row = {"image": name, "quality": q, "bytes": len(run(neural_coding.encode_context)),
             "other_s": min(times["other"]), "this_s": min(times["this"])}
      print(json.dumps(row), flush=True)
      rows.append(row)
  return rows


def cmd_plot(args) -> None:
  """RD curves (bpp, PSNR) of every codec label in the ``rd`` JSON files, one PNG."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  curves: dict[str, set[tuple[float, float]]] = {}
  exclude = set(args.exclude)
  unknown = exclude - {row["codec"] for row in _rows(args.inputs)}
  if unknown:
    raise SystemExit(f"--exclude {sorted(unknown)}: no such codec label in {args.inputs}")
  for row in _rows(args.inputs):
    if row["codec"] not in exclude:
      curves.setdefault(row["codec"], set()).add((row["bpp"], row["psnr"]))
  fig, ax = plt.subplots(figsize=(6, 4.5))
  for label, pts in curves.items():
    pts = sorted(pts)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
  for label, pts in (("JPEG (published)", [(0.25, 24.55), (0.5, 28.94), (1.0, 32.59)]),
                     ("COIN (published)", [(0.25, 25.72), (0.5, 27.68), (1.0, 29.86)])):
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "x--", label=label)
  ax.set_xlabel("bpp (from file bytes)")
  ax.set_ylabel("PSNR (dB, RGB)")
  ax.set_title(args.title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(args.out, dpi=120)
  print(f"wrote {args.out}")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  rd = sub.add_parser("rd")
  rd.add_argument("--images", default="../shared/data/kodak",
                  help="a folder of images, or 'embedded' (the packages' own photographs)")
  rd.add_argument("--max_images", type=int, default=0)
  rd.add_argument("--models", default="")
  rd.add_argument("--baselines", default="")
  rd.add_argument("--pifs", default="")
  rd.add_argument("--jpeg", default="")
  rd.add_argument("--webp", default="")
  rd.add_argument("--refine", type=int, default=0,
                  help="test-time refinement steps for the neural models (0: forward pass only)")
  rd.add_argument("--mix", default="",
                  help="comma-separated qualities of the per-tile model choice (mix=True) "
                       "over the models (--models, one folder, or the shipped ones)")
  rd.add_argument("--qualities", default="1,15,30,45,60,75,90,100",
                  help="qualities of a variable-rate model given by --models")
  rd.add_argument("--skip_single", action="store_true",
                  help="no one-row-per-model rows (e.g. with --mix only)")
  rd.add_argument("--label", default="",
                  help="the neural rows' codec label (default: 'neural', '..., variable "
                       "rate'), so that curves of different models in several files differ")
  rd.add_argument("--repeats", type=int, default=1,
                  help="encode passes per image and setting; an image's time is the least")
  rd.add_argument("--downscale", default="1",
                  help="comma-separated D: the neural rows code at 1/D resolution, a curve "
                       "per D (1: every pixel; steps of 1/4 up to neural.MAX_DOWNSCALE)")
  sp = sub.add_parser("speed")
  sp.add_argument("--image", default="../shared/data/kodak/kodim23.png")
  sp.add_argument("--model", default=None)
  sp.add_argument("--quality", type=int, default=50)
  sp.add_argument("--pifs_quality", type=int, default=50)
  sp.add_argument("--repeats", type=int, default=3)
  sr = sub.add_parser("sr")
  sr.add_argument("--images", default="../shared/data/kodak")
  sr.add_argument("--max_images", type=int, default=0)
  sr.add_argument("--models", default="")
  sr.add_argument("--qualities", default="100")
  sw = sub.add_parser("sweep")
  sw.add_argument("--image", default="../shared/data/kodak/kodim23.png")
  sw.add_argument("--neural_q", default="1,26,51,76")
  sw.add_argument("--model", default=None, help="the neural rows' model (default: shipped)")
  sw.add_argument("--mix_q", default="", help="qualities of the per-tile model choice (mix)")
  sw.add_argument("--pifs_q", default="15,30,45,60,70,80")
  sw.add_argument("--downscale_q", default="",
                  help="qualities of the neural codec coding at 1/D resolution, for each D "
                       "of --downscale")
  sw.add_argument("--downscale", default="2",
                  help="comma-separated D for --downscale_q (e.g. 1.5,2)")
  sw.add_argument("--repeats", type=int, default=3)
  dg = sub.add_parser("diagnose")
  dg.add_argument("--image", default="../shared/data/kodak/kodim05.png")
  dg.add_argument("--model", default=None)
  dg.add_argument("--qualities", default="61,100")
  dg.add_argument("--steps", type=int, default=100)
  dg.add_argument("--lr", type=float, default=0.2)
  dg.add_argument("--rate_weight", type=float, default=1.0,
                  help="weight of the rate in the refinement loss (0: distortion only)")
  for q in (rd, sp, sr, sw, dg):
    q.add_argument("--out", default="")
    q.add_argument("--batch", type=int, default=neural_models.ENCODE_BATCH,
                   help="tiles per jitted neural pass (neural_models.ENCODE_BATCH; larger "
                   "suits a GPU)")
  cp = sub.add_parser("compare")
  cp.add_argument("--inputs", required=True, help="comma-separated JSON files from rd --out")
  cp.add_argument("--reference", default="pifs", help="codec label to compare against")
  cp.add_argument("--targets", default="0.25,0.5,1.0", help="rates to read PSNR at")
  cp.add_argument("--out", default="")
  co = sub.add_parser("coding")
  co.add_argument("--against", required=True, help="another version's neural_coding.py")
  co.add_argument("--folder", default="../shared/data/kodak")
  co.add_argument("--images", default="kodim23.png,kodim01.png,kodim13.png")
  co.add_argument("--qualities", default="1,30,75,100")
  co.add_argument("--model", default=None)
  co.add_argument("--repeats", type=int, default=5)
  co.add_argument("--out", default="")
  cv = sub.add_parser("coverage")
  cv.add_argument("--inputs", required=True, help="comma-separated rd or sweep JSON files")
  cv.add_argument("--reference", default="pifs")
  cv.add_argument("--codecs", default="",
                  help="only rows whose codec label starts with this (default: every other)")
  cv.add_argument("--out", default="")
  su = sub.add_parser("speedup")
  su.add_argument("--inputs", required=True,
                  help="comma-separated JSON files from sweep --out or rd --out (one run)")
  su.add_argument("--reference", default="pifs", help="codec label to compare against")
  su.add_argument("--out", default="")
  pl = sub.add_parser("plot")
  pl.add_argument("--inputs", required=True, help="comma-separated JSON files from rd --out")
  pl.add_argument("--title", default="Kodak (24 images)")
  pl.add_argument("--out", default="neural_codec_rd.png")
  pl.add_argument("--exclude", action="append", default=[],
                  help="a codec label to leave out (repeat for several; labels hold commas), "
                       "e.g. a curve that another file holds under another label")
  args = p.parse_args(argv)
  if getattr(args, "batch", None) is not None:
    if args.batch < 1 or args.batch & (args.batch - 1):
      p.error(f"--batch must be a power of two, got {args.batch}")
    neural_models.ENCODE_BATCH = args.batch
  res = {"rd": cmd_rd, "speed": cmd_speed, "sr": cmd_sr, "sweep": cmd_sweep,
         "diagnose": cmd_diagnose, "compare": cmd_compare, "speedup": cmd_speedup,
         "coverage": cmd_coverage,
         "coding": cmd_coding,
         "plot": cmd_plot}[args.cmd](args)
  if args.out and args.cmd != "plot":
    with open(args.out, "w") as f:
      json.dump(res, f, indent=1)


if __name__ == "__main__":
  main()
