"""The contract between an experiment and the one training runtime.

An experiment module in ``experiments/tasks/NAME.py`` subclasses :class:`Task` and
hands an instance to :func:`collage.train.loop.run`. The runtime owns everything that
is not model-specific: the device mesh, sharding, the optimizer update (clipping,
skipping of bad updates, EMA), the loop, logging, checkpoints and resumption. A task
owns its data, its parameters, its loss and its artifacts.

All methods that the runtime jits (``init_params``, ``loss_fn``, ``eval_fn``) must be
pure functions of their array arguments: the runtime traces them once.
"""

from __future__ import annotations

import abc
from typing import Any, Iterator, Mapping

import jax
import ml_collections

Params = Any  # a pytree of arrays, e.g. ``nnx.split(model)[1]`` (an ``nnx.State``)
Batch = Mapping[str, Any]  # dict of arrays, leading axis = batch
Metrics = dict[str, jax.Array]  # scalar metrics, averaged over the global batch


class Task(abc.ABC):
  """What an experiment gives the runtime.

  Attributes:
    config: the experiment's (locked) ``ConfigDict``.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  # -- data ---------------------------------------------------------------------
  @abc.abstractmethod
  def dataset(self, split: str, *, seed: int, process_index: int,
              process_count: int, batch_size: int) -> Iterator[Batch]:
    """An iterator over this process's share of the data, already batched.

    Args:
      split: "train" or "eval".
      seed: the run's data seed.
      process_index, process_count: this process's place in a multi-process job;
        the iterator yields only this process's share of every global batch.
      batch_size: rows per yielded batch on this process (global batch / process count).

    Returns:
      For "train": an infinite iterator whose position the runtime checkpoints, so it
      must be a ``grain`` iterator (``get_state`` / ``set_state``). For "eval": any
      finite iterable of batches (re-created for every evaluation).
    """

  # -- model ----------------------------------------------------------------------
  @abc.abstractmethod
  def init_params(self, rng: jax.Array) -> Params:
    """The initial trainable parameters (a pytree of arrays)."""

  @abc.abstractmethod
  def loss_fn(self, params: Params, batch: Batch, rng: jax.Array) -> tuple[jax.Array, Metrics]:
    """Scalar loss to minimise, and metrics to log. ``batch`` is the global batch."""

  def eval_fn(self, params: Params, batch: Batch, rng: jax.Array) -> Metrics:
    """Metrics on one eval batch (averaged over eval batches by the runtime)."""
    _, metrics = self.loss_fn(params, batch, rng)
    return metrics

  def make_train_step(self, tx, config):
    """Optional: a custom ``train_step(state, batch) -> (state, metrics)`` (unjitted).

    Return ``None`` (the default) to use the runtime's step: the gradient of
    :meth:`loss_fn` then :func:`collage.train.step.apply_gradients`. A task with an
    unusual update (a GAN's alternating generator and discriminator steps) returns its
    own pure step here and calls ``apply_gradients`` itself, so clipping, skipping and
    EMA behave the same everywhere. The runtime jits it once, like the default.
    """
    del tx, config
    return None

  # -- outputs --------------------------------------------------------------------
  def write_artifacts(self, params: Params, step: int, workdir: str) -> None:
    """Write human-readable outputs (PNGs, tables, plots) under ``workdir/artifacts``.

    Called on process 0 only, at every evaluation and at the end of training, with the
    parameters to show (the EMA parameters when EMA is on). Host-side code is fine here.
    """
    del params, step, workdir
