"""The one training loop: every experiment's ``run`` hands its :class:`Task` to :func:`run`.

    def run(config, workdir, mode):           # in experiments/tasks/NAME.py
      return loop.run(MyTask(config), config, workdir, mode)

Sections: set-up (mesh, one optimizer per network, state shapes, evaluators) -> restore or
initialise -> train (jitted step, host fetches only when logging) -> evaluators, artifacts,
checkpoint. ``--mode eval`` runs the evaluators on the latest checkpoint; ``--mode sample`` draws
``config.sample.num`` samples from it and lets the task add its own files to the draw (see
:mod:`collage.train.sampling`).
"""

from __future__ import annotations

import collections
import errno
import json
import os
import shutil
from typing import Any, Iterator, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from collage.train import mesh as mesh_lib
from collage.train import plan as plan_lib
from collage.train.checkpoint import Checkpointer
from collage.train.config import check_ranges
from collage.train.errors import CheckpointError, ConfigError
from collage.train.evaluators import EvalContext, make_evaluators
from collage.train.interrupt import Interrupted, Interruption
from collage.train.run_config import check_against_run
from collage.train.sampling import (Sampler, check_sample_config, check_sample_dir,
                                    sample_dir, task_options, write_samples)
from collage.train.setup import StateSetup
from collage.train.state import TrainState
from collage.train.step import make_train_step
from collage.train.task import Task
from collage.train.writer import FirstCall, MetricWriter, Progress, write_config

MODES = ("train", "eval", "sample", "plan")


def _average(rows: list[dict[str, Any]]) -> dict[str, float]:
  """Host-side mean of each metric over the logged steps."""
  rows = jax.device_get(rows)
  return {k: float(np.mean([np.asarray(r[k], np.float64) for r in rows])) for k in rows[-1]}


def _has_step_dirs(directory: str) -> bool:
  """Whether ``directory`` holds a step directory (complete or not: restoring says which)."""
  return os.path.isdir(directory) and any(
      p.isdigit() and os.path.isdir(os.path.join(directory, p)) for p in os.listdir(directory))


def _check_iterator(it: Any, task: Task) -> None:
  if not (hasattr(it, "get_state") and hasattr(it, "set_state")):
    raise TypeError(
        f"{type(task).__name__}.dataset('train', ...) returned {type(it).__name__}, which has no "
        "get_state()/set_state(); the runtime checkpoints the data position, so return a grain "
        "iterator, e.g. iter(grain.MapDataset...to_iter_dataset()).")


