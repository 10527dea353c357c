"""Neural Collage compression: train the hypernetwork codec model on random image crops.

Loss (entropy coding, Ballé et al. 2018): ``bpp + lam * 255**2 * MSE`` with the rate of the
noisy parameters under the learned entropy model (the factorized prior, or the context model
with ``model.context_model``, whose contexts come from the rounded code) and the distortion of
the straight-through quantized decode. Baseline (``coding = "bitpack"``, the regularizer of
Poli et al. 2022): ``lam * 255**2 * MSE + l2 * mean(raw**2)`` at a fixed number of bits per
value.
Variable rate (``model.rate_lams``, :class:`collage.nn.neural_collage.ModelConfig`): every crop draws
a continuous level ``t ~ U[0, L - 1]`` and is scored at its own lam ``exp(interp(log
rate_lams, t))``; ``lam`` is unused. Eval then reports every integer level (``psnr_lJ``,
``bpp_lJ``). ``init_from`` may name a fixed-rate model of the same architecture: its steps and
pmfs start every level.

Artifacts (``WORKDIR/artifacts``): ``model/`` (the exported model: ``model.json`` +
``params.npz``, loadable by ``collage.codec.neural`` via ``model=PATH``), ``recon_STEP.png``
(eight eval crops: originals on top, decodes below, a row per level of a variable-rate model)
and ``recon_STEP.json`` (those crops' MSE, ideal bpp and PSNR; the logged ``eval/*`` metrics
are exact means over ``eval_batches`` batches).
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

from collage import images
from collage.data.pipeline import make_image_dataset
from collage.metrics.distortion import psnr_from_mse
from collage.metrics.rd import rd_cost
from collage.nn import neural_collage as hn
from collage.nn import neural_collage_io
from collage.nn import precision
from collage.nn.bridge import ModuleBridge
from collage.train import loop
from collage.train.task import Task


PRECISION_KEYS = ("dtype", "param_dtype", "remat")


def check_precision(model: ml_collections.ConfigDict) -> None:
  """``model.dtype`` / ``param_dtype`` / ``remat`` of the codec trainer: float32 and none only.

  The hypernetwork is the shipped codec's model: its files must decode byte for byte on every
  machine, so it computes in float32 at inference, and training it in another dtype would
  train a model other than the one the codec runs. Its train step is small
  (``compress.py:full`` at batch 32: 27 MB per device, ``--mode plan``), so it needs neither
  bfloat16 nor recomputation to fit 16 GB.

  Raises:
    ValueError: any other setting, saying why.
  """
  precision.param_dtype(str(model.get("param_dtype", "float32")))
  dtype = str(model.get("dtype", "float32"))
  precision.compute_dtype(dtype)  # an unknown name: the list of valid ones
  if dtype != "float32":
    raise ValueError(f"model.dtype={dtype!r}: the codec trainer computes in float32 only; the "
                     "hypernetwork is the shipped codec's model, whose files must decode bit-"
                     "exactly in float32, and its train step fits 16 GB without bfloat16")
  remat = precision.check_remat(str(model.get("remat", "none")))
  if remat != "none":
    raise ValueError(f"model.remat={remat!r}: the codec trainer has no recomputation (its "
                     "train step fits 16 GB without it); valid: none")


def model_config(config: ml_collections.ConfigDict) -> hn.ModelConfig:
  """The ``ModelConfig`` described by ``config.model`` (its precision fields checked and
  left out: the hypernetwork is float32 throughout)."""
  check_precision(config.model)
  d = {k: v for k, v in config.model.to_dict().items() if k not in PRECISION_KEYS}
  for k in ("luma_domain", "luma_stride", "chroma_domain", "chroma_stride"):
    d[k] = None if int(d[k]) <= 0 else int(d[k])
  for k in ("luma_isometries", "chroma_isometries"):
    d[k] = tuple(int(v) for v in str(d[k]).split(",") if v.strip())
  d["rate_lams"] = tuple(float(v) for v in str(d.get("rate_lams", "")).split(",") if v.strip())
  return hn.ModelConfig(**d)


class CompressTask(Task):
  """Trains :class:`collage.nn.neural_collage.NeuralCollage` for one rate-distortion trade-off."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.model_cfg = model_config(config)
    if int(config.data.crop) != self.model_cfg.tile:
      raise ValueError(f"data.crop ({config.data.crop}) must equal model.tile "
                       f"({self.model_cfg.tile}): the model encodes one tile per crop")
    self.bridge = ModuleBridge(neural_collage_io.abstract_model(self.model_cfg))

  # -- data -----------------------------------------------------------------------------
  def dataset(self, split, *, seed, process_index, process_count, batch_size):
    c = self.config.data
    source = c.source if split == "train" or not c.eval_source else c.eval_source
    return make_image_dataset(source, split=split, crop_size=int(c.crop), batch_size=batch_size,
                              seed=seed, process_index=process_index,
                              process_count=process_count, channels=3)

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """One train batch: {"image": float32 [B, crop, crop, 3]} in [0, 1]."""
    crop = int(self.config.data.crop)
    return {"image": jax.ShapeDtypeStruct((batch_size, crop, crop, 3), jnp.float32)}

  # -- model ----------------------------------------------------------------------------
  def _model(self, params) -> hn.NeuralCollage:
    return self.bridge.merge(params)

  def init_params(self, rng):
    if self.config.init_from:
      # A fixed-rate model starts every level of a variable-rate one; a factorized prior
      # starts a context model.
      model, _ = neural_collage_io.load_model(self.config.init_from, self.model_cfg.rate_lams,
                                        self.model_cfg.context_model)
      if model.cfg != self.model_cfg:
        raise ValueError(f"init_from={self.config.init_from!r} has architecture {model.cfg}, "
                         f"but this config asks for {self.model_cfg}")
    else:
      model = hn.NeuralCollage(self.model_cfg, rngs=nnx.Rngs(params=rng))
    return self.bridge.params(model)

  def loss_fn(self, params, batch, rng):
    model = self._model(params)
    x = batch["image"]
    if model.levels:  # a level per crop, scored at its own lam
      level_rng, rng = jax.random.split(rng)
      level = jax.random.uniform(level_rng, x.shape[:1], maxval=float(model.levels - 1))
      m = model.losses(x, rng, level)
      loss = jnp.mean(rd_cost(m["tile_bpp"], m["tile_mse"], model.level_lam(level)))
    elif self.model_cfg.coding == "entropy":
      m = model.losses(x, rng)
      loss = rd_cost(m["bpp"], m["mse"], float(self.config.lam))
    else:  # the paper's baseline: a fixed rate, so the L2 magnitude penalty stands in for it
      m = model.losses(x, rng)
      loss = rd_cost(float(self.config.l2) * m["l2"], m["mse"], float(self.config.lam))
    return loss, {"loss": loss, "bpp": m["bpp"], "mse": m["mse"], "psnr": psnr_from_mse(m["mse"]),
                  "l2": m["l2"], "y_abs": m["y_abs"]}

  def decode_metrics(self, model: hn.NeuralCollage, x: jax.Array, level: float | None = None
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The codec's hard-quantized decode of crops x [B, T, T, 3] (at rate ``level`` for a
    variable-rate model), and per crop its MSE and ideal code length in bits per pixel
    ({"mse": [B], "bpp": [B]})."""
    lv = None if level is None else jnp.full(x.shape[:1], level, jnp.float32)
    q = model.quantize(model.analyse(x, lv))
    x_hat = jnp.clip(model.synthesise(q, 3, level=lv), 0.0, 1.0)
    pix = x.shape[1] * x.shape[2]
    if self.model_cfg.coding == "entropy":
      bpp_i = jnp.sum(model.bits(q, lv), axis=-1) / pix
    else:
      bpp_i = jnp.full(x.shape[:1], q.shape[-1] * self.model_cfg.bitpack_bits / pix)
    return x_hat, {"mse": jnp.mean((x_hat - x) ** 2, axis=(1, 2, 3)), "bpp": bpp_i}

  def eval_fn(self, params, model_state, batch, rng):
    """Per crop: MSE of the codec's decode and the ideal code length (exact means over the set)."""
    del model_state, rng
    return {k + suffix: v for suffix, _, per_crop in self._decodes(self._model(params),
                                                                  batch["image"])
            for k, v in per_crop.items()}

  def _decodes(self, model: hn.NeuralCollage, x: jax.Array):
    """:meth:`decode_metrics` once, or at every level of a variable-rate model: yields (key
    suffix: "" or "_lJ", decode, per-crop metrics)."""
    for j in range(model.levels) if model.levels else [None]:
      x_hat, per_crop = self.decode_metrics(model, x, None if j is None else float(j))
      yield ("" if j is None else f"_l{j}"), x_hat, per_crop

  def eval_summary(self, means):
    """PSNR of the mean MSE over the eval crops (of every level of a variable-rate model)."""
    return {k.replace("mse", "psnr"): float(psnr_from_mse(v)) for k, v in means.items()
            if k.startswith("mse")}

  # -- artifacts --------------------------------------------------------------------------
  def write_artifacts(self, params, model_state, step, workdir):
    del model_state
    out = os.path.join(workdir, "artifacts")
    os.makedirs(out, exist_ok=True)
    model = self._model(jax.tree.map(jnp.asarray, params))
    meta = {"step": int(step), "source": str(self.config.data.source)}
    if not model.levels:  # a variable-rate model's lams are in its config
      meta |= {"lam": float(self.config.lam), "l2": float(self.config.l2)}
    neural_collage_io.save_model(model, os.path.join(out, "model"), meta)
    try:
      batch = next(iter(self.dataset("eval", seed=0, process_index=0, process_count=1,
                                     batch_size=8)))
    except (StopIteration, ValueError):
      return
    x = jnp.asarray(batch["image"])
    rows, m = [np.asarray(x)], {}
    for suffix, x_hat, per_crop in self._decodes(model, x):  # a row per rate level
      rows.append(np.asarray(x_hat))
      m |= {k + suffix: float(jnp.mean(v)) for k, v in per_crop.items()}
    m |= self.eval_summary(m)
    grid = images.image_grid(np.concatenate(rows), columns=x.shape[0], pad=0)
    images.save_png(os.path.join(out, f"recon_{step}.png"), grid)
    # The numbers of the crops in recon_STEP.png (not the logged eval/*, which average the
    # config.eval_batches eval batches).
    with open(os.path.join(out, f"recon_{step}.json"), "w") as f:
      json.dump({"crops": int(x.shape[0])} | m | meta, f, indent=1)


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> Any:
  return loop.run(CompressTask(config), config, workdir, mode)
