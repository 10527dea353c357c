"""The one training loop: every experiment's ``run`` hands its :class:`Task` to :func:`run`.

    def run(config, workdir, mode):           # in experiments/tasks/NAME.py
      return loop.run(MyTask(config), config, workdir, mode)

Sections: set-up (mesh, optimizer, state shapes) -> restore or initialise -> train (jitted step,
host fetches only when logging) -> evaluate, artifacts, checkpoint.
"""

from __future__ import annotations

import collections
import os
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from collage.train import mesh as mesh_lib
from collage.train.checkpoint import Checkpointer
from collage.train.errors import CheckpointError, ConfigError
from collage.train.optimizer import make_optimizer
from collage.train.state import TrainState, create_state
from collage.train.step import make_eval_step, make_train_step
from collage.train.task import Task
from collage.train.writer import MetricWriter, Progress

MODES = ("train", "eval")
# Metrics that are running totals or schedules: logged as their latest value, not averaged.
_LATEST_VALUE = ("skipped_nonfinite", "skipped_large", "learning_rate")
_EVAL_SALT = 0x6576616C  # "eval": separates the eval key stream from the training one


def _keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(init key, step key, eval key) from the run's seed; raw uint32 keys, checkpointable."""
  root = jax.random.PRNGKey(seed)
  init_key, step_key = jax.random.split(root)
  return init_key, step_key, jax.random.fold_in(root, _EVAL_SALT)


def _average(rows: list[dict[str, Any]]) -> dict[str, float]:
  """Host-side mean over logged steps (latest value for counters / schedules)."""
  rows = jax.device_get(rows)
  out = {}
  for k in rows[-1]:
    if k in _LATEST_VALUE:
      out[k] = float(rows[-1][k])
    else:
      out[k] = float(np.mean([np.asarray(r[k], np.float64) for r in rows]))
  return out


def _check_iterator(it: Any, task: Task) -> None:
  if not (hasattr(it, "get_state") and hasattr(it, "set_state")):
    raise TypeError(
        f"{type(task).__name__}.dataset('train', ...) returned {type(it).__name__}, which has no "
        "get_state()/set_state(); the runtime checkpoints the data position, so return a grain "
        "iterator, e.g. iter(grain.MapDataset...to_iter_dataset()).")


class _Runtime:
  """Set-up shared by training and evaluation."""

  def __init__(self, task: Task, config: ml_collections.ConfigDict, workdir: str,
               devices: Sequence[jax.Device] | None):
    self.task, self.config, self.workdir = task, config, workdir
    self.mesh = mesh_lib.make_mesh(list(devices) if devices is not None else None)
    self.local_batch = mesh_lib.check_batch_size(int(config.batch_size), self.mesh)
    self.tx = make_optimizer(config)
    self.init_key, self.step_key, self.eval_key = _keys(int(config.seed))
    use_ema = float(config.ema_decay) > 0

    def init() -> TrainState:
      return create_state(task.init_params(self.init_key), self.tx, self.step_key, use_ema)

    rep = mesh_lib.replicated(self.mesh)
    shapes = jax.eval_shape(init)
    self.state_sharding = jax.tree.map(lambda _: rep, shapes)
    self.abstract_state = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), shapes)
    self.init_state = jax.jit(init, out_shardings=self.state_sharding)
    self.eval_step = jax.jit(make_eval_step(task), out_shardings=rep)
    self.checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"),
                                    keep=int(config.keep_checkpoints))
    self.writer = MetricWriter(workdir)

  def dataset(self, split: str) -> Iterator[Any]:
    return self.task.dataset(split, seed=int(self.config.seed),
                             process_index=jax.process_index(),
                             process_count=jax.process_count(), batch_size=self.local_batch)

  def evaluate(self, state: TrainState, step: int) -> dict[str, float]:
    """Averages ``task.eval_fn`` over ``config.eval_batches`` batches; logs; writes artifacts."""
    params = state.eval_params
    sums, n = None, 0
    for i, local in enumerate(self.dataset("eval")):
      if i >= int(self.config.eval_batches):
        break
      batch = mesh_lib.global_batch(local, self.mesh)
      m = self.eval_step(params, batch, jax.random.fold_in(self.eval_key, i))
      sums = m if sums is None else jax.tree.map(jnp.add, sums, m)
      n += 1
    scalars = {}
    if n:
      scalars = {f"eval/{k}": float(v) / n for k, v in jax.device_get(sums).items()}
      self.writer.write(step, scalars)
      if jax.process_index() == 0:
        logging.info("eval at step %d: %s", step,
                     "  ".join(f"{k}={v:.4g}" for k, v in sorted(scalars.items())))
    if jax.process_index() == 0:
      self.task.write_artifacts(mesh_lib.to_host(params), step, self.workdir)
    return scalars

  def close(self) -> None:
    self.checkpoints.close()
    self.writer.close()