class _Runtime:
  """Set-up shared by training, evaluation and sampling."""

  def __init__(self, task: Task, config: ml_collections.ConfigDict, workdir: str,
               devices: Sequence[jax.Device] | None, mode: str = "train"):
    self.task, self.config, self.workdir = task, config, workdir
    self.mesh = mesh_lib.make_mesh(list(devices) if devices is not None else None)
    # Sampling reads no batches: any device count may draw (the keys are padded instead).
    self.local_batch = (mesh_lib.check_batch_size(int(config.batch_size), self.mesh)
                        if mode != "sample" else None)
    setup = StateSetup(task, config, self.mesh)
    self.optimizers, self.schedules, self.update = setup.optimizers, setup.schedules, setup.update
    self.init_key, self.step_key, self.eval_key = setup.init_key, setup.step_key, setup.eval_key
    self.state_sharding, self.abstract_state = setup.state_sharding, setup.abstract_state
    self.init_state = setup.init_state
    self._samplers: dict[tuple[str, int], Sampler] = {}
    self.evaluators = make_evaluators(config.get("evals", None), EvalContext(self))
    self.train_iter = None
    if mode == "train":  # open the data now: a bad source fails before anything is written
      self.train_iter = self.dataset("train")
      _check_iterator(self.train_iter, task)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    has_checkpoints = _has_step_dirs(ckpt_dir)
    if mode != "train" and not has_checkpoints:
      raise CheckpointError(
          f"--mode {mode} needs a checkpoint, but {ckpt_dir} has none; train first with "
          "--mode train (same --workdir).")
    if has_checkpoints:  # before anything is written or restored
      changed = check_against_run(config, workdir, mode)
      if changed and jax.process_index() == 0:
        logging.info("the run's recorded config differs in settings a resume may change: %s",
                     "; ".join(changed))

    # Everything is checked: from here on the run writes into the workdir. The config of the
    # training run stays as it was when evaluating or sampling from it.
    if jax.process_index() == 0 and mode == "train":
      logging.info("config written to %s", write_config(config, workdir))
    self.checkpoints = Checkpointer(ckpt_dir, keep=int(config.keep_checkpoints),
                                    read_only=mode != "train")
    self.writer = MetricWriter(workdir)

  def dataset(self, split: str) -> Iterator[Any]:
    return self.task.dataset(split, seed=int(self.config.seed),
                             process_index=jax.process_index(),
                             process_count=jax.process_count(), batch_size=self.local_batch)

  def sampler(self, overrides: Any = None, batch_size: int = 0) -> Sampler:
    """The task's jitted sampler with ``config.sample``'s task options updated by ``overrides``,
    ``batch_size`` samples per call (0: ``config.sample.batch_size``); one per distinct pair.

    Raises:
      ConfigError: an override the task's sampling options do not have.
    """
    sample = self.config.get("sample", None)
    options = task_options(sample)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(options))
    if unknown:
      raise ConfigError(f"sampling options {unknown} are not options of task {self.config.task!r}"
                        f"; valid: {', '.join(sorted(options)) or 'none'}.")
    options.update(overrides)
    batch = int(batch_size) or (int(sample.batch_size) if sample is not None
                                and "batch_size" in sample else 64)
    key = (json.dumps(options, sort_keys=True, default=str), batch)
    if key not in self._samplers:
      self._samplers[key] = Sampler(self.task, self.mesh, options, batch)
    return self._samplers[key]

  def due(self, step: int) -> bool:
    """Whether training step ``step`` runs an evaluator or writes artifacts."""
    every = int(self.config.eval_every)
    return ((every > 0 and step % every == 0)
            or any(ev.due(step, every) for ev in self.evaluators))

  def evaluate(self, state: TrainState, step: int, when: str = "eval") -> dict[str, float]:
    """Runs the evaluators, logs ``NAME/KEY``, writes the task's artifacts.

    ``when``: "eval" (``--mode eval``: every evaluator), "step" (a training step: those due at
    ``step``; artifacts at multiples of ``eval_every``) or "final" (the end of training: all but
    those with ``every = 0``).
    """
    every = int(self.config.eval_every)
    if when == "step":
      chosen = [ev for ev in self.evaluators if ev.due(step, every)]
    elif when == "final":
      chosen = [ev for ev in self.evaluators if int(ev.options["every"]) != 0]
    else:
      chosen = list(self.evaluators)
    scalars = {}
    for ev in chosen:
      scalars.update({f"{ev.name}/{k}": v for k, v in ev.run(state, step).items()})
    if scalars:
      self.writer.write(step, scalars)
      if jax.process_index() == 0:
        logging.info("eval at step %d: %s", step,
                     "  ".join(f"{k}={v:.4g}" for k, v in sorted(scalars.items())))
    if jax.process_index() == 0 and (when != "step" or (every > 0 and step % every == 0)):
      self.task.write_artifacts(self.task.task_params(mesh_lib.to_host(state.eval_params)),
                                mesh_lib.to_host(state.model_state), step, self.workdir)
    return scalars

  def optimizer_scalars(self, state: TrainState, step: int) -> dict[str, float]:
    """Per network: the learning rate of the last step and the skip counters so far."""
    counters = jax.device_get({n: (o.skipped_nonfinite, o.skipped_large)
                               for n, o in state.opt_state.items()})
    out = {}
    for n, (nonfinite, large) in counters.items():
      out[f"{n}/learning_rate"] = float(self.schedules[n](max(step - 1, 0)))
      out[f"{n}/skipped_nonfinite"] = float(nonfinite)
      out[f"{n}/skipped_large"] = float(large)
    return out

  def save(self, step: int, state: TrainState, train_iter: Any) -> None:
    """Checkpoints ``state`` and the data position at ``step`` (written in the background).

    Raises:
      OSError: ENOSPC, before anything is written, when the disk has less free space than
        the state's bytes plus 1 MB (orbax's metadata): a full disk is one clear line, not a
        background writer's traceback.
    """
    needed = sum(x.nbytes for x in jax.tree.leaves(state)) + (1 << 20)
    free = shutil.disk_usage(self.checkpoints.directory).free
    if free < needed:
      raise OSError(errno.ENOSPC, f"checkpoint of step {step} needs about {needed / 1e6:.1f} MB, "
                    f"{free / 1e6:.1f} MB free", str(self.checkpoints.directory / str(step)))
    self.checkpoints.save(step, state, train_iter.get_state(), force=True)
    if jax.process_index() == 0:
      logging.info("saving the checkpoint of step %d to %s", step, self.checkpoints.directory)

  def close(self) -> None:
    self.checkpoints.close()
    self.writer.close()


