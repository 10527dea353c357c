"""A tiny GAN for the runtime's tests: two networks, model state, a sampler, a padded eval set.

The data are 4x4 grayscale "bars": one of 8 images (a lit row or column) plus seeded noise.
The generator maps z [8] to an image; the discriminator has spectral-normalized layers, whose
power-iteration vectors are model state (updated on the discriminator's sub-step only). Each
train step updates the discriminator, then the generator (non-saturating loss).
"""

from __future__ import annotations

import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from collage.nn.bridge import ModuleBridge
from collage.train import loop
from collage.train.mesh import to_host
from collage.train.task import Task

SIDE, Z = 4, 8
N_TRAIN, N_EVAL = 64, 20  # N_EVAL is not a multiple of the eval batch: the last batch is padded


def bars() -> np.ndarray:
  """The 8 modes [8, 4, 4, 1]: each row lit, then each column lit."""
  modes = np.zeros((2 * SIDE, SIDE, SIDE, 1), np.float32)
  for i in range(SIDE):
    modes[i, i, :, 0] = 1.0
    modes[SIDE + i, :, i, 0] = 1.0
  return modes


def _examples(n: int, seed: int) -> list[dict[str, np.ndarray]]:
  rng = np.random.default_rng(seed)
  modes = bars()
  return [{"image": modes[k]} for k in rng.integers(0, len(modes), n)]


def _noise(example, rng: np.random.Generator):
  noise = 0.05 * rng.normal(size=example["image"].shape).astype(np.float32)
  return {"image": np.clip(example["image"] + noise, 0.0, 1.0)}


class Generator(nnx.Module):
  """z [B, 8] -> images [B, 4, 4, 1] in (0, 1)."""

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(Z, 32, rngs=rngs)
    self.out = nnx.Linear(32, SIDE * SIDE, rngs=rngs)

  def __call__(self, z):
    return jax.nn.sigmoid(self.out(jax.nn.relu(self.hidden(z)))).reshape(-1, SIDE, SIDE, 1)


class Discriminator(nnx.Module):
  """images [B, 4, 4, 1] -> logits [B]; spectral norm on both layers (model state: u, sigma)."""

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.SpectralNorm(nnx.Linear(SIDE * SIDE, 32, rngs=rngs), rngs=rngs)
    self.out = nnx.SpectralNorm(nnx.Linear(32, 1, rngs=rngs), rngs=rngs)

  def __call__(self, x, update_stats: bool):
    h = jax.nn.leaky_relu(self.hidden(x.reshape(x.shape[0], -1), update_stats=update_stats), 0.2)
    return self.out(h, update_stats=update_stats)[:, 0]


class GanTask(Task):
  """Non-saturating GAN on the bars; EMA of the generator only (see gan_config.py)."""

  networks = ("generator", "discriminator")

  def __init__(self, config):
    super().__init__(config)
    self.gen = ModuleBridge(nnx.eval_shape(lambda: Generator(nnx.Rngs(0))))
    self.disc = ModuleBridge(nnx.eval_shape(lambda: Discriminator(nnx.Rngs(0))))

  # -- data -----------------------------------------------------------------------------------
  def dataset(self, split, *, seed, process_index, process_count, batch_size):
    global_batch = batch_size * process_count
    lo, hi = process_index * batch_size, (process_index + 1) * batch_size
    if split == "train":
      ds = grain.MapDataset.source(_examples(N_TRAIN, 1)).seed(seed).shuffle().repeat(None)
      ds = ds.random_map(_noise).batch(global_batch, drop_remainder=True)
      delay = float(self.config.slow_data_s)

      def share(b):
        if delay:
          import time  # pylint: disable=import-outside-toplevel
          time.sleep(delay)
        return {k: v[lo:hi] for k, v in b.items()}

      return iter(ds.map(share).to_iter_dataset(
          grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))
    images = np.stack([e["image"] for e in _examples(N_EVAL, 2)])
    batches = []
    for start in range(0, N_EVAL, global_batch):
      chunk = images[start:start + global_batch]
      real = len(chunk)
      pad = np.zeros((global_batch - real,) + chunk.shape[1:], np.float32)
      mask = (np.arange(global_batch) < real).astype(np.float32)
      batches.append({"image": np.concatenate([chunk, pad])[lo:hi], "mask": mask[lo:hi]})
    return batches

  # -- networks -------------------------------------------------------------------------------
  def init(self, rng):
    kg, kd = jax.random.split(rng)
    g_params, _ = self.gen.split(Generator(nnx.Rngs(kg)))
    d_params, d_state = self.disc.split(Discriminator(nnx.Rngs(kd)))
    return {"generator": g_params, "discriminator": d_params}, d_state

  def generate(self, g_params, z):
    return self.gen.merge(g_params)(z)

  def train_step(self, state, batch, rng, update):
    kd, kg = jax.random.split(rng)
    x = batch["image"]
    z_d = jax.random.normal(kd, (x.shape[0], Z))
    z_g = jax.random.normal(kg, (x.shape[0], Z))

    def d_loss(d_params):
      fake = jax.lax.stop_gradient(self.generate(state.params["generator"], z_d))
      disc = self.disc.merge(d_params, state.model_state)
      real_logits = disc(x, update_stats=True)
      fake_logits = disc(fake, update_stats=False)
      loss = jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
      return loss, self.disc.model_state(disc)

    (loss_d, model_state), grads = jax.value_and_grad(d_loss, has_aux=True)(
        state.params["discriminator"])
    state, up_d = update(state.replace(model_state=model_state), "discriminator", grads)

    def g_loss(g_params):
      disc = self.disc.merge(state.params["discriminator"], state.model_state)
      return jnp.mean(jax.nn.softplus(-disc(self.generate(g_params, z_g), update_stats=False)))

    loss_g, grads = jax.value_and_grad(g_loss)(state.params["generator"])
    state, up_g = update(state, "generator", grads)
    return state, {"d_loss": loss_d, "g_loss": loss_g, **up_d, **up_g}

  # -- evaluation and sampling ----------------------------------------------------------------
  def eval_fn(self, params, model_state, batch, rng):
    """Per example: the discriminator's belief that the real image is real, and the distance
    of one generated sample (its key folded from the row index) to its nearest bar."""
    x = batch["image"]
    disc = self.disc.merge(params["discriminator"], model_state)
    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(x.shape[0]))
    fake = self.sample(params, model_state, keys, {"temperature": 1.0})["image"]
    dist = jnp.mean((fake[:, None] - jnp.asarray(bars())[None]) ** 2, axis=(2, 3, 4))
    return {"d_real": jax.nn.sigmoid(disc(x, update_stats=False)), "mode_mse": dist.min(1)}

  def sample(self, params, model_state, keys, options):
    del model_state
    z = jax.vmap(lambda k: jax.random.normal(k, (Z,)))(keys) * float(options["temperature"])
    return {"image": self.generate(params["generator"], z), "z": z}


def run(config, workdir: str, mode: str):
  """Runs the task; also saves the final state's arrays for the tests (process 0 only)."""
  state = loop.run(GanTask(config), config, workdir, mode)
  flat = {}
  for group, tree in (("params", state.params), ("ema", state.ema_params),
                      ("model_state", state.model_state), ("opt", state.opt_state)):
    for path, leaf in jax.tree_util.tree_flatten_with_path(to_host(tree))[0]:
      flat[group + jax.tree_util.keystr(path)] = np.asarray(leaf)
  if jax.process_index() == 0:
    np.savez(os.path.join(workdir, "final_state.npz"), **flat)
  return state
