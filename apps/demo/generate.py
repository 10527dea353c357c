"""What the Generate tab computes: trained runs, restored from their checkpoints and sampled
through their own task's sampler.

A run is a ``--workdir`` of ``python -m experiments.main``: its ``config.json`` names the task,
and ``checkpoints/`` holds orbax checkpoints. :func:`inspect_run` says in one line why a
directory is not a run the tab can sample (missing, not a directory, no ``config.json``, a
task without a sampler here, no checkpoint yet). :class:`LoadedRun` builds the task from the
recorded config (``collage.train.registry.task_of``), restores the latest checkpoint onto a mesh over
every device through the runtime (``collage.train.loop.restore_for_inference``: read-only, it
never writes or cleans the run directory, so a run still training is safe), and draws samples with
the runtime's :class:`collage.train.sampling.Sampler` from the EMA parameters, as
``--mode sample`` does.

The tasks and their options:
  vdvae          ``temperature`` (prior standard deviation multiplier); ``scale`` for
                 Collage-VDVAE (``model.head = collage``): the same latents decoded at k times
                 the training resolution
  magic          ``content`` (guided runs: an image file), ``templates`` (an image folder);
                 returns I_M (``collage``), A (``weights_rgb``) and I (``image``)
  dctransformer  ``input_image`` (upsample and colorize runs), ``temperature``; each sample
                 is also written as a real ``.jpg`` from its coefficients
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import jax
import ml_collections
import numpy as np

from collage import images
from collage.train import loop
from collage.train import mesh as mesh_lib
from collage.train.checkpoint import Checkpointer
from collage.train.registry import task_of
from collage.train.sampling import Sampler

SAMPLED_TASKS = ("vdvae", "magic", "dctransformer")
TRAIN_COMMAND = ("python -m experiments.main --config experiments/configs/vdvae.py:mnist_quick "
                 "--workdir runs/vdvae_mnist_quick")
MAX_SAMPLES = 64
MAX_SCALE = 4  # Collage-VDVAE decode scales the page offers
MAX_SAMPLERS = 8  # compiled samplers kept per run (one per set of options)


class RunError(ValueError):
  """A directory that is not a run the demo can sample; the message says why and what to do."""


class RunInfo:
  """A checked run directory.

  Attributes:
    path: its absolute path.
    name: its base name.
    task: the task module's name (one of SAMPLED_TASKS).
    config: the recorded config.
    step: the latest complete checkpoint's step.
  """

  def __init__(self, path: str, task: str, config: ml_collections.ConfigDict, step: int):
    self.path, self.name, self.task = path, os.path.basename(path.rstrip(os.sep)), task
    self.config, self.step = config, step

  @property
  def label(self) -> str:
    """How the page lists it: name, what it is, and its step."""
    return f"{self.name} ({self.kind}, step {self.step})"

  @property
  def kind(self) -> str:
    if self.task == "vdvae":
      return "Collage-VDVAE" if self.collage_head else "VDVAE"
    if self.task == "magic":
      return "MAGIC, guided" if self.guided else "MAGIC, unguided"
    return f"DCTransformer, {self.condition}" if self.condition != "none" else "DCTransformer"

  @property
  def collage_head(self) -> bool:
    return self.task == "vdvae" and self.config.model.get("head", "pixels") == "collage"

  @property
  def guided(self) -> bool:
    return self.task == "magic" and bool(self.config.model.get("guided", False))

  @property
  def condition(self) -> str:
    return str(self.config.get("condition", "none")) if self.task == "dctransformer" else "none"


def inspect_run(path: str) -> RunInfo:
  """Checks that ``path`` is a run the Generate tab can sample.

  Raises:
    RunError: one line naming the problem and what to do.
  """
  path = os.path.abspath(os.path.expanduser(str(path)))
  if not os.path.exists(path):
    raise RunError(f"{path} does not exist; --runs takes run directories (the --workdir of a "
                   f"training run), e.g. one made by: {TRAIN_COMMAND}")
  if not os.path.isdir(path):
    raise RunError(f"{path} is a file, not a run directory (the --workdir of a training run)")
  config_path = os.path.join(path, "config.json")
  if not os.path.isfile(config_path):
    raise RunError(f"{path} is not a run: it has no config.json (a run directory is the "
                   f"--workdir of python -m experiments.main; train one with: {TRAIN_COMMAND})")
  try:
    with open(config_path, encoding="utf-8") as f:
      recorded = json.load(f)
  except (OSError, ValueError) as e:
    raise RunError(f"{path} is not a run: its config.json cannot be read ({e})") from None
  task = recorded.get("task") if isinstance(recorded, dict) else None
  if task not in SAMPLED_TASKS:
    raise RunError(f"{path} is a run of task {task!r}, which the Generate tab does not sample; "
                   f"it samples runs of {', '.join(SAMPLED_TASKS)}")
  checkpoints = Checkpointer(os.path.join(path, "checkpoints"), keep=1, read_only=True)
  try:
    step = checkpoints.latest_step()
  except Exception as e:  # orbax reports unreadable directories as various errors  # noqa: BLE001
    raise RunError(f"{path}: its checkpoints cannot be read ({type(e).__name__}: {e})") from None
  finally:
    checkpoints.close()
  if step is None:
    raise RunError(f"{path} has no checkpoint yet: let its training reach its first "
                   "checkpoint (config.checkpoint_every), or train one with: "
                   f"{TRAIN_COMMAND}")
  return RunInfo(path, task, ml_collections.ConfigDict(recorded), int(step))


class LoadedRun:
  """A run's task and restored (EMA) parameters, ready to sample (see the module docstring).

  Raises:
    RunError: the checkpoint does not restore into the recorded config's state.
  """

  def __init__(self, info: RunInfo):
    self.info = info
    self.task = task_of(info.config)
    self.mesh = mesh_lib.make_mesh()
    try:  # read-only: a run that is still training is safe
      state, _ = loop.restore_for_inference(self.task, info.config, info.path, step=info.step)
    except Exception as e:  # noqa: BLE001
      raise RunError(f"{info.path}: checkpoint {info.step} does not restore into the state of "
                     f"its recorded config ({type(e).__name__}: {' '.join(str(e).split())[:300]})"
                     ) from None
    self.params, self.model_state = state.eval_params, state.model_state
    self._samplers: dict[str, Sampler] = {}
    self._lock = threading.Lock()

  def sample(self, options: dict[str, Any], num: int, seed: int) -> dict[str, np.ndarray]:
    """``num`` samples drawn with ``seed`` and the task's ``options`` -> {name: [num, ...]}."""
    num, seed = int(num), int(seed)
    if not 1 <= num <= MAX_SAMPLES:
      raise RunError(f"samples must be in 1..{MAX_SAMPLES}, got {num}")
    key = json.dumps({"options": options, "num": num}, sort_keys=True)
    with self._lock:
      if key not in self._samplers:
        if len(self._samplers) >= MAX_SAMPLERS:
          self._samplers.pop(next(iter(self._samplers)))
        self._samplers[key] = Sampler(self.task, self.mesh, options, batch_size=num)
      sampler = self._samplers[key]
    return jax.tree.map(np.asarray, sampler(self.params, self.model_state, num, seed))