def run(task: Task, config: ml_collections.ConfigDict, workdir: str, mode: str = "train",
        *, devices: Sequence[jax.Device] | None = None) -> TrainState:
  """Trains (resuming from the latest checkpoint in ``workdir``), evaluates or samples ``task``.

  Args:
    task: the experiment.
    config: a config built on :func:`collage.train.config.training_defaults`.
    workdir: the run directory (``checkpoints/``, ``metrics.jsonl``, TensorBoard events,
      ``artifacts/``, ``samples/``).
    mode: "train" (resume automatically, train to ``config.total_steps``, evaluate), "eval"
      (restore the latest checkpoint; run the evaluators and write artifacts only), "sample"
      (restore the latest checkpoint; write ``config.sample.num`` samples to
      ``workdir/samples/STEP/``) or "plan" (compile from shapes only, write
      ``workdir/plan.json``: :mod:`collage.train.plan`).
    devices: the devices of the mesh (default: all devices of all processes).

  Returns:
    The final :class:`TrainState` (replicated global arrays); the plan's dict for "plan".

  Raises:
    ConfigError: unknown mode, a batch size the device count does not divide, optimizer blocks
      that do not match the task's networks, an unknown evaluator, no sampler for "sample".
    CheckpointError: an existing checkpoint cannot be restored, or "eval" / "sample" finds none.
  """
  if mode not in MODES:
    raise ConfigError(f"mode={mode!r} is unknown; valid: {', '.join(MODES)}.")
  check_ranges(config)
  if mode == "plan":  # shapes only: nothing is read, trained or written but plan.json
    return plan_lib.run_plan(task, config, workdir)
  if mode == "sample":
    check_sample_config(task, config)
  rt = _Runtime(task, config, workdir, devices, mode)
  try:
    latest = rt.checkpoints.latest_step()
    if mode == "eval":
      return _eval_only(rt, latest)
    if mode == "sample":
      return _sample(rt, latest)
    return _train(rt, latest)
  finally:
    rt.close()


def restore_for_inference(task: Task, config: ml_collections.ConfigDict, workdir: str, *,
                          step: int = -1, devices: Sequence[jax.Device] | None = None
                          ) -> tuple[TrainState, int]:
  """The state of checkpoint ``step`` (-1: the latest) of the run in ``workdir``, for a tool
  that samples or renders outside the loop (``state.eval_params`` are the EMA parameters where
  the run keeps them). Nothing is written to the workdir.

  Raises:
    CheckpointError: no checkpoint, or not the one asked for.
    ConfigError: ``config`` cannot restore the run's checkpoints (naming the fields).
  """
  config = ml_collections.ConfigDict(config.to_dict())
  config.checkpoint_step = int(step)
  config.evals = ml_collections.ConfigDict()  # restoring builds no evaluator
  rt = _Runtime(task, config, workdir, devices, "sample")
  try:
    chosen = _chosen_step(rt, rt.checkpoints.latest_step(), "sample")
    return _restore(rt, chosen), chosen
  finally:
    rt.close()


def _chosen_step(rt: _Runtime, latest: int | None, mode: str) -> int:
  """The checkpoint ``--mode eval`` / ``sample`` restores: ``config.checkpoint_step`` when it
  is set (>= 0), else the latest.

  Raises:
    CheckpointError: no checkpoint, or not the one asked for (naming those there are).
  """
  if latest is None:
    raise CheckpointError(
        f"--mode {mode} needs a checkpoint, but {rt.checkpoints.directory} has none; "
        "train first with --mode train (same --workdir).")
  wanted = int(rt.config.get("checkpoint_step", -1))
  if wanted < 0:
    return latest
  steps = rt.checkpoints.all_steps()
  if wanted not in steps:
    raise CheckpointError(
        f"--config.checkpoint_step={wanted}: {rt.checkpoints.directory} has no checkpoint of "
        f"that step; it has {', '.join(map(str, steps))} (-1: the latest).")
  return wanted


