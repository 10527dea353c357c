"""What the Fractalize tab computes: the fractalize task's fit on one image, the decoding
iterations from a blank start, and the decode at any integer scale.

The fit is ``experiments/tasks/fractalize.py``'s, run here without the training runtime (no
workdir, no checkpoints): its config (``fractalize.py:quick``) with the image and size chosen
in the page, its :class:`FractalizeTask` (centre square crop resized to the size, the
restricted collage whose only domain is the whole image, the collage loss, the initial
parameters), and plain Adam at the config's learning rate, as the config's optimizer block
asks (no clipping, no schedule). The steps run in jitted chunks of :data:`CHUNK`, so the page
shows progress between them; on a CPU a 256 x 256 image takes a few seconds.

Decoding at scale ``k`` starts from the 1x fixed point upsampled (its k x k means already agree
with the limit, as the task's artifacts do) and iterates to the task's tolerance. It passes the
codecs' memory check first (:func:`collage.codec.memory.check_decode_fits`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from apps.demo.compress import MAX_ZOOM, check_zoom
from collage.codec.base import CodecError
from collage.codec.memory import FIXED_BYTES, check_decode_fits
from collage import images
from collage.metrics.distortion import psnr
from collage.ops import blocks
from collage.ops import collage as co
from experiments.configs import fractalize as fractalize_config
from experiments.tasks.fractalize import FractalizeTask

SIZES = (128, 256, 512)  # the square sizes the page offers
DEFAULT_SIZE = 256
DEFAULT_STEPS = 400
MAX_STEPS = 3000
CHUNK = 50  # Adam steps per jitted call (progress is reported between calls)
GIF_STEPS = 24  # decoding iterations in the animation
GIF_FRAME_MS = 120
WORKING_COPIES = 6  # float32 image-sized arrays a decode holds at once (iterate, next, output)


def fit_config(image_path: str, size: int, channels: int, steps: int):
  """The fractalize task's ``quick`` config for this image, size and number of steps."""
  config = fractalize_config.get_config("quick")
  config.image_path = image_path
  config.image_size = int(size)
  config.channels = int(channels)
  config.total_steps = int(steps)
  return config


def check_size(size) -> int:
  """A fit size the page offers (one of SIZES; 256.0 from a client counts) -> int."""
  if isinstance(size, float) and size.is_integer():
    size = int(size)
  if size not in SIZES:
    raise CodecError(f"size must be one of {', '.join(map(str, SIZES))}, got {size!r}")
  return int(size)


def check_steps(steps) -> int:
  """A number of Adam steps: a multiple of CHUNK in CHUNK..MAX_STEPS -> int."""
  try:
    value = float(steps)
  except (TypeError, ValueError):
    value = float("nan")
  if (isinstance(steps, bool) or not value.is_integer() or not CHUNK <= value <= MAX_STEPS
      or value % CHUNK):
    raise CodecError(f"steps must be a multiple of {CHUNK} in {CHUNK}..{MAX_STEPS} (the fit "
                     f"runs in chunks of {CHUNK}), got {steps!r}")
  return int(value)


@dataclasses.dataclass(frozen=True)
class Fit:
  """A fitted restricted collage.

  Attributes:
    spec: the operator's structure (``collage.ops.collage.CollageSpec``).
    raw_weight, raw_bias: its raw parameters, numpy [1, C, R, K] and [1, C, R].
    target: the image it was fitted to, float32 [S, S, C] in [0, 1].
    decoded: the 1x decode (to the task's tolerance), float32 [S, S, C].
    stats: psnr_1x, collage_mse, contraction, parameters, steps, fit_s, size, channels.
  """
  spec: co.CollageSpec
  raw_weight: np.ndarray
  raw_bias: np.ndarray
  target: np.ndarray
  decoded: np.ndarray
  stats: dict

  def params(self) -> co.CollageParams:
    return co.params_from_raw(self.spec, jnp.asarray(self.raw_weight), jnp.asarray(self.raw_bias))


_chunks: dict[tuple, tuple] = {}