_loaded: dict[str, LoadedRun] = {}
_loaded_lock = threading.Lock()


def loaded(info: RunInfo) -> LoadedRun:
  """The run restored once per process (runs are named on the command line, not uploaded)."""
  with _loaded_lock:
    if info.path not in _loaded or _loaded[info.path].info.step != info.step:
      _loaded[info.path] = LoadedRun(info)
    return _loaded[info.path]


def grid(samples: np.ndarray, min_width: int = 384) -> np.ndarray:
  """Samples float [N, H, W, C] in [0, 1] -> one uint8 picture, enlarged by whole pixels so a
  28-pixel digit is visible (:func:`collage.images.image_grid`)."""
  picture = images.image_grid(np.asarray(samples, np.float32))
  zoom = max(1, -(-min_width // picture.shape[1]))
  picture = np.repeat(np.repeat(picture, zoom, axis=0), zoom, axis=1)
  return images.to_uint8(picture)


def vdvae_options(info: RunInfo, temperature: float, scale: int) -> dict[str, Any]:
  """The VDVAE sampler's options; a scale other than 1 only for Collage-VDVAE."""
  temperature = float(temperature)
  if not 0.0 <= temperature <= 2.0:
    raise RunError(f"temperature must be in 0..2, got {temperature}")
  scale = int(scale)
  if not 1 <= scale <= MAX_SCALE:
    raise RunError(f"scale must be an integer in 1..{MAX_SCALE}, got {scale}")
  if scale != 1 and not info.collage_head:
    raise RunError(f"{info.name} is a VDVAE with a pixel head: it samples at scale 1 only; "
                   "Collage-VDVAE (model.head=collage) decodes its latents at any scale")
  return {"temperature": temperature, "scale": scale}


def magic_options(info: RunInfo, content: str | None, templates: str | None) -> dict[str, Any]:
  """The MAGIC sampler's options: its recorded ones, with the content image (guided runs)
  and the template folder given in the page."""
  options = dict(info.config.sample.to_dict())
  for field in ("num", "seed", "batch_size", "name"):
    options.pop(field, None)
  if content:
    if not info.guided:
      raise RunError(f"{info.name} is an unguided MAGIC run: it takes no content image")
    options["content"] = str(content)
  if templates:
    options["templates"] = str(templates)
  return options


def dct_options(info: RunInfo, input_image: str | None, temperature: float) -> dict[str, Any]:
  """The DCTransformer sampler's options; an input image for upsample and colorize runs."""
  if input_image and info.condition == "none":
    raise RunError(f"{info.name} is an unconditional DCTransformer: it takes no input image "
                   "(upsample and colorize runs do)")
  return {"temperature": float(temperature), "top_p": 1.0, "use_cache": True,
          "input_image": str(input_image or "")}


def write_jpeg(run: LoadedRun, dct_image: np.ndarray, path: str) -> str | None:
  """A DCTransformer sample's coefficients as a baseline ``.jpg`` (8x8-block runs); returns
  ``path``, or None for a run whose blocks JPEG cannot hold."""
  if run.task.coder.block != 8:
    return None
  run.task.coder.write_jpeg(path, np.asarray(dct_image))
  return path
