"""What a run builds before it touches data or a checkpoint: the optimizers, the keys and the
state's shapes and shardings. Training, evaluation, sampling and ``--mode plan`` share it."""

from __future__ import annotations

import jax
import ml_collections
from jax.sharding import Mesh

from collage.train import mesh as mesh_lib
from collage.train.optimizer import learning_rate_schedule, make_optimizer, network_blocks
from collage.train.state import TrainState, create_state
from collage.train.step import NetworkUpdate
from collage.train.task import Task

_EVAL_SALT = 0x6576616C  # "eval": separates the eval key stream from the training one


def run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(init key, step key, eval key) from the run's seed; raw uint32 keys, checkpointable."""
  root = jax.random.PRNGKey(seed)
  init_key, step_key = jax.random.split(root)
  return init_key, step_key, jax.random.fold_in(root, _EVAL_SALT)


class StateSetup:
  """One optimizer per network, the run's keys, and the train state as shapes.

  Attributes:
    optimizers, schedules: ``{network: optax transformation / learning-rate schedule}``.
    update: the :class:`NetworkUpdate` the train step applies.
    init_key, step_key, eval_key: the run's keys (:func:`run_keys`).
    abstract_state: the :class:`TrainState` as ``jax.ShapeDtypeStruct`` leaves carrying their
      (replicated) sharding: nothing is allocated to build it.
    state_sharding: the state's shardings, for ``jax.jit``.
    init_state: jitted ``() -> TrainState``, placed on the mesh (allocates when called).
  """

  def __init__(self, task: Task, config: ml_collections.ConfigDict, mesh: Mesh):
    total = int(config.total_steps)
    networks = tuple(task.networks)
    blocks = network_blocks(config, networks)
    self.optimizers = {n: make_optimizer(b, total) for n, b in blocks.items()}
    self.schedules = {n: learning_rate_schedule(b, total) for n, b in blocks.items()}
    ema_decays = {n: float(b.ema_decay) for n, b in blocks.items() if float(b.ema_decay) > 0}
    self.update = NetworkUpdate(self.optimizers, ema_decays)
    self.init_key, self.step_key, self.eval_key = run_keys(int(config.seed))

    def init() -> TrainState:
      params, model_state = task.init(self.init_key)
      if sorted(params) != sorted(networks):
        raise ValueError(f"{type(task).__name__}.init returned parameters for "
                         f"{sorted(params)}, but its networks are {list(networks)}")
      return create_state(params, model_state, self.optimizers, self.step_key,
                          tuple(ema_decays))

    rep = mesh_lib.replicated(mesh)
    shapes = jax.eval_shape(init)
    self.state_sharding = jax.tree.map(lambda _: rep, shapes)
    self.abstract_state = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), shapes)
    self.init_state = jax.jit(init, out_shardings=self.state_sharding)
