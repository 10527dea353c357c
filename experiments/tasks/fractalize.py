"""Fractalization: one image -> the parameters of a restricted collage operator.

Config: ``experiments/configs/fractalize.py`` (its docstring is the launch command).
The parameters are the raw (unconstrained) values of ``collage.ops.collage.params_from_raw``
for one image, ``{"raw_weight": [1, C, R, K], "raw_bias": [1, C, R]}``; every batch row is the
same image, so the parameters are broadcast over the batch.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from collage import images
from collage.data import augment, embedded
from collage.metrics.distortion import psnr, psnr_from_mse
from collage.ops import blocks
from collage.ops import collage as co
from collage.ops import ifs
from collage.train import loop
from collage.train.writer import Progress
from collage.train.task import Batch, Metrics, Params, Task

LOSSES = ("collage", "decode")
IFS_CHUNK = 50  # IFS fit steps between progress lines
IFS_DEMOS = {"sierpinski": (ifs.SIERPINSKI, None), "fern": (ifs.BARNSLEY_FERN,
                                                             ifs.BARNSLEY_FERN_PROBS)}


# -- the image ------------------------------------------------------------------------------
def _load_uint8(config: ml_collections.ConfigDict) -> np.ndarray:
  """uint8 [h, w, channels] from ``image_path`` or the embedded photograph."""
  channels = int(config.channels)
  if config.image_path:
    return images.to_channels(images.load_image(config.image_path), channels)
  if config.embedded not in embedded.EMBEDDED_NAMES:
    raise ValueError(f"unknown embedded image {config.embedded!r} (config.embedded); valid: "
                     f"{', '.join(embedded.EMBEDDED_NAMES)}")
  split = "eval" if config.embedded in embedded.EVAL_NAMES else "all"
  return dict(embedded.embedded_images(channels, split))[config.embedded]


def load_target(config: ml_collections.ConfigDict) -> np.ndarray:
  """The image to fractalize: centre square crop resized to ``image_size``.

  Returns:
    float32 [image_size, image_size, channels] in [0, 1].
  """
  img = _load_uint8(config)
  h, w = img.shape[:2]
  side = min(h, w)
  img = augment.center_crop(img, (side, side))
  size = int(config.image_size)
  if side != size:
    pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    img = np.asarray(pil.resize((size, size), Image.Resampling.BOX)).reshape(size, size, -1)
  return img.astype(np.float32) / 255.0


class _Phases:
  """Logs each phase of the artifacts with its number and the time the previous one took."""

  def __init__(self, total: int):
    self.total, self.n, self.name, self.t = total, 0, "", time.perf_counter()

  def start(self, name: str) -> None:
    self.done()
    self.n, self.name, self.t = self.n + 1, name, time.perf_counter()
    logging.info("artifacts %d/%d: %s ...", self.n, self.total, name)

  def done(self) -> None:
    if self.name:
      logging.info("artifacts %d/%d: %s took %.1f s", self.n, self.total, self.name,
                   time.perf_counter() - self.t)
      self.name = ""


# -- the task -------------------------------------------------------------------------------
class FractalizeTask(Task):
  """Fit a restricted collage (whole image = the only domain, no auxiliary sources)."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    if config.ifs_demo and config.ifs_demo not in IFS_DEMOS:
      raise ValueError(f"unknown ifs_demo {config.ifs_demo!r}; valid: '' (off), "
                       f"{', '.join(IFS_DEMOS)}")
    if config.loss not in LOSSES:
      raise ValueError(f"unknown loss {config.loss!r} (config.loss); valid: {', '.join(LOSSES)}")
    n_iso = int(config.num_isometries)
    if not 1 <= n_iso <= blocks.NUM_ISOMETRIES:
      raise ValueError(f"num_isometries must be in 1..8, got {n_iso}")
    self.spec = co.CollageSpec(
        image_size=int(config.image_size), range_size=int(config.range_size),
        domain_size=None, isometries=tuple(range(n_iso)), num_aux=0,
        channels=int(config.channels), s_max=float(config.s_max))
    self.target = load_target(config)  # [H, W, C]

  def dataset(self, split: str, *, seed: int, process_index: int, process_count: int,
              batch_size: int) -> Iterator[Batch]:
    del seed, process_index, process_count  # every process sees the one image
    if split == "train":
      # Batch, then repeat: grain 0.2.18 overflows len() for repeat().batch(1).
      ds = grain.MapDataset.source([{"image": self.target}] * batch_size)
      return iter(ds.batch(batch_size).repeat().to_iter_dataset())
    return [{"image": np.repeat(self.target[None], batch_size, axis=0)}]

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    return {"image": jax.ShapeDtypeStruct((batch_size, *self.target.shape), jnp.float32)}

  def init_params(self, rng: jax.Array) -> Params:
    w, b = co.init_raw(self.spec, rng, 1, stddev=float(self.config.init_stddev))
    return {"raw_weight": w, "raw_bias": b}

  def collage_params(self, params: Params, batch_size: int = 1) -> co.CollageParams:
    """Contractive parameters broadcast to ``batch_size`` rows."""
    p = co.params_from_raw(self.spec, params["raw_weight"], params["raw_bias"])
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (batch_size,) + a.shape[1:]), p)

  def loss_fn(self, params: Params, batch: Batch, rng: jax.Array) -> tuple[jax.Array, Metrics]:
    del rng
    x = batch["image"]
    p = self.collage_params(params, x.shape[0])
    collage_mse = jnp.mean(co.collage_error(self.spec, p, x))
    metrics = {"collage_mse": collage_mse,
               "contraction": jnp.max(co.contraction_factor(self.spec, p))}
    if self.config.loss == "collage":
      return collage_mse, metrics
    decoded = co.decode(self.spec, p, steps=int(self.config.train_decode_steps), implicit=True)
    loss = jnp.mean((decoded - x) ** 2)
    metrics["decode_mse"] = loss
    return loss, metrics

  def eval_fn(self, params: Params, model_state: Any, batch: Batch, rng: jax.Array) -> Metrics:
    del model_state, rng
    x = batch["image"]
    p = self.collage_params(params, x.shape[0])
    decoded = jnp.clip(co.decode(self.spec, p, steps=int(self.config.eval_decode_steps)), 0, 1)
    mse = jnp.mean((decoded - x) ** 2)
    return {"collage_mse": jnp.mean(co.collage_error(self.spec, p, x)), "decode_mse": mse,
            "psnr_1x": psnr_from_mse(mse, min_mse=1e-12)}

  # -- artifacts ----------------------------------------------------------------------------
  def write_artifacts(self, params: Params, model_state: Any, step: int, workdir: str) -> None:
    del model_state
    cfg, spec = self.config, self.spec
    out = os.path.join(workdir, "artifacts")
    os.makedirs(out, exist_ok=True)
    p = self.collage_params(jax.tree.map(jnp.asarray, params))
    images.save_png(os.path.join(out, "target.png"), self.target)

    decode = jax.jit(co.decode, static_argnums=(0,),
                     static_argnames=("tol", "max_steps", "scale", "steps"))
    upscales = [int(k) for k in cfg.artifact_scales if int(k) > 1]
    phase = _Phases(2 + len(upscales) + (1 if cfg.ifs_demo else 0))
    phase.start("decoding at 1x (scored, then to tolerance)")
    scored = np.asarray(decode(spec, p, steps=int(cfg.eval_decode_steps)))[0]
    x1 = decode(spec, p, tol=float(cfg.artifact_tol), max_steps=int(cfg.artifact_max_steps))
    summary: dict[str, Any] = {
        "step": int(step),
        "image": cfg.image_path or f"embedded:{cfg.embedded}",
        "image_size": int(cfg.image_size), "range_size": int(cfg.range_size),
        "num_isometries": int(cfg.num_isometries), "num_parameters": int(
            sum(np.size(a) for a in jax.tree.leaves(params))),
        "psnr_1x": psnr(np.clip(scored, 0, 1), self.target),
        "decode_steps_1x": int(cfg.eval_decode_steps),
        "collage_mse": float(co.collage_error(spec, p, jnp.asarray(self.target)[None])[0]),
        "contraction_factor": float(co.contraction_factor(spec, p)[0]),
    }
    for k in cfg.artifact_scales:
      k = int(k)
      # Start from the upsampled 1x fixed point: its k-means already agree with the limit.
      start = blocks.upsample_nearest(x1, k) if k > 1 else None
      if k > 1:
        side = self.target.shape[0] * k
        phase.start(f"decoding at {k}x ({side}x{side} pixels)")
      xk = x1 if k == 1 else decode(spec, p, tol=float(cfg.artifact_tol), scale=k,
                                    max_steps=int(cfg.artifact_max_steps), start=start)
      images.save_png(os.path.join(out, f"fractal_{k}x.png"), np.asarray(xk)[0])
      if k > 1:
        summary[f"pool_{k}x_vs_1x_maxabs"] = float(
            jnp.max(jnp.abs(blocks.mean_pool(xk, k) - x1)))

    phase.start(f"the GIF of {int(cfg.gif_steps)} decoding iterations")
    traj = co.decode_trajectory(spec, p, steps=int(cfg.gif_steps))[:, 0]
    frames = [Image.fromarray(images.to_uint8(f)) for f in np.asarray(traj)]
    frames[0].save(os.path.join(out, "decoding.gif"), save_all=True, append_images=frames[1:],
                   duration=int(cfg.gif_frame_ms), loop=0)

    if cfg.ifs_demo:
      phase.start(f"the IFS demo ({cfg.ifs_demo}: {int(cfg.ifs_steps)} Adam steps x "
                  f"{int(cfg.ifs_restarts)} restarts)")
      summary.update(self.ifs_demo(out, jax.random.PRNGKey(int(cfg.seed))))
    phase.done()

    with open(os.path.join(out, "fractalize.json"), "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2, sort_keys=True)
    with open(os.path.join(out, "fractalize.md"), "w", encoding="utf-8") as f:
      f.write("# Fractalization\n\n| quantity | value |\n|---|---|\n")
      for key, v in summary.items():
        f.write(f"| {key} | {v:.4g} |\n" if isinstance(v, float) else f"| {key} | {v} |\n")
    logging.info("fractalize artifacts in %s: PSNR(1x) = %.2f dB", out, summary["psnr_1x"])

  def ifs_demo(self, out: str, key: jax.Array) -> dict[str, Any]:
    """Recover a classical IFS from points on its attractor; save both renderings."""
    cfg = self.config
    true_maps, probs = IFS_DEMOS[cfg.ifs_demo]
    k_target, k_fit, k_a, k_b = jax.random.split(key, 4)
    target = ifs.chaos_game(true_maps, k_target, int(cfg.ifs_points), probs=probs)
    # The fit in chunks of IFS_CHUNK steps, with progress and ETA between them (the same
    # numbers as one ifs.fit call).
    total = int(cfg.ifs_steps)
    state = ifs.fit_start(target, k_fit, int(true_maps.A.shape[0]), int(cfg.ifs_restarts))
    advance = jax.jit(ifs.fit_advance, static_argnums=(2,))
    progress, history = Progress(0, total, label="IFS fit step"), []
    while int(state.step) < total:
      n = min(IFS_CHUNK, total - int(state.step))
      state, losses = advance(state, target, n)
      history.append(losses)
      progress.report(int(state.step), {"chamfer": float(jnp.min(losses[:, -1]))})
    res = ifs.fit_finish(state, target, jnp.concatenate(history, axis=1))
    fitted = ifs.chaos_game(ifs.maps_from_raw(res.raw), k_a, 60000)
    reference = ifs.chaos_game(true_maps, k_b, 60000, probs=probs)
    lo, hi = jnp.min(reference, 0), jnp.max(reference, 0)
    lo, hi = lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)
    for name, pts in (("ifs_target", reference), ("ifs_fit", fitted)):
      img = 1.0 - np.asarray(ifs.rasterize(pts, 384, lo, hi))
      images.save_png(os.path.join(out, name + ".png"), img[..., None])
    return {"ifs_demo": cfg.ifs_demo, "ifs_collage_chamfer": float(res.loss),
            "ifs_attractor_chamfer": float(ifs.chamfer(fitted[:2048], reference[:2048]))}


def run(config: ml_collections.ConfigDict, workdir: str, mode: str):
  """The entrypoint's hook: train (or evaluate) the fractalization of one image."""
  return loop.run(FractalizeTask(config), config, workdir, mode)
