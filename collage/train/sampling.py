"""Drawing samples from a task under the mesh, and writing them where a person can open them.

Sample ``i`` of a draw with seed ``s`` uses the key ``fold_in(PRNGKey(s), i)``, and a task's
sampler makes each sample from its own key only, so a draw does not depend on how many devices
share it: the keys are split over the "data" axis, padded to a multiple of the device count, and
the padding is dropped.

    DIR/samples/STEP/
      options.json     the draw: step, num, seed and the task's sampling options
      grid.png         every "image" sample in one picture
      00000.png ...    each "image" sample
      samples.npz      every array the sampler returned, [num, ...]
      ...              the task's own files of the draw (``Task.write_sample_files``: .jpg, posters)

A task's sampling options are ``config.sample`` less the runtime's fields (:func:`task_options`),
wherever they are read: the runtime's draws, the evaluators' draws and a task's artifacts. The
artifacts' samples come from the same :class:`Sampler` (:func:`local_sampler`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from collage import images
from collage.train import mesh as mesh_lib
from collage.train.errors import ConfigError
from collage.train.task import Task
from collage.train.writer import FirstCall, Progress

REQUIRED_FIELDS = ("num", "seed", "batch_size")  # config.sample fields every sampler has
RUNTIME_FIELDS = (*REQUIRED_FIELDS, "name")  # ... and those the runtime reads (not the task)


def task_options(sample_config: ml_collections.ConfigDict | None) -> dict[str, Any]:
  """``config.sample`` without the runtime's fields: the task's own sampling options."""
  if sample_config is None:
    return {}
  return {k: v for k, v in sample_config.to_dict().items() if k not in RUNTIME_FIELDS}


def check_sample_config(task: Task, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config.sample``, checked before anything runs.

  Raises:
    ConfigError: the task has no sampler, or the config has no ``sample`` block.
  """
  name = type(task).__name__
  if not task.can_sample():
    raise ConfigError(f"--mode sample: task {config.task!r} ({name}) has no sampler; "
                      "it can only be trained and evaluated (--mode train | eval).")
  sample = config.get("sample", None)
  if sample is None or any(k not in sample for k in REQUIRED_FIELDS):
    raise ConfigError(f"--mode sample needs config.sample with the fields "
                      f"{', '.join(REQUIRED_FIELDS)} (collage.train.config.sample_defaults()).")
  return sample


