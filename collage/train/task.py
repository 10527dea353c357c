"""The contract between an experiment and the one training runtime.

An experiment module ``experiments/tasks/NAME.py`` subclasses :class:`Task` and hands an instance
to :func:`collage.train.loop.run`. The runtime owns everything that is not model-specific: the
mesh, sharding, each network's optimizer (clipping, skipping of bad updates, EMA), the loop,
evaluators, sampling, logging, checkpoints and resumption. A task owns its data, its networks'
parameters, its losses, its sampler, the extra files of its draws and its artifacts.

A single-network task implements ``dataset``, ``init_params`` and ``loss_fn``; its functions
see that network's parameters directly::

    class Regression(Task):
      def init_params(self, rng):
        return {"w": jax.random.normal(rng, (4, 1))}
      def loss_fn(self, params, batch, rng):
        mse = jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)
        return mse, {"mse": mse}

A task with several networks names them, returns their parameters as a dict and writes its own
train step; ``update(state, name, grads)`` is one network's optimizer update (the others do not
move: no momentum drift, no weight decay, no EMA tick), and the runtime advances the step once::

    class Gan(Task):
      networks = ("generator", "discriminator")   # config.optimizers.generator.*, ...
      def init_params(self, rng):
        kg, kd = jax.random.split(rng)
        return {"generator": init_g(kg), "discriminator": init_d(kd)}
      def train_step(self, state, batch, rng, update):
        kd, kg = jax.random.split(rng)
        g, d = state.params["generator"], state.params["discriminator"]
        grads, m_d = jax.grad(d_loss, has_aux=True)(d, g, batch, kd)
        state, u_d = update(state, "discriminator", grads)
        grads, m_g = jax.grad(g_loss, has_aux=True)(g, state.params["discriminator"], kg)
        state, u_g = update(state, "generator", grads)
        return state, {**m_d, **m_g, **u_d, **u_g}
      def sample(self, params, model_state, keys, options):   # --mode sample
        z = jax.vmap(lambda k: jax.random.normal(k, (8,)))(keys)
        return {"image": generate(params["generator"], z)}

Model state that is not trained by gradient (spectral-norm or batch statistics) comes from
:meth:`init` and is returned, updated, by :meth:`loss_with_state` or a task's own ``train_step``
(``state.replace(model_state=...)``); it is checkpointed with everything else.
``collage.nn.bridge`` turns a Flax NNX module into (params, model state) and back.

Everything the runtime jits (``init``, ``train_step``, ``eval_fn``, ``sample``) must be a pure
function of its array arguments: it is traced once.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

import jax
import ml_collections

Params = Any  # a pytree of arrays (one network's), or {network name: pytree} for several
ModelState = Any  # a pytree of arrays that is not trained by gradient; {} when there is none
Batch = Mapping[str, Any]  # dict of arrays, leading axis = batch
Metrics = dict[str, jax.Array]  # scalar metrics (train), or per-example [B] / scalars (eval)
# update(state, network name, grads) -> (state, metrics): one network's optimizer update.
Update = Callable[[Any, str, Any], tuple[Any, Metrics]]


class Task:
  """What an experiment gives the runtime.

  Attributes:
    networks: the names of the trained networks; each has its own optimizer block
      (``config.optimizer`` for a single network, else ``config.optimizers.NAME``).
    config: the experiment's (locked) ``ConfigDict``.
  """

  networks: tuple[str, ...] = ("model",)

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  # -- data -----------------------------------------------------------------------------------
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
      For "train": an infinite iterator whose position the runtime checkpoints, so it must be a
      ``grain`` iterator (``get_state`` / ``set_state``). For "eval": any finite iterable of
      batches (re-created for every evaluation); a padded last batch carries ``mask`` [B]
      (1 for real rows), so evaluators count its real rows only.
    """
    raise NotImplementedError(f"{type(self).__name__} has no dataset()")

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """The shapes and dtypes of one global train batch of ``batch_size`` rows, as
    ``dataset("train", ...)`` yields them, from the config alone (no data is read): what
    ``--mode plan`` compiles the train step for."""
    raise NotImplementedError(
        f"{type(self).__name__} does not declare its batch shapes (Task.batch_spec), so its "
        "train step cannot be planned without reading data")

  # -- parameters and model state -------------------------------------------------------------
  def init_params(self, rng: jax.Array) -> Params:
    """The initial parameters: one network's pytree, or ``{name: pytree}`` for several."""
    raise NotImplementedError(f"{type(self).__name__} implements neither init_params nor init")

  def init(self, rng: jax.Array) -> tuple[dict[str, Params], ModelState]:
    """``({network name: parameters}, model state)``; override for a task with model state."""
    return self.network_params(self.init_params(rng)), {}

  def task_params(self, params: Mapping[str, Params]) -> Params:
    """``{name: params}`` as the task's functions take them: bare for a single network."""
    return params[self.networks[0]] if len(self.networks) == 1 else dict(params)

  def network_params(self, params: Params) -> dict[str, Params]:
    """The inverse of :meth:`task_params`: parameters as the task's functions take them ->
    ``{network name: parameters}``, as the runtime (and a ``Sampler``) takes them."""
    return {self.networks[0]: params} if len(self.networks) == 1 else dict(params)

  # -- losses and the train step --------------------------------------------------------------
  def loss_fn(self, params: Params, batch: Batch, rng: jax.Array) -> tuple[jax.Array, Metrics]:
    """Scalar loss to minimise, and metrics to log. ``batch`` is the global batch."""
    raise NotImplementedError(f"{type(self).__name__} has no loss_fn")

  def loss_with_state(self, params: Params, model_state: ModelState, batch: Batch,
                      rng: jax.Array) -> tuple[jax.Array, Metrics, ModelState]:
    """``(loss, metrics, new model state)``; the default is :meth:`loss_fn`, state unchanged."""
    loss, metrics = self.loss_fn(params, batch, rng)
    return loss, metrics, model_state

  def train_step(self, state: Any, batch: Batch, rng: jax.Array,
                 update: Update) -> tuple[Any, Metrics]:
    """One train step: the default takes the gradient of :meth:`loss_with_state` for the one
    network and applies it with ``update``. A task with several networks overrides this; the
    runtime advances ``state.step`` afterwards, once.

    Args:
      state: the :class:`collage.train.state.TrainState`.
      batch: the global batch.
      rng: this step's key (``fold_in(run key, step)``).
      update: ``update(state, name, grads) -> (state, metrics)``.
    """
    if len(self.networks) != 1:
      raise NotImplementedError(
          f"{type(self).__name__} trains {len(self.networks)} networks "
          f"({', '.join(self.networks)}): it must define its own train_step")
    name = self.networks[0]

    def loss(p):
      value, metrics, model_state = self.loss_with_state(p, state.model_state, batch, rng)
      return value, (metrics, model_state)

    (value, (metrics, model_state)), grads = jax.value_and_grad(loss, has_aux=True)(
        state.params[name])
    state, update_metrics = update(state.replace(model_state=model_state), name, grads)
    return state, {"loss": value, **metrics, **update_metrics}

  # -- evaluation and sampling ----------------------------------------------------------------
  def eval_fn(self, params: Params, model_state: ModelState, batch: Batch,
              rng: jax.Array) -> Metrics:
    """Metrics on one eval batch, for the "loss" evaluator.

    Each value is either per example, shape [B] (rows with ``mask`` 0 are not counted), or a
    scalar that is already the mean over the batch's real rows. The evaluator's result is the
    exact mean over all real rows of the eval split. The default is :meth:`loss_with_state`'s
    metrics (scalars).
    """
    _, metrics, _ = self.loss_with_state(params, model_state, batch, rng)
    return metrics

  def eval_summary(self, means: Mapping[str, float]) -> dict[str, float]:
    """Metrics derived from the exact means (e.g. PSNR of the mean MSE); default: none."""
    del means
    return {}

  def sample(self, params: Params, model_state: ModelState, keys: jax.Array,
             options: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Draws one sample per key (``--mode sample`` and the "samples" evaluator).

    Args:
      params: the parameters to sample with (each network's EMA where it has one).
      model_state: the model state.
      keys: [N, 2] uint32, one key per sample; a sample must depend only on its own key, so that
        samples do not depend on how many devices share the work.
      options: ``config.sample`` without ``num``, ``seed`` and ``batch_size``: the task's own
        sampling options (temperature, resolution scale, conditioning inputs), as Python values.

    Returns:
      ``{name: [N, ...] array}``; ``"image"`` [N, H, W, C] in [0, 1] is also written as PNGs.
    """
    raise NotImplementedError(f"{type(self).__name__} has no sampler")

  def sample_meta(self) -> dict[str, Any]:
    """Settings outside ``config.sample`` that change what ``--mode sample`` draws (e.g. a
    conditioning mode set at the top of the config). They are written in the draw's
    ``options.json``, so a draw with other settings never overwrites an earlier one; default:
    none."""
    return {}

  @classmethod
  def can_sample(cls) -> bool:
    """Whether the task defines :meth:`sample`."""
    return cls.sample is not Task.sample

  @classmethod
  def writes_sample_files(cls) -> bool:
    """Whether the task defines :meth:`write_sample_files` (the runtime copies a draw's
    parameters to the host only for one that does)."""
    return cls.write_sample_files is not Task.write_sample_files

  # -- outputs --------------------------------------------------------------------------------
  def write_sample_files(self, params: Params, model_state: ModelState,
                         samples: Mapping[str, Any], directory: str,
                         meta: Mapping[str, Any]) -> None:
    """Writes the task's own files of one ``--mode sample`` draw into its ``directory``
    (``DIR/samples/STEP[-NAME]``), after the runtime has written its files there (PNGs,
    ``grid.png``, ``samples.npz``, ``options.json``): e.g. each sample as a ``.jpg``, or a poster
    rendered outside the jitted sampler.

    Called on process 0 only, once per draw, with host (numpy) copies of the parameters the draw
    used (each network's EMA where it has one) and of the model state, the draw's samples
    ``{name: [num, ...] numpy}`` and its ``meta`` (what ``options.json`` holds: ``step``,
    ``num``, ``seed``, ``options`` (the task's sampling options) and :meth:`sample_meta`'s
    settings). The default writes nothing.
    """
    del params, model_state, samples, directory, meta

  def write_artifacts(self, params: Params, model_state: ModelState, step: int,
                      workdir: str) -> None:
    """Write human-readable outputs (PNGs, tables, plots) under ``workdir/artifacts``.

    Called on process 0 only, at every evaluation and at the end of training, with host (numpy)
    copies of the parameters to show (each network's EMA where it has one) and the model state.
    """
    del params, model_state, step, workdir