def _advance(task, learning_rate: float):
  """(the Adam optimizer, a jitted ``(params, opt_state, image) -> (params, opt_state, loss)``
  of CHUNK steps of ``task.loss_fn``), built once per operator structure and loss."""
  key = (task.spec, learning_rate, str(task.config.loss), int(task.config.train_decode_steps))
  if key not in _chunks:
    optimizer = optax.adam(learning_rate)
    loss_fn = task.loss_fn

    def chunk(params, opt_state, x):
      def body(carry, _):
        p, s = carry
        loss, grads = jax.value_and_grad(lambda q: loss_fn(q, {"image": x}, None)[0])(p)
        updates, s = optimizer.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), loss
      (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), None,
                                                 length=CHUNK)
      return params, opt_state, losses[-1]

    _chunks[key] = (optimizer, jax.jit(chunk))
  return _chunks[key]


_decode = jax.jit(co.decode, static_argnums=(0,),
                  static_argnames=("tol", "max_steps", "scale", "steps"))
_trajectory = jax.jit(co.decode_trajectory, static_argnums=(0,), static_argnames=("steps", "scale"))


def fit(image_path: str, channels: int, size=DEFAULT_SIZE, steps=DEFAULT_STEPS,
        report: Callable[[int, int], None] | None = None) -> Fit:
  """Fits the fractalize task's collage to the image in ``image_path`` (already checked by
  :func:`apps.demo.inputs.read_upload`; ``channels`` is its channel count, 1 or 3).

  ``report(done, total)`` is called after every chunk of steps."""
  size, steps = check_size(size), check_steps(steps)
  config = fit_config(image_path, size, channels, steps)
  task = FractalizeTask(config)
  start = time.perf_counter()
  params = task.init_params(jax.random.PRNGKey(int(config.seed)))
  optimizer, advance = _advance(task, float(config.optimizer.learning_rate))
  opt_state = optimizer.init(params)
  x = jnp.asarray(task.target)[None]
  done = 0
  while done < steps:
    params, opt_state, _ = advance(params, opt_state, x)
    done += CHUNK
    if report is not None:
      report(done, steps)
  p = task.collage_params(params)
  decoded = np.asarray(_decode(task.spec, p, tol=float(config.artifact_tol),
                               max_steps=int(config.artifact_max_steps)))[0]
  seconds = time.perf_counter() - start
  stats = {
      "size": size, "channels": int(channels), "steps": done, "fit_s": seconds,
      "psnr_1x": psnr(np.clip(decoded, 0.0, 1.0), task.target),
      "collage_mse": float(co.collage_error(task.spec, p, x)[0]),
      "contraction": float(co.contraction_factor(task.spec, p)[0]),
      "parameters": int(sum(np.size(a) for a in jax.tree.leaves(params))),
  }
  return Fit(task.spec, np.asarray(params["raw_weight"]), np.asarray(params["raw_bias"]),
             np.asarray(task.target), decoded, stats)


def decoding_gif(result: Fit, path: str, steps: int = GIF_STEPS) -> str:
  """Writes the decoding iterations from a blank (mid-grey) start as an animated GIF; returns
  ``path``."""
  traj = np.asarray(_trajectory(result.spec, result.params(), steps=int(steps)))[:, 0]
  frames = [Image.fromarray(images.to_uint8(f)) for f in traj]
  frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:],
                 duration=GIF_FRAME_MS, loop=0)
  return path


def decode_bytes(size: int, channels: int, scale: int) -> int:
  """Estimated peak memory of :func:`decode_at` (float32 working copies and the 8-bit
  output)."""
  pixels = size * size * scale * scale * channels
  return FIXED_BYTES + WORKING_COPIES * 4 * pixels + pixels


def decode_at(result: Fit, scale) -> np.ndarray:
  """The fitted collage decoded at an integer ``scale`` in 1..MAX_ZOOM -> uint8 [S*k, S*k, C]
  (gray: [S*k, S*k, 1]); refused in one line when it would not fit in memory."""
  k = check_zoom(scale)
  size, channels = result.target.shape[0], result.target.shape[-1]
  check_decode_fits(None, size, size, channels, k, lambda s: decode_bytes(size, channels, s))
  x1 = jnp.asarray(result.decoded)[None]
  if k == 1:
    out = result.decoded
  else:
    config = fractalize_config.get_config("quick")
    out = np.asarray(_decode(result.spec, result.params(), tol=float(config.artifact_tol),
                             max_steps=int(config.artifact_max_steps), scale=k,
                             start=blocks.upsample_nearest(x1, k)))[0]
  return images.to_uint8(out).reshape(size * k, size * k, channels)
