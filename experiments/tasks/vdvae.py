"""VDVAE and Collage-VDVAE on the one runtime: the negative ELBO, bits/dim, prior samples.

Config: ``experiments/configs/vdvae.py`` (its docstring is the launch command). The network is
``collage.nn.vdvae.VDVAE`` through the NNX bridge. Train metrics (batch means): ``loss`` (the
negative ELBO, nats/dim), ``bpd``, ``distortion_bpd``, ``rate_bpd`` (bits/dim). Eval metrics
are the same per image, so ``eval/bpd`` is the exact mean over the eval split.

Sampling (``--mode sample`` and the artifacts): options ``temperature`` (the prior's standard
deviation multiplier) and ``scale`` (Collage-VDVAE: decode the same latents at ``scale`` times
the training resolution). Artifacts (at each evaluation, when ``artifact_samples`` > 0):
``WORKDIR/artifacts/samples_STEP.png``, a grid of ``artifact_samples`` prior samples at
``sample.temperature`` and ``sample.scale``, drawn by the runtime's sampler; and
``WORKDIR/artifacts/diagnostic_STEP.png``, openai/vdvae's picture: eval images, their
reconstructions from partial posteriors and prior samples at several temperatures
(:meth:`VDVAETask.diagnostic`).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from collage import images
from collage.data.pipeline import make_image_dataset
from collage.nn.bridge import ModuleBridge
from collage.nn.vdvae import VDVAE, VDVAEConfig, init_rngs
from collage.train import loop
from collage.train.sampling import Sampler, local_sampler, task_options
from collage.train.task import Task

LN2 = math.log(2.0)
DIAGNOSTIC_COLUMNS = 8                   # eval images in the diagnostic picture (openai/vdvae: 8)
DIAGNOSTIC_GROUPS = 6                    # its rows of partial-posterior reconstructions (6)
DIAGNOSTIC_REST_TEMPERATURE = 0.1        # the prior's temperature below the posterior's blocks
DIAGNOSTIC_TEMPERATURES = (1.0, 0.9, 0.8)  # its rows of prior samples


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
    self._artifact_samplers: dict[tuple[str, int], Sampler] = {}
    self._reconstruct = None

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
  def _sampler(self, options: dict[str, Any], num: int) -> Sampler:
    """The runtime's sampler on one device for the artifacts, one per options and size."""
    key = (json.dumps(options, sort_keys=True), int(num))
    if key not in self._artifact_samplers:
      self._artifact_samplers[key] = local_sampler(self, options, num)
    return self._artifact_samplers[key]

  def write_artifacts(self, params, model_state, step, workdir):
    """``artifacts/samples_STEP.png`` (``artifact_samples`` prior samples at ``config.sample``'s
    options, seed 0) and ``artifacts/diagnostic_STEP.png`` (:meth:`diagnostic`)."""
    num = int(self.config.artifact_samples)
    if num <= 0:
      return
    options = task_options(self.config.get("sample", None))
    imgs = self._sampler(options, num)(self.network_params(params), model_state, num, 0)["image"]
    out = os.path.join(workdir, "artifacts")
    os.makedirs(out, exist_ok=True)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    images.save_png(os.path.join(out, f"samples_{step}.png"), images.captioned(
        images.image_grid(imgs), f"prior samples at step {step} (EMA parameters); {shown}"))
    images.save_png(os.path.join(out, f"diagnostic_{step}.png"),
                    self.diagnostic(params, model_state, step))

  def diagnostic(self, params, model_state, step: int) -> np.ndarray:
    """openai/vdvae's picture of a model, captioned: N <= ``DIAGNOSTIC_COLUMNS`` eval images
    (columns) and R rows of S x S images without gaps: the images; their reconstructions from
    partial posteriors (the top k decoder blocks' latents from the posterior, the rest from
    the prior at ``DIAGNOSTIC_REST_TEMPERATURE``; k from :func:`posterior_groups`); prior
    samples at each of ``DIAGNOSTIC_TEMPERATURES`` (the runtime's sampler, seed 0, at scale
    1). R = 1 + ``DIAGNOSTIC_GROUPS`` + the temperatures; enlarged by ``images.captioned``,
    whose caption names the rows."""
    batch = next(iter(self.dataset("eval", seed=int(self.config.seed), process_index=0,
                                   process_count=1, batch_size=DIAGNOSTIC_COLUMNS)))
    x = np.asarray(batch["image"], np.float32)
    if "mask" in batch:
      x = x[np.asarray(batch["mask"]) > 0]
    n = len(x)
    blocks = len(self.model_cfg.decoder_layout)
    groups = posterior_groups(blocks, DIAGNOSTIC_GROUPS)
    if self._reconstruct is None:
      def reconstruct(p, images_, keys):
        model = self.bridge.merge(p)
        return jnp.stack([model.reconstruct(images_, keys, k, DIAGNOSTIC_REST_TEMPERATURE)
                          for k in groups])
      self._reconstruct = jax.jit(reconstruct)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(n))
    rows = [x, *np.asarray(self._reconstruct(jax.tree.map(jnp.asarray, params), x, keys))]
    options = task_options(self.config.get("sample", None))
    for t in DIAGNOSTIC_TEMPERATURES:
      sampler = self._sampler({**options, "temperature": t, "scale": 1}, n)
      rows.append(sampler(self.network_params(params), model_state, n, 0)["image"])
    temps = ", ".join(f"{t:g}" for t in DIAGNOSTIC_TEMPERATURES)
    return images.captioned(
        images.image_grid(np.concatenate(rows), columns=n, pad=0),
        f"step {step}, EMA parameters. Rows: eval images; their reconstructions with the top "
        f"k = {', '.join(map(str, groups))} of {blocks} decoder blocks from the posterior (the "
        f"rest from the prior at temperature {DIAGNOSTIC_REST_TEMPERATURE:g}); prior samples "
        f"at temperature {temps}.")


def posterior_groups(blocks: int, rows: int) -> list[int]:
  """How many decoder blocks take the posterior in each of ``rows`` reconstructions: openai/
  vdvae's ``rows`` points evenly spaced strictly inside (0, ``blocks``), rounded down (in
  integers: openai/vdvae's floating-point ``floor(linspace(0, 1, rows + 2) * blocks)`` gives
  4 twice for 7 blocks and 6 rows, 5 * (1/7) * 7 being 4.999...)."""
  return [i * blocks // (rows + 1) for i in range(1, rows + 1)]


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> Any:
  return loop.run(VDVAETask(config), config, workdir, mode)