def _restore(rt: _Runtime, step: int) -> TrainState:
  state, _ = rt.checkpoints.restore(step, rt.abstract_state)
  return state


def _sample(rt: _Runtime, latest: int | None) -> TrainState:
  latest = _chosen_step(rt, latest, "sample")
  sample = rt.config.sample
  directory = sample_dir(rt.workdir, latest, sample.get("name", ""))
  meta = check_sample_dir(directory, {
      "step": latest, "num": int(sample.num), "seed": int(sample.seed),
      "options": task_options(sample), **rt.task.sample_meta()})  # before any sampling
  state = _restore(rt, latest)
  samples = rt.sampler()(state.eval_params, state.model_state, int(sample.num), int(sample.seed))
  if jax.process_index() == 0:
    out = write_samples(samples, directory, meta)
    logging.info("%d samples of step %d written to %s", int(sample.num), latest, out)
    if rt.task.writes_sample_files():
      rt.task.write_sample_files(rt.task.task_params(mesh_lib.to_host(state.eval_params)),
                                 mesh_lib.to_host(state.model_state), samples, out, meta)
  return state


def _eval_only(rt: _Runtime, latest: int | None) -> TrainState:
  latest = _chosen_step(rt, latest, "eval")
  state = _restore(rt, latest)
  rt.evaluate(state, latest)
  return state


def _train(rt: _Runtime, latest: int | None) -> TrainState:
  config = rt.config
  total = int(config.total_steps)
  log_every = max(1, int(config.log_every))
  eval_every = int(config.eval_every)
  ckpt_every = int(config.checkpoint_every)

  train_iter = rt.train_iter
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
      make_train_step(rt.task, rt.update),
      in_shardings=(rt.state_sharding, mesh_lib.batch_sharding(rt.mesh)),
      out_shardings=(rt.state_sharding, mesh_lib.replicated(rt.mesh)),
      donate_argnums=(0,))

  # The host runs ahead of the devices, but by at most `ahead` steps: blocking on an older step's
  # metrics keeps the device queue full while bounding queued work (XLA:CPU collectives over many
  # fake devices can deadlock when thousands of steps are queued).
  ahead = max(1, int(config.get("max_steps_ahead", 4)))
  inflight: collections.deque[jax.Array] = collections.deque()
  progress = Progress(step, total)
  compiling = FirstCall("the train step")
  pending: list[dict[str, jax.Array]] = []
  skipped_seen = 0
  last_saved = latest
  with Interruption() as interruption:
    while step < total:
      batch = mesh_lib.global_batch(next(train_iter), rt.mesh)
      first = not compiling.done
      state, metrics = compiling(train_step, state, batch)  # asynchronous after the first
      step += 1
      if first:  # the rates and the ETA count the steps after the compiled first one only
        progress.restart(step)
      pending.append(metrics)
      inflight.append(jax.tree.leaves(metrics)[0])
      if len(inflight) > ahead:
        inflight.popleft().block_until_ready()

      if interruption.stop_at(step):  # SIGTERM / SIGINT: this step is the last one
        rt.save(step, state, train_iter)
        rt.checkpoints.wait()
        rt.writer.flush()
        raise Interrupted(step, interruption.signum)

      if step % log_every == 0 or step == total:
        scalars = _average(pending)  # the only per-interval host sync
        pending = []
        counters = rt.optimizer_scalars(state, step)
        scalars.update(counters)
        scalars["steps_per_sec"] = progress.report(step, scalars)
        rt.writer.write(step, scalars)
        skipped = {k: int(v) for k, v in counters.items() if "/skipped_" in k}
        if sum(skipped.values()) > skipped_seen:
          logging.warning("skipped bad updates so far: %s",
                          ", ".join(f"{k}={v}" for k, v in sorted(skipped.items()) if v))
          skipped_seen = sum(skipped.values())

      if step < total and rt.due(step):
        rt.evaluate(state, step, "step")
      if (ckpt_every > 0 and step % ckpt_every == 0) or step == total:
        rt.save(step, state, train_iter)
        last_saved = step

  if last_saved != total:  # e.g. total_steps lowered below an existing checkpoint
    logging.warning("checkpoint step %s is beyond total_steps=%d; nothing trained", latest, total)
  rt.evaluate(state, step, "final")
  rt.checkpoints.wait()
  rt.writer.flush()
  return state
