"""VDVAE and Collage-VDVAE on the one runtime: the negative ELBO, bits/dim, prior samples.

Config: ``experiments/configs/vdvae.py`` (its docstring is the launch command). The network is
``collage.nn.vdvae.VDVAE`` through the NNX bridge. Train metrics (batch means): ``loss`` (the
negative ELBO, nats/dim), ``bpd``, ``distortion_bpd``, ``rate_bpd`` (bits/dim). Eval metrics
are the same per image, so ``eval/bpd`` is the exact mean over the eval split.

Sampling (``--mode sample`` and the artifacts): options ``temperature`` (the prior's standard
deviation multiplier) and ``scale`` (Collage-VDVAE: decode the same latents at ``scale`` times
the training resolution). Artifacts: ``WORKDIR/artifacts/samples_STEP.png``, a grid of
``artifact_samples`` prior samples at ``sample.temperature`` and ``sample.scale``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from collage.data import images
from collage.data.pipeline import make_image_dataset
from collage.nn.bridge import ModuleBridge
from collage.nn.vdvae import VDVAE, VDVAEConfig, init_rngs
from collage.train import loop
from collage.train.task import Task

LN2 = math.log(2.0)


def model_config(config: ml_collections.ConfigDict) -> VDVAEConfig:
  """The architecture named by ``config.model`` (checked: a bad block string names its token)."""
  return VDVAEConfig(**config.model.to_dict())


def sample_options(options: dict[str, Any], cfg: VDVAEConfig) -> tuple[float, int]:
  """(temperature, scale) from the task's sampling options.

  Raises:
    ValueError: a negative temperature, a scale below 1, or a scale other than 1 for the pixel
      head.
  """
  temperature = float(options.get("temperature", 1.0))
  scale = options.get("scale", 1)
  if temperature < 0:
    raise ValueError(f"sample.temperature must be >= 0, got {temperature}")
  if isinstance(scale, bool) or int(scale) != scale or int(scale) < 1:
    raise ValueError(f"sample.scale must be a positive integer, got {scale!r}")
  if int(scale) != 1 and cfg.head != "collage":
    raise ValueError(f"sample.scale={scale}: only Collage-VDVAE (model.head=collage) samples at "
                     "another resolution; VDVAE (model.head=pixels) samples at scale 1")
  return temperature, int(scale)


class VDVAETask(Task):
  """Trains :class:`collage.nn.vdvae.VDVAE` by the ELBO; samples from its prior."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.model_cfg = model_config(config)
    self.bridge = ModuleBridge(nnx.eval_shape(lambda: VDVAE(self.model_cfg,
                                                            rngs=init_rngs(0))))
    self._artifact_sampler = None

  # -- data -----------------------------------------------------------------------------------
  def dataset(self, split, *, seed, process_index, process_count, batch_size):
    c = self.config.data
    source = c.source if split == "train" or not c.eval_source else c.eval_source
    return make_image_dataset(source, split=split, crop_size=self.model_cfg.image_size,
                              batch_size=batch_size, seed=seed, process_index=process_index,
                              process_count=process_count, augment=False,
                              channels=self.model_cfg.channels, data_dir=c.data_dir or None)

  def batch_spec(self, batch_size):
    """``{"image": float32 [batch_size, S, S, C]}`` in [0, 1]: the train batch (no mask)."""
    s, ch = self.model_cfg.image_size, self.model_cfg.channels
    return {"image": jax.ShapeDtypeStruct((int(batch_size), s, s, ch), jnp.float32)}

  # -- model ----------------------------------------------------------------------------------
  def init_params(self, rng):
    return self.bridge.params(VDVAE(self.model_cfg, rngs=init_rngs(rng)))

  def _elbo(self, params, batch, rng) -> dict[str, jax.Array]:
    x = batch["image"]
    return self.bridge.merge(params)(x, jax.random.split(rng, x.shape[0]))

  def loss_fn(self, params, batch, rng):
    out = self._elbo(params, batch, rng)
    loss = jnp.mean(out["elbo"])
    return loss, {"bpd": loss / LN2, "distortion_bpd": jnp.mean(out["distortion"]) / LN2,
                  "rate_bpd": jnp.mean(out["rate"]) / LN2}

  def eval_fn(self, params, model_state, batch, rng):
    """Per image [B]: the negative ELBO in bits/dim and its two terms."""
    del model_state
    out = self._elbo(params, batch, rng)
    return {"bpd": out["elbo"] / LN2, "distortion_bpd": out["distortion"] / LN2,
            "rate_bpd": out["rate"] / LN2}

  # -- sampling -------------------------------------------------------------------------------
  def sample(self, params, model_state, keys, options):
    del model_state
    temperature, scale = sample_options(dict(options), self.model_cfg)
    return {"image": self.bridge.merge(params).sample(keys, temperature, scale)}

  # -- artifacts ------------------------------------------------------------------------------
  def write_artifacts(self, params, model_state, step, workdir):
    del model_state
    num = int(self.config.artifact_samples)
    if num <= 0:
      return
    from collage.train.sampling import task_options  # pylint: disable=g-import-not-at-top
    options = task_options(self.config.get("sample", None))
    if self._artifact_sampler is None:
      self._artifact_sampler = jax.jit(lambda p, k: self.sample(p, {}, k, options)["image"])
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(
        jnp.arange(num))
    imgs = np.asarray(self._artifact_sampler(jax.tree.map(jnp.asarray, params), keys))
    out = os.path.join(workdir, "artifacts")
    os.makedirs(out, exist_ok=True)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    images.save_png(os.path.join(out, f"samples_{step}.png"), images.captioned(
        images.image_grid(imgs), f"prior samples at step {step} (EMA parameters); {shown}"))


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> Any:
  return loop.run(VDVAETask(config), config, workdir, mode)
