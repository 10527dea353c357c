"""DCTransformer: train, evaluate and sample autoregressive models of sparse JPEG coefficients.

Data: every image (embedded digits padded to 32x32, crops of photographs, an image folder, a
tfds dataset) becomes libjpeg's quantized coefficients at ``data.quality`` (through ``jpeglib``;
``data.transform = "jax"`` uses the in-JAX transform instead) and then the sparse sequence of
``collage.ops.sparse_dct``. ``data.source = "jpegs:PATH"`` reads a folder of JPEG files as the
coefficients they store, without decoding (crops of whole 16x16 / 8x8 cells; the files should
use ``data.quality``'s tables, which decode the samples). The loss is the chunked negative log-likelihood in nats per element.

Eval (exact means over the eval set): ``nll_bits`` (bits per image of the whole sequence, chunk
by chunk), ``jpeg_bits`` (the same coefficients entropy-coded by libjpeg with optimized Huffman
tables, headers excluded), ``elements`` (sequence length); summary ``saving`` = 1 - nll / jpeg.

Sampling (``--mode sample``, ``config.sample``: ``temperature``, ``top_p``, ``use_cache``,
``input_image``): unconditional, or with ``condition = "upsample"`` (the DC of every block of the
input image is the prefix: 8x upsampling) or ``"colorize"`` (its luma is the prefix). Each sample
is written as a PNG by the runtime and, by this task's ``write_sample_files``, as a real baseline
``.jpg`` next to it. Images become sequences through ``collage.data.dct_coords``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from collage import images
from collage.data import jpeg_coefficients as jc
from collage.data.dct_coords import Coder, fit_components, fit_image, prefix_of, train_element
from collage.data.pipeline import EpochShuffle
from collage.data.sources import open_source
from collage.nn import dct_sampler
from collage.nn import dctransformer as dct_model
from collage.nn.bridge import ModuleBridge
from collage.ops import sparse_dct
from collage.train import loop
from collage.train.sampling import local_sampler, task_options
from collage.train.task import Task

CONDITIONS = ("none", "upsample", "colorize")
# The artifacts' samples: unconditional settings, whatever config.sample says.
ARTIFACT_OPTIONS = {"temperature": 1.0, "top_p": 1.0, "use_cache": True, "input_image": ""}
LN2 = float(np.log(2.0))


# -- grain pipelines ------------------------------------------------------------------------------

def _stack(elements):
  return {k: np.stack([e[k] for e in elements]) for k in elements[0]}


def _condition_ranks(condition: str, layout: sparse_dct.Layout) -> int:
  if condition == "upsample":
    return layout.dc_ranks()
  if condition == "colorize":
    if not layout.color or layout.order != "luma_first":
      raise ValueError("condition='colorize' needs colour images (data.channels=3) and "
                       "model.order='luma_first'")
    return layout.luma_channels
  return 0


class DCTransformerTask(Task):
  """Trains :class:`collage.nn.dctransformer.DCTransformer` on one image source."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.coder = Coder(config)
    layout = self.coder.layout
    if config.condition not in CONDITIONS:
      raise ValueError(f"condition={config.condition!r} is unknown; valid: {', '.join(CONDITIONS)}")
    self.condition_ranks = _condition_ranks(str(config.condition), layout)
    m = config.model
    if int(m.max_len) % int(m.chunk):
      raise ValueError(f"model.max_len ({m.max_len}) must be a multiple of model.chunk "
                       f"({m.chunk})")
    self.model_cfg = dct_model.DCTConfig(
        channels=layout.channels, positions=layout.positions, max_value=int(m.max_value),
        chunk=int(m.chunk), dim=int(m.dim), heads=int(m.heads), mlp_ratio=int(m.mlp_ratio),
        encoder_layers=int(m.encoder_layers), decoder_layers=int(m.decoder_layers),
        dtype=str(m.dtype), param_dtype=str(m.param_dtype), remat=str(m.remat))
    self._artifact_sampler = None
    self.bridge = ModuleBridge(nnx.eval_shape(
        lambda: dct_model.DCTransformer(self.model_cfg, rngs=nnx.Rngs(0))))

  # -- data -----------------------------------------------------------------------------------
  def source(self, split: str):
    """The images (or JPEG files) of ``split`` that ``config.data.source`` names."""
    source = str(self.config.data.source)
    if source.startswith("jpegs:"):
      return jc.JpegFolderSource(source[len("jpegs:"):])
    return open_source(str(self.config.data.source), split=split,
                       channels=int(self.config.data.channels))

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """One train batch of ``batch_size`` sequences: {"ranks", "positions", "values": int32
    [B, L], "length": int32 [B]} with L = ``model.max_len`` (what ``dataset("train")``
    yields; the chunk index is drawn inside the loss)."""
    seq = jax.ShapeDtypeStruct((batch_size, self.coder.capacity), jnp.int32)
    return {"ranks": seq, "positions": seq, "values": seq,
            "length": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}

  @functools.lru_cache(maxsize=1)
  def eval_elements(self) -> list[dict[str, np.ndarray]]:
    """The eval set: central crops of the first ``data.eval_images`` eval images, as
    sequences with their libjpeg size in bits."""
    src = self.source("eval")
    n = min(len(src), int(self.config.data.eval_images))
    out = []
    for i in range(n):
      element = src[i]
      if "components" in element:
        comps = fit_components(element, self.coder, None)
        bits = 8.0 * jc.entropy_coded_bytes(comps, element["tables"])
        out.append({**self.coder.sequence_of(comps), "jpeg_bits": np.float32(bits)})
        continue
      image = fit_image(np.asarray(element["image"]), self.coder.size, None)
      out.append({**self.coder.sequence(image), "jpeg_bits": np.float32(self.coder.jpeg_bits(image))})
    return out

  def dataset(self, split, *, seed, process_index, process_count, batch_size):
    if split == "train":
      shuffle_seed, augment_seed = (int(s) for s in
                                    np.random.SeedSequence(seed).generate_state(2))
      ds = grain.MapDataset.source(EpochShuffle(self.source("train"), shuffle_seed))
      ds = ds.random_map(functools.partial(train_element, coder=self.coder,
                                           flip=bool(self.config.data.flip)), seed=augment_seed)
      ds = ds[process_index::process_count].batch(batch_size, drop_remainder=True,
                                                  batch_fn=_stack)
      return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)))
    elements = self.eval_elements()
    global_batch = batch_size * process_count
    n = len(elements)
    padded = -(-n // global_batch) * global_batch
    rows = [dict(elements[i % n], mask=np.float32(i < n)) for i in range(padded)]
    rows = rows[process_index::process_count]
    return [_stack(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]

  # -- model ----------------------------------------------------------------------------------
  def model(self, params) -> dct_model.DCTransformer:
    return self.bridge.merge(params)

  def init_params(self, rng):
    return self.bridge.params(dct_model.DCTransformer(self.model_cfg, rngs=nnx.Rngs(params=rng)))

  @staticmethod
  def _seq(batch) -> dict[str, jax.Array]:
    return {k: batch[k] for k in ("ranks", "positions", "values", "length")}

  def loss_fn(self, params, batch, rng):
    """Mean negative log-likelihood (nats per element) of one random chunk per sequence."""
    seq = self._seq(batch)
    chunks = -(-seq["length"] // self.model_cfg.chunk)  # chunks that hold real entries
    k = jax.random.randint(rng, chunks.shape, 0, jnp.maximum(chunks, 1))
    logp, mask = dct_model.chunk_logprobs(self.model(params), seq, k, self.coder.layout)
    loss = -jnp.sum(logp) / jnp.maximum(jnp.sum(mask), 1.0)
    return loss, {"nll_bits_per_element": loss / LN2}

  def eval_fn(self, params, model_state, batch, rng):
    """Per image: the whole sequence's NLL in bits, libjpeg's bits, and the length."""
    del model_state, rng
    seq = self._seq(batch)
    nll = -dct_model.sequence_logprob(self.model(params), seq, self.coder.layout) / LN2
    return {"nll_bits": nll, "jpeg_bits": batch["jpeg_bits"],
            "elements": seq["length"].astype(jnp.float32)}

  def eval_summary(self, means):
    return {"saving": 1.0 - means["nll_bits"] / means["jpeg_bits"],
            "nll_bits_per_element": means["nll_bits"] / means["elements"]}

  # -- sampling -------------------------------------------------------------------------------
  def condition_prefix(self, input_image: str) -> dict[str, np.ndarray] | None:
    """The conditioning prefix: from ``input_image`` (a path), else the first eval image."""
    if not self.condition_ranks:
      if input_image:
        raise ValueError("sample.input_image is set but condition='none'; use a config with "
                         "condition 'upsample' or 'colorize'")
      return None
    if input_image:
      if not os.path.exists(input_image):
        raise FileNotFoundError(f"sample.input_image {input_image!r} does not exist")
      pixels = images.to_channels(images.load_image(input_image), int(self.config.data.channels))
      seq = self.coder.sequence(fit_image(pixels, self.coder.size, None))
    else:
      seq = {k: v for k, v in self.eval_elements()[0].items() if k != "jpeg_bits"}
    return prefix_of(seq, self.condition_ranks, self.coder.layout.channels)

  def sample(self, params, model_state, keys, options):
    del model_state
    prefix = self.condition_prefix(str(options.get("input_image", "")))
    n = keys.shape[0]
    if prefix is not None:
      prefix = {k: jnp.broadcast_to(jnp.asarray(v), (n,) + np.shape(v)) for k, v in prefix.items()}
    out = dct_sampler.generate(self.model(params), keys, self.coder.layout, self.coder.capacity,
                               prefix=prefix, temperature=float(options.get("temperature", 1.0)),
                               top_p=float(options.get("top_p", 1.0)),
                               use_cache=bool(options.get("use_cache", True)))
    dct = jax.vmap(lambda s: sparse_dct.decode(s, self.coder.layout))(
        {k: out[k] for k in ("ranks", "positions", "values")})
    result = {"image": jax.vmap(self.coder.pixels)(dct), "dct": dct, **out}
    if prefix is not None:
      cond = jax.vmap(lambda s: sparse_dct.decode(s, self.coder.layout))(
          {k: prefix[k] for k in ("ranks", "positions", "values")})
      result["condition"] = jax.vmap(self.coder.pixels)(cond)
    return result

  def write_jpegs(self, dct: np.ndarray, directory: str) -> None:
    """Writes each DCT image of ``dct`` [N, rows, cols, C] as ``directory/NNNNN.jpg`` (8x8
    blocks only: other block sizes are not JPEG files, and nothing is written)."""
    if self.coder.block != 8:
      return
    for i, image in enumerate(dct):
      self.coder.write_jpeg(os.path.join(directory, f"{i:05d}.jpg"), image)

  def write_sample_files(self, params, model_state, samples, directory, meta):
    """Each sample of a draw also as a real baseline ``.jpg``, next to its PNG."""
    del params, model_state, meta
    self.write_jpegs(samples["dct"], directory)

  # -- artifacts ------------------------------------------------------------------------------
  def sample_meta(self):
    """The conditioning mode: an upsampling draw must not overwrite an unconditional one."""
    return {"condition": str(self.config.condition)}

  def write_artifacts(self, params, model_state, step, workdir):
    """``artifacts/samples_STEP/``: a few samples (``ARTIFACT_OPTIONS``, seed 0) as PNGs, .jpg
    files and a grid."""
    num = int(self.config.artifact_samples)
    if num <= 0:
      return
    if self._artifact_sampler is None:
      options = {**task_options(self.config.get("sample", None)), **ARTIFACT_OPTIONS}
      self._artifact_sampler = local_sampler(self, options, num)
    out = self._artifact_sampler(self.network_params(params), model_state, num, 0)
    directory = os.path.join(workdir, "artifacts", f"samples_{step}")
    os.makedirs(directory, exist_ok=True)
    for i, image in enumerate(out["image"]):
      images.save_png(os.path.join(directory, f"{i:05d}.png"), image)
    self.write_jpegs(out["dct"], directory)
    images.save_png(os.path.join(directory, "grid.png"), images.captioned(
        images.image_grid(out["image"]), f"unconditional samples at step {step} (temperature "
        "1, top_p 1, cached sampler)"))


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> Any:
  return loop.run(DCTransformerTask(config), config, workdir, mode)
