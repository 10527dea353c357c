"""The digit feature network on the one runtime: a classifier trained by cross-entropy, exported
as the weight file the digit evaluators load.

Config: ``experiments/configs/digit_features.py`` (its docstring is the launch command). The
network is ``collage.nn.digit_features.DigitClassifier``. Data: the embedded digits through the
``digits`` source and grain; training reads the 4,500 "train" digits only (never the 500
held-out ones), shuffled every epoch, each with a random rotation, scaling and shift (bilinear,
zero outside, seeded by the run's seed and the element's index, so a resumed run draws the same
digits), as float32 pixel values in 0..255. Train metrics (batch means): ``loss`` (the
cross-entropy, nats), ``accuracy``. Eval metrics, per held-out digit, so their means are exact:
``cross_entropy``, ``accuracy``. Artifacts: ``WORKDIR/artifacts/errors_STEP.png``, the held-out
digits the network gets wrong, each captioned with its label and the prediction.

Export (a trained workdir's latest checkpoint, or ``--step N``, -> a weight file of the
parameters the run evaluates, EMA where it keeps one; prints its sha256 and the held-out
accuracy recomputed from the written file)::

    python -m experiments.tasks.digit_features export --workdir runs/digit_features \
        --out collage/assets/digit_features/weights.npz
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from typing import Any, Sequence

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from collage.data import digits as digits_lib
from collage import images
from collage.data.pipeline import DEFAULT_THREADS, EpochShuffle
from collage.data.sources import open_source
from collage.nn import digit_features as df
from collage.train import loop
from collage.train import mesh as mesh_lib
from collage.train.checkpoint import Checkpointer
from collage.train.errors import CheckpointError, ConfigError
from collage.train.run_config import recorded_config
from collage.train.setup import StateSetup
from collage.train.task import Task

SIDE = df.SIDE


def model_config(config: ml_collections.ConfigDict) -> df.DigitFeaturesConfig:
  """The architecture named by ``config.model`` (checked)."""
  try:
    return df.DigitFeaturesConfig(**config.model.to_dict())
  except (TypeError, ValueError) as e:
    raise ConfigError(f"config.model: {e}") from None


def _check_training_fields(config: ml_collections.ConfigDict) -> None:
  """Raises ``ConfigError`` naming a dropout or augmentation field out of its range."""
  a = config.augment
  checks = (("dropout", config.dropout, 0.0 <= config.dropout < 1.0, "in [0, 1)"),
            ("augment.max_rotation", a.max_rotation, 0.0 <= a.max_rotation <= 180.0,
             "in [0, 180] degrees"),
            ("augment.max_scale", a.max_scale, 0.0 <= a.max_scale < 1.0, "in [0, 1)"),
            ("augment.max_shift", a.max_shift, 0.0 <= a.max_shift <= SIDE / 2,
             f"in [0, {SIDE // 2}] pixels"),
            ("artifact_errors", config.artifact_errors, config.artifact_errors >= 0, ">= 0"))
  for name, value, ok, valid in checks:
    if not ok:
      raise ConfigError(f"config.{name}={value!r} is out of range: it must be {valid}.")


# -- data -----------------------------------------------------------------------------------------
def random_affine(image: np.ndarray, rng: np.random.Generator, *, max_rotation: float,
                  max_scale: float, max_shift: float) -> np.ndarray:
  """A random rotation (uniform in +-``max_rotation`` degrees), scaling (1 +- ``max_scale``)
  and shift (+-``max_shift`` pixels per axis) about the centre, bilinear, zero outside.

  image: [H, W, C] (uint8 or float, values 0..255) -> float32 [H, W, C].
  """
  h, w, _ = image.shape
  angle = math.radians(rng.uniform(-max_rotation, max_rotation))
  scale = rng.uniform(1.0 - max_scale, 1.0 + max_scale)
  shift = rng.uniform(-max_shift, max_shift, size=2)
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                       indexing="ij")
  # Each output pixel reads the source at the inverse transform of its position.
  dy, dx = yy - cy - shift[0], xx - cx - shift[1]
  cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
  sy, sx = cos * dy + sin * dx + cy, -sin * dy + cos * dx + cx
  y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
  fy, fx = (sy - y0)[..., None], (sx - x0)[..., None]
  padded = np.pad(np.asarray(image, np.float32), ((1, 1), (1, 1), (0, 0)))

  def at(y, x):  # the source pixel (y, x), zero outside the image
    return padded[np.clip(y + 1, 0, h + 1), np.clip(x + 1, 0, w + 1)]

  out = ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
         + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))
  return np.clip(out, 0.0, 255.0).astype(np.float32)


def _train_element(element: dict[str, Any], rng: np.random.Generator, *,
                   augment: dict[str, float]) -> dict[str, np.ndarray]:
  """Source digit -> {"image": float32 [28, 28, 1] in 0..255 (augmented), "label": int32 []}."""
  return {"image": random_affine(element["image"], rng, **augment),
          "label": np.int32(element["label"])}


def _eval_element(index: int, element: dict[str, Any], *, num_real: int
                  ) -> dict[str, np.ndarray]:
  """Source digit -> {"image": float32 [28, 28, 1] in 0..255, "label", "mask": 0 on padding}."""
  return {"image": np.asarray(element["image"], np.float32), "label": np.int32(element["label"]),
          "mask": np.float32(1.0 if index < num_real else 0.0)}


def _stack(elements: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.stack([e[k] for e in elements]) for k in elements[0]}


def digit_dataset(split: str, *, batch_size: int, seed: int, process_index: int = 0,
                  process_count: int = 1, augment: dict[str, float] | None = None,
                  num_threads: int = DEFAULT_THREADS) -> grain.DatasetIterator:
  """This process's batches of labelled digits (the ``digits`` source, through grain).

  "train": infinite, a fresh order every epoch, each digit augmented by :func:`random_affine`
  with ``augment`` (``max_rotation``, ``max_scale``, ``max_shift``); checkpointable. "eval": the
  500 held-out digits in order, wrapped around to a whole number of global batches, ``mask`` 0
  on the wrapped rows. Batches: ``{"image": float32 [B, 28, 28, 1] in 0..255, "label": int32
  [B]}`` (+ ``"mask"`` for eval). Process p reads every process_count-th element from p.
  """
  if split not in ("train", "eval"):
    raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
  source = open_source("digits", split=split, channels=1)
  if split == "train":
    shuffle_seed, augment_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    ds = grain.MapDataset.source(EpochShuffle(source, shuffle_seed))
    ds = ds.random_map(functools.partial(_train_element, augment=dict(augment or {
        "max_rotation": 0.0, "max_scale": 0.0, "max_shift": 0.0})), seed=augment_seed)
  else:
    n, global_batch = len(source), batch_size * process_count
    padded = -(-n // global_batch) * global_batch
    ds = grain.MapDataset.source(source).repeat(-(-padded // n))[:padded]
    ds = ds.map_with_index(functools.partial(_eval_element, num_real=n))
  ds = ds[process_index::process_count].batch(batch_size, drop_remainder=True, batch_fn=_stack)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                                   prefetch_buffer_size=2)))


# -- the task -------------------------------------------------------------------------------------
class DigitFeaturesTask(Task):
  """Trains :class:`collage.nn.digit_features.DigitClassifier` by cross-entropy."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.model_cfg = model_config(config)
    _check_training_fields(config)

  def dataset(self, split, *, seed, process_index, process_count, batch_size):
    return digit_dataset(split, batch_size=batch_size, seed=seed, process_index=process_index,
                         process_count=process_count, augment=self.config.augment.to_dict())

  def batch_spec(self, batch_size):
    """``{"image": float32 [B, 28, 28, 1] in 0..255, "label": int32 [B]}``: the train batch."""
    b = int(batch_size)
    return {"image": jax.ShapeDtypeStruct((b, SIDE, SIDE, 1), jnp.float32),
            "label": jax.ShapeDtypeStruct((b,), jnp.int32)}

  def init_params(self, rng):
    return df.init_params(self.model_cfg, rng)

  def loss_fn(self, params, batch, rng):
    out = df.apply(self.model_cfg, params, batch["image"], dropout=float(self.config.dropout),
                   rng=rng)
    ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], batch["label"])
    correct = jnp.argmax(out["logits"], axis=-1) == batch["label"]
    loss = jnp.mean(ce)
    return loss, {"cross_entropy": loss, "accuracy": jnp.mean(correct.astype(jnp.float32))}

  def eval_fn(self, params, model_state, batch, rng):
    """Per held-out digit [B]: the cross-entropy (nats) and whether the prediction is right."""
    del model_state, rng
    logits = df.apply(self.model_cfg, params, batch["image"])["logits"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = jnp.argmax(logits, axis=-1) == batch["label"]
    return {"cross_entropy": ce, "accuracy": correct.astype(jnp.float32)}

  def write_artifacts(self, params, model_state, step, workdir):
    del model_state
    num = int(self.config.artifact_errors)
    if num <= 0:
      return
    net = df.DigitFeatures(self.model_cfg, jax.tree.map(jnp.asarray, params), sha256="")
    digits, labels = digits_lib.digit_images("eval")
    predicted = np.argmax(net.outputs(digits)["logits"], axis=-1)
    wrong = np.flatnonzero(predicted != labels)
    out = os.path.join(workdir, "artifacts")
    os.makedirs(out, exist_ok=True)
    shown = wrong[:num]
    pairs = ", ".join(f"{labels[i]}->{predicted[i]}" for i in shown)
    which = "EMA" if float(self.config.optimizer.ema_decay) > 0 else "plain"
    caption = (f"step {step}: {len(wrong)} of {len(labels)} held-out digits misclassified "
               f"({which} parameters); label->prediction, row by row: {pairs or 'none'}")
    grid = (images.image_grid(digits[shown] / 255.0) if len(shown) else
            np.ones((SIDE, SIDE, 1), np.float32))
    images.save_png(os.path.join(out, f"errors_{step}.png"), images.captioned(grid, caption))


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> Any:
  return loop.run(DigitFeaturesTask(config), config, workdir, mode)


# -- export ---------------------------------------------------------------------------------------
def held_out_accuracy(net: df.DigitFeatures) -> float:
  """The fraction of the 500 held-out digits that ``net`` classifies right."""
  digits, labels = digits_lib.digit_images("eval")
  return float(np.mean(np.argmax(net.outputs(digits)["logits"], axis=-1) == labels))


def restore_params(workdir: str, step: int | None = None
                   ) -> tuple[dict[str, np.ndarray], df.DigitFeaturesConfig, dict[str, Any]]:
  """The parameters the run evaluates (EMA when it keeps one) at checkpoint ``step`` (None: the
  latest).

  Returns:
    ``(params, architecture, facts)``; facts: ``step``, ``params`` ("ema" or "params") and the
    run's recorded config.

  Raises:
    CheckpointError: ``workdir`` has no recorded config of this task, no checkpoint, or none
      of step ``step`` (naming the ones it has).
  """
  recorded = recorded_config(workdir)
  if recorded is None or recorded.get("task") != "digit_features":
    raise CheckpointError(f"{workdir} is not a digit_features run (no config.json of task "
                          "digit_features); train one first with `python -m experiments.main "
                          "--config experiments/configs/digit_features.py --workdir DIR`")
  config = ml_collections.ConfigDict(recorded)
  task = DigitFeaturesTask(config)
  mesh = mesh_lib.make_mesh(jax.local_devices()[:1])
  setup = StateSetup(task, config, mesh)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise CheckpointError(f"{workdir} has no checkpoints/ to export; train first")
  checkpoints = Checkpointer(ckpt_dir, keep=int(config.keep_checkpoints))
  try:
    latest = checkpoints.latest_step()  # also refuses incomplete step directories
    if latest is None:
      raise CheckpointError(f"{ckpt_dir} holds no complete checkpoint to export; train first")
    if step is None:
      step = latest
    elif not os.path.isdir(os.path.join(ckpt_dir, str(step))):
      have = sorted(int(p) for p in os.listdir(ckpt_dir) if p.isdigit())
      raise CheckpointError(f"{ckpt_dir} has no checkpoint of step {step}; it has steps "
                            f"{', '.join(map(str, have))}")
    state, _ = checkpoints.restore(step, setup.abstract_state)
  finally:
    checkpoints.close()
  params = mesh_lib.to_host(state.eval_params)["model"]
  which = "ema" if "model" in state.ema_params else "params"
  return params, task.model_cfg, {"step": int(step), "params": which, "config": recorded}


def export(workdir: str, out: str, step: int | None = None) -> dict[str, Any]:
  """Writes the weight file of ``workdir``'s checkpoint ``step`` (None: the latest) to ``out``.

  The file's meta records the run (its folder name, step, which parameters, its config) and the
  held-out accuracy; the accuracy is then recomputed from the written file, and must agree.

  Returns:
    ``{"path", "sha256", "bytes", "step", "params", "held_out_accuracy"}``.
  """
  params, cfg, facts = restore_params(workdir, step)
  in_memory = held_out_accuracy(df.DigitFeatures(cfg, jax.tree.map(jnp.asarray, params), ""))
  meta = {"run": os.path.basename(os.path.normpath(workdir)), "step": facts["step"],
          "params": facts["params"], "held_out_accuracy": in_memory,
          "train_data": "digits train split (4,500 digits; the 500 eval digits held out)",
          "config": facts["config"]}
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  sha = df.save(out, params, cfg, meta)
  written = held_out_accuracy(df.read(out))
  if written != in_memory:
    raise RuntimeError(f"{out}: held-out accuracy {written} from the written file differs from "
                       f"{in_memory} before writing")
  return {"path": os.path.abspath(out), "sha256": sha, "bytes": os.path.getsize(out),
          "step": facts["step"], "params": facts["params"], "held_out_accuracy": written}


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.tasks.digit_features",
      description="Export a trained digit feature network to its weight file.")
  sub = parser.add_subparsers(dest="command", required=True)
  ex = sub.add_parser("export", help="a run's checkpoint (the latest) -> weight file (.npz)")
  ex.add_argument("--workdir", required=True, help="the training run's directory")
  ex.add_argument("--out", required=True, help="the weight file to write, e.g. "
                  "collage/assets/digit_features/weights.npz")
  ex.add_argument("--step", type=int, default=None,
                  help="the checkpoint step to export (default: the latest)")
  args = parser.parse_args(argv)
  try:
    result = export(args.workdir, args.out, args.step)
  except (CheckpointError, ConfigError, ValueError) as e:
    sys.stderr.write(f"error: {e}\n")
    return 2
  print(json.dumps(result, indent=1))
  print(f"wrote {result['path']} ({result['bytes']} bytes) from step {result['step']} "
        f"({result['params']}); sha256 {result['sha256']}; held-out accuracy "
        f"{result['held_out_accuracy']:.4f} (500 digits, recomputed from the file)")
  if (os.path.abspath(args.out) == os.path.abspath(df.SHIPPED)
      and result["sha256"] != df.SHIPPED_SHA256):
    print(f"these are new shipped weights: set SHIPPED_SHA256 = \"{result['sha256']}\" in "
          "collage/nn/digit_features.py, and update the recorded numbers of "
          "tests/nn/test_digit_features.py and collage/assets/digit_features/README.md")
  return 0


if __name__ == "__main__":
  sys.exit(main())