def run(task: Task, config: ml_collections.ConfigDict, workdir: str, mode: str = "train",
        *, devices: Sequence[jax.Device] | None = None) -> TrainState:
  """Trains (resuming from the latest checkpoint in ``workdir``) or evaluates ``task``.

  Args:
    task: the experiment.
    config: a config built on :func:`collage.train.config.training_defaults`.
    workdir: the run directory (``checkpoints/``, ``metrics.jsonl``, TensorBoard events,
      ``artifacts/``).
    mode: "train" (resume automatically, train to ``config.total_steps``, evaluate) or
      "eval" (restore the latest checkpoint; evaluate and write artifacts only).
    devices: the devices of the mesh (default: all devices of all processes).

  Returns:
    The final :class:`TrainState` (replicated global arrays).

  Raises:
    ConfigError: unknown mode, or a batch size the device count does not divide.
    CheckpointError: an existing checkpoint cannot be restored, or mode "eval" finds none.
  """
  if mode not in MODES:
    raise ConfigError(f"mode={mode!r} is unknown; valid: {', '.join(MODES)}.")
  rt = _Runtime(task, config, workdir, devices)
  try:
    latest = rt.checkpoints.latest_step()
    if mode == "eval":
      return _eval_only(rt, latest)
    return _train(rt, latest)
  finally:
    rt.close()


def _eval_only(rt: _Runtime, latest: int | None) -> TrainState:
  if latest is None:
    raise CheckpointError(
        f"--mode eval needs a checkpoint, but {rt.checkpoints.directory} has none; "
        "train first with --mode train (same --workdir).")
  state, _ = rt.checkpoints.restore(latest, rt.abstract_state)
  rt.evaluate(state, latest)
  return state


def _train(rt: _Runtime, latest: int | None) -> TrainState:
  config = rt.config
  total = int(config.total_steps)
  log_every = max(1, int(config.log_every))
  eval_every = int(config.eval_every)
  ckpt_every = int(config.checkpoint_every)

  train_iter = rt.dataset("train")
  _check_iterator(train_iter, rt.task)
  if latest is None:
    state, step = rt.init_state(), 0
    logging.info("starting from scratch: %d devices, global batch %d, %d steps",
                 rt.mesh.devices.size, int(config.batch_size), total)
  else:
    state, data_state = rt.checkpoints.restore(latest, rt.abstract_state)
    train_iter.set_state(data_state)
    step = latest
    logging.info("resumed from %s at step %d on %d devices",
                 rt.checkpoints.directory / str(latest), step, rt.mesh.devices.size)

  train_step = jax.jit(
      make_train_step(rt.task, rt.tx, config),
      in_shardings=(rt.state_sharding, mesh_lib.batch_sharding(rt.mesh)),
      out_shardings=(rt.state_sharding, mesh_lib.replicated(rt.mesh)),
      donate_argnums=(0,))

  # The host runs ahead of the devices, but by at most `ahead` steps: blocking on an older step's
  # metrics keeps the device queue full while bounding queued work (XLA:CPU collectives over many
  # fake devices can deadlock when thousands of steps are queued).
  ahead = max(1, int(config.get("max_steps_ahead", 4)))
  inflight: collections.deque[jax.Array] = collections.deque()
  progress = Progress(step, total)
  pending: list[dict[str, jax.Array]] = []
  skipped_seen = 0
  last_saved = latest
  while step < total:
    batch = mesh_lib.global_batch(next(train_iter), rt.mesh)
    state, metrics = train_step(state, batch)  # dispatched asynchronously
    step += 1
    pending.append(metrics)
    inflight.append(jax.tree.leaves(metrics)[0])
    if len(inflight) > ahead:
      inflight.popleft().block_until_ready()

    if step % log_every == 0 or step == total:
      scalars = _average(pending)  # the only per-interval host sync
      pending = []
      scalars["steps_per_sec"] = progress.report(step, scalars)
      rt.writer.write(step, scalars)
      skipped = int(scalars["skipped_nonfinite"] + scalars["skipped_large"])
      if skipped > skipped_seen:
        logging.warning("skipped %d bad updates so far (non-finite: %d, above threshold: %d)",
                        skipped, int(scalars["skipped_nonfinite"]), int(scalars["skipped_large"]))
        skipped_seen = skipped

    if eval_every > 0 and step % eval_every == 0 and step < total:
      rt.evaluate(state, step)
    if (ckpt_every > 0 and step % ckpt_every == 0) or step == total:
      rt.checkpoints.save(step, state, train_iter.get_state(), force=True)
      last_saved = step

  if last_saved != total:  # e.g. total_steps lowered below an existing checkpoint
    logging.warning("checkpoint step %s is beyond total_steps=%d; nothing trained", latest, total)
  rt.evaluate(state, step)
  rt.checkpoints.wait()
  rt.writer.flush()
  return state
