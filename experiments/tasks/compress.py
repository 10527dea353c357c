"""Neural Collage compression: train the hypernetwork codec model on random image crops.

Loss (entropy coding, Ballé et al. 2018): ``bpp + lam * 255**2 * MSE`` with the rate from the
learned factorized prior of noisy parameters and the distortion of the straight-through
quantized decode. Baseline (``coding = "bitpack"``, the regularizer of Poli et al. 2022):
``lam * 255**2 * MSE + l2 * mean(raw**2)`` at a fixed number of bits per value.

Artifacts (``WORKDIR/artifacts``): ``model/`` (the exported model: ``model.json`` +
``params.npz``, loadable by ``collage.codec.neural`` via ``model=PATH``), ``recon_STEP.png``
(eight eval crops: originals on top, decodes below) and ``recon_STEP.json`` (those crops' MSE,
ideal bpp and PSNR; the logged ``eval/*`` metrics are exact means over ``eval_batches`` batches).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from collage.data import images
from collage.data.pipeline import make_image_dataset
from collage.metrics.distortion import psnr_from_mse
from collage.metrics.rd import rd_cost
from collage.nn import hypernet as hn
from collage.nn import hypernet_io
from collage.nn.bridge import ModuleBridge
from collage.train import loop
from collage.train.task import Task


def model_config(config: ml_collections.ConfigDict) -> hn.ModelConfig:
  """The ``ModelConfig`` described by ``config.model``."""
  d = dict(config.model.to_dict())
  for k in ("luma_domain", "luma_stride", "chroma_domain", "chroma_stride"):
    d[k] = None if int(d[k]) <= 0 else int(d[k])
  for k in ("luma_isometries", "chroma_isometries"):
    d[k] = tuple(int(v) for v in str(d[k]).split(",") if v.strip())
  return hn.ModelConfig(**d)


class CompressTask(Task):
  """Trains :class:`collage.nn.hypernet.NeuralCollage` for one rate-distortion trade-off."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.model_cfg = model_config(config)
    if int(config.data.crop) != self.model_cfg.tile:
      raise ValueError(f"data.crop ({config.data.crop}) must equal model.tile "
                       f"({self.model_cfg.tile}): the model encodes one tile per crop")
    self.bridge = ModuleBridge(hypernet_io.abstract_model(self.model_cfg))

  # -- data -----------------------------------------------------------------------------
  def dataset(self, split, *, seed, process_index, process_count, batch_size):
    c = self.config.data
    source = c.source if split == "train" or not c.eval_source else c.eval_source
    return make_image_dataset(source, split=split, crop_size=int(c.crop), batch_size=batch_size,
                              seed=seed, process_index=process_index,
                              process_count=process_count, channels=3)

  # -- model ----------------------------------------------------------------------------
  def _model(self, params) -> hn.NeuralCollage:
    return self.bridge.merge(params)

  def init_params(self, rng):
    if self.config.init_from:
      model, _ = hypernet_io.load_model(self.config.init_from)
      if model.cfg != self.model_cfg:
        raise ValueError(f"init_from={self.config.init_from!r} has architecture {model.cfg}, "
                         f"but this config asks for {self.model_cfg}")
    else:
      model = hn.NeuralCollage(self.model_cfg, rngs=nnx.Rngs(params=rng))
    return self.bridge.params(model)

  def loss_fn(self, params, batch, rng):
    model = self._model(params)
    m = model.losses(batch["image"], rng)
    if self.model_cfg.coding == "entropy":
      loss = rd_cost(m["bpp"], m["mse"], float(self.config.lam))
    else:  # the paper's baseline: a fixed rate, so the L2 magnitude penalty stands in for it
      loss = rd_cost(float(self.config.l2) * m["l2"], m["mse"], float(self.config.lam))
    return loss, {"loss": loss, "bpp": m["bpp"], "mse": m["mse"], "psnr": psnr_from_mse(m["mse"]),
                  "l2": m["l2"], "y_abs": m["y_abs"]}

  def decode_metrics(self, model: hn.NeuralCollage, x: jax.Array
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The codec's hard-quantized decode of crops x [B, T, T, 3], and per crop its MSE and
    ideal code length in bits per pixel ({"mse": [B], "bpp": [B]})."""
    q = model.quantize(model.analyse(x))
    x_hat = jnp.clip(model.synthesise(q, 3), 0.0, 1.0)
    pix = x.shape[1] * x.shape[2]
    if self.model_cfg.coding == "entropy":
      bits = model.prior.bits(q, jnp.asarray(model.layout.slots))
      bpp_i = jnp.sum(bits, axis=-1) / pix
    else:
      bpp_i = jnp.full(x.shape[:1], q.shape[-1] * self.model_cfg.bitpack_bits / pix)
    return x_hat, {"mse": jnp.mean((x_hat - x) ** 2, axis=(1, 2, 3)), "bpp": bpp_i}

  def eval_fn(self, params, model_state, batch, rng):
    """Per crop: MSE of the codec's decode and the ideal code length (exact means over the set)."""
    del model_state, rng
    return self.decode_metrics(self._model(params), batch["image"])[1]

  def eval_summary(self, means):
    """PSNR of the mean MSE over the eval crops."""
    return {"psnr": float(psnr_from_mse(means["mse"]))}

  # -- artifacts --------------------------------------------------------------------------
  def write_artifacts(self, params, model_state, step, workdir):
    del model_state
    out = os.path.join(workdir, "artifacts")
    os.makedirs(out, exist_ok=True)
    model = self._model(jax.tree.map(jnp.asarray, params))
    meta = {"lam": float(self.config.lam), "l2": float(self.config.l2), "step": int(step),
            "source": str(self.config.data.source)}
    hypernet_io.save_model(model, os.path.join(out, "model"), meta)
    try:
      batch = next(iter(self.dataset("eval", seed=0, process_index=0, process_count=1,
                                     batch_size=8)))
    except (StopIteration, ValueError):
      return
    x = jnp.asarray(batch["image"])
    x_hat, per_crop = self.decode_metrics(model, x)
    m = {k: float(jnp.mean(v)) for k, v in per_crop.items()}
    m |= self.eval_summary(m)
    grid = images.image_grid(np.concatenate([np.asarray(x), np.asarray(x_hat)]),
                             columns=x.shape[0], pad=0)
    images.save_png(os.path.join(out, f"recon_{step}.png"), grid)
    # The numbers of the crops in recon_STEP.png (not the logged eval/*, which average the
    # config.eval_batches eval batches).
    with open(os.path.join(out, f"recon_{step}.json"), "w") as f:
      json.dump({"crops": int(x.shape[0])} | m | meta, f, indent=1)


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> Any:
  return loop.run(CompressTask(config), config, workdir, mode)