class Sampler:
  """Calls ``task.sample`` jitted under ``mesh``, the keys split over all devices.

  Args:
    task: the task (its ``sample`` is jitted once per chunk shape).
    mesh: the mesh.
    options: the task's sampling options (static: a change retraces).
    batch_size: samples per jitted call, rounded up to a multiple of the device count.
  """

  def __init__(self, task: Task, mesh: Mesh, options: Mapping[str, Any], batch_size: int = 64):
    self.mesh = mesh
    devices = mesh.devices.size
    self.chunk = max(devices, -(-int(batch_size) // devices) * devices)
    rep, shard = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
    options = dict(options)

    def draw(params, model_state, keys):
      return task.sample(task.task_params(params), model_state, keys, options)

    self.draw_fn = draw  # (params, model state, keys [chunk, 2]) -> samples, unjitted
    self._compiling = FirstCall(f"the sampler ({self.chunk} samples per call)")
    self._draw = jax.jit(draw, in_shardings=(rep, rep, shard), out_shardings=shard)
    self._keys = jax.jit(
        lambda key, start: jax.vmap(lambda i: jax.random.fold_in(key, i))(
            start + jnp.arange(self.chunk)), out_shardings=shard)

  def lower(self, params: Any, model_state: Any) -> tuple[Any, jax.ShapeDtypeStruct]:
    """(the sample step lowered for one chunk of keys, the keys' shape): ``params`` and
    ``model_state`` may be ``jax.ShapeDtypeStruct`` trees (``--mode plan``)."""
    keys = jax.ShapeDtypeStruct((self.chunk, 2), jnp.uint32,
                                sharding=mesh_lib.batch_sharding(self.mesh))
    return self._draw.lower(params, model_state, keys), keys

  def __call__(self, params: Mapping[str, Any], model_state: Any, num: int, seed: int,
               start: int = 0) -> dict[str, np.ndarray]:
    """Samples ``start .. start + num - 1`` of the draw with ``seed``: ``{name: [num, ...]
    numpy}`` on every process. A long draw taken in pieces (``start`` = 0, n, 2n, ...) equals
    the same draw taken at once."""
    key = jax.random.PRNGKey(int(seed))
    parts: list[dict[str, np.ndarray]] = []
    chunks = range(int(start), int(start) + int(num), self.chunk)
    progress = Progress(0, int(num), label="samples")
    for i, first in enumerate(chunks):
      compiled = self._compiling.done
      parts.append(mesh_lib.gather(self._compiling(self._draw, params, model_state,
                                                   self._keys(key, first))))
      if not compiled:  # the ETA counts the calls after the one that compiled
        progress.restart(min(self.chunk, int(num)))
      elif len(chunks) > 1:
        progress.report(min((i + 1) * self.chunk, int(num)), {})
    return {k: np.concatenate([p[k] for p in parts])[:num] for k in parts[0]}


def local_sampler(task: Task, options: Mapping[str, Any], batch_size: int) -> Sampler:
  """A :class:`Sampler` on this process's first device alone, for a task's artifacts
  (``Task.write_artifacts`` runs on process 0 only, so its draws cannot span the other
  processes' devices). Its draws take ``{network name: parameters}`` and equal the runtime's
  draws with the same options and seed; ``batch_size`` samples per call."""
  return Sampler(task, mesh_lib.make_mesh(jax.local_devices()[:1]), options, batch_size)


def sample_dir(workdir: str, step: int, name: str = "") -> str:
  """Where a draw of checkpoint ``step`` goes: ``DIR/samples/STEP`` or ``STEP-NAME``.

  Raises:
    ConfigError: a name that is not a plain file name.
  """
  if name and (os.sep in name or name in (".", "..") or not name.isprintable()):
    raise ConfigError(f"sample.name={name!r} must be a plain name (no {os.sep!r}), e.g. t085")
  return os.path.join(workdir, "samples", f"{step}-{name}" if name else str(step))


def check_sample_dir(directory: str, meta: Mapping[str, Any]) -> dict[str, Any]:
  """``meta`` as JSON values, once ``directory`` is known to take this draw (checked before
  drawing, so a refusal costs no sampling).

  Raises:
    FileExistsError: ``directory`` holds samples drawn with different ``meta``, or is not a
      sample directory.
  """
  meta_path = os.path.join(directory, "options.json")
  meta = json.loads(json.dumps(dict(meta), sort_keys=True))
  if os.path.exists(meta_path):
    with open(meta_path, encoding="utf-8") as f:
      old = json.load(f)
    if old != meta:
      raise FileExistsError(
          f"{directory} already holds samples drawn with {old}; this draw is {meta}. Name this "
          "draw (--config.sample.name=NAME writes it to STEP-NAME beside the other), or draw "
          "with the same options.")
  elif os.path.isdir(directory) and os.listdir(directory):
    raise FileExistsError(f"{directory} exists and is not a sample directory of this runtime; "
                          "move or delete it, or name this draw with --config.sample.name=NAME.")
  return meta


def write_samples(samples: Mapping[str, np.ndarray], directory: str,
                  meta: Mapping[str, Any]) -> str:
  """Writes ``samples`` under ``directory`` (see the module docstring); returns it.

  A directory that already holds a draw with other options is not touched.

  Raises:
    FileExistsError: ``directory`` holds samples drawn with different ``meta``.
  """
  meta = check_sample_dir(directory, meta)
  meta_path = os.path.join(directory, "options.json")
  os.makedirs(directory, exist_ok=True)
  if "image" in samples:
    imgs = samples["image"]
    if imgs.ndim != 4 or imgs.shape[-1] not in (1, 3):
      raise ValueError(f"sample 'image' must be [N, H, W, 1 or 3], got {imgs.shape}")
    for i, img in enumerate(imgs):
      images.save_png(os.path.join(directory, f"{i:05d}.png"), img)
    options = ", ".join(f"{k}={v}" for k, v in sorted(meta.get("options", {}).items()))
    caption = (f"step {meta.get('step')}: {len(imgs)} samples, seed {meta.get('seed')}"
               + (f"; {options}" if options else ""))
    images.save_png(os.path.join(directory, "grid.png"),
                    images.captioned(images.image_grid(imgs), caption))
  np.savez(os.path.join(directory, "samples.npz"), **samples)
  with open(meta_path, "w", encoding="utf-8") as f:
    json.dump(meta, f, indent=1, sort_keys=True)
  return directory
