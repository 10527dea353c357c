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
is written as a PNG by the runtime and, here, as a real baseline ``.jpg`` next to it.
"""

from __future__ import annotations

import functools
import glob
import os
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from collage.data import images
from collage.data import jpeg_coefficients as jc
from collage.data.pipeline import EpochShuffle
from collage.data.sources import open_source
from collage.nn import dctransformer as dct_model
from collage.nn.bridge import ModuleBridge
from collage.ops import jpeg as jpeg_ops
from collage.ops import sparse_dct
from collage.train import loop
from collage.train.task import Task

CONDITIONS = ("none", "upsample", "colorize")
TRANSFORMS = ("libjpeg", "jax")
LN2 = float(np.log(2.0))


# -- images -> sequences ------------------------------------------------------------------------

def fit_image(image: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
  """uint8 [h, w, c] -> [size, size, c]: zero-padded (centred) where smaller, cropped (random
  with ``rng``, else central) where larger."""
  h, w = image.shape[:2]
  ph, pw = max(0, size - h), max(0, size - w)
  if ph or pw:
    image = np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    h, w = image.shape[:2]
  if rng is None:
    top, left = (h - size) // 2, (w - size) // 2
  else:
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
  return np.ascontiguousarray(image[top:top + size, left:left + size])


class Coder:
  """Turns 8-bit images into the model's sequences, and sequences back into files and pixels."""

  def __init__(self, config: ml_collections.ConfigDict):
    d, m = config.data, config.model
    self.size, self.channels = int(d.size), int(d.channels)
    self.quality = jpeg_ops.check_quality(int(d.quality))
    self.block = jpeg_ops.check_block(int(d.block))
    if d.transform not in TRANSFORMS:
      raise ValueError(f"data.transform={d.transform!r} is unknown; valid: {', '.join(TRANSFORMS)}")
    if d.transform == "libjpeg" and self.block != 8:
      raise ValueError(f"data.transform='libjpeg' needs data.block=8 (JPEG files hold 8x8 "
                       f"blocks); use data.transform='jax' for block {self.block}")
    self.transform = d.transform
    jpeg_ops.check_shape(self.size, self.size, self.channels, self.block)
    self.layout = sparse_dct.layout_for(self.size, self.size, self.channels == 3, self.block,
                                        str(m.order))
    self.capacity, self.max_value = int(m.max_len), int(m.max_value)
    self.truncate, self.clip_values = bool(m.truncate), bool(m.clip_values)
    self._jax_encode = jax.jit(functools.partial(jpeg_ops.encode_pixels, quality=self.quality,
                                                 block=self.block))

  def tables(self) -> tuple[np.ndarray, ...]:
    """The quantization tables [B*B] zig-zag, per component."""
    n = 3 if self.channels == 3 else 1
    return tuple(jpeg_ops.quant_zigzag(self.quality, i > 0, self.block) for i in range(n))

  def components(self, pixels: np.ndarray) -> tuple[np.ndarray, ...]:
    """uint8 [size, size, channels] -> the quantized components (libjpeg's or the in-JAX)."""
    if self.transform == "libjpeg":
      comps, tables = jc.coefficients_from_pixels(pixels, self.quality)
      if any(not np.array_equal(a, b) for a, b in zip(tables, self.tables())):
        raise ValueError("libjpeg used other quantization tables than collage.ops.jpeg's")
      return comps
    with jax.ensure_compile_time_eval():
      return tuple(np.asarray(c) for c in self._jax_encode(pixels))

  def sequence(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 image -> {"ranks", "positions", "values": [L], "length": []} (host arrays, also
    when called while a sampler is being traced)."""
    return self.sequence_of(self.components(pixels))

  def sequence_of(self, components) -> dict[str, np.ndarray]:
    """Quantized components -> the sequence (host arrays)."""
    with jax.ensure_compile_time_eval():
      image = np.asarray(sparse_dct.dct_image(components))
    seq = sparse_dct.encode(image, self.layout, self.capacity, truncate=self.truncate,
                            max_value=self.max_value, clip_values=self.clip_values)
    seq.pop("truncated")
    return seq

  def jpeg_bits(self, pixels: np.ndarray) -> float:
    """Bits of libjpeg's optimized-Huffman coding of the image's coefficients (no headers)."""
    return 8.0 * jc.entropy_coded_bytes(self.components(pixels), self.tables())

  def pixels(self, dct_image: jax.Array) -> jax.Array:
    """A DCT image [rows, cols, C] -> float [size, size, channels] in [0, 1] (jnp)."""
    comps = sparse_dct.components_of(dct_image, self.channels == 3)
    tables = tuple(jpeg_ops.quant_table(self.quality, i > 0, self.block)
                   for i in range(len(comps)))
    return jpeg_ops.decode_pixels(comps, tables=tables)

  def write_jpeg(self, path: str, dct_image: np.ndarray) -> None:
    """A DCT image as a baseline .jpg (8x8 blocks only)."""
    comps = sparse_dct.components_of(np.asarray(dct_image), self.channels == 3)
    jc.write_jpeg(path, [np.asarray(c) for c in comps], self.tables())


# -- grain pipelines ------------------------------------------------------------------------------

def fit_components(element: dict[str, Any], coder: Coder, rng: np.random.Generator | None):
  """A JPEG file's components cropped to ``data.size`` in whole cells (random with ``rng``)."""
  comps = element["components"]
  if (len(comps) == 3) != (coder.channels == 3):
    raise ValueError(f"{element['name']}: a {'colour' if len(comps) == 3 else 'gray'} JPEG, "
                     f"but data.channels={coder.channels}")
  rows, cols = coder.layout.grid
  cell = 2 if len(comps) == 3 else 1
  have_r, have_c = comps[0].shape[0] // cell, comps[0].shape[1] // cell
  if have_r < rows or have_c < cols:
    raise ValueError(f"{element['name']}: {8 * cell * have_r}x{8 * cell * have_c} pixels of "
                     f"whole cells, smaller than data.size={coder.size}")
  if rng is None:
    top, left = (have_r - rows) // 2, (have_c - cols) // 2
  else:
    top, left = int(rng.integers(0, have_r - rows + 1)), int(rng.integers(0, have_c - cols + 1))
  return jc.crop_cells(comps, top, left, rows, cols)


def _train_element(element: dict[str, Any], rng: np.random.Generator, *, coder: Coder,
                   flip: bool) -> dict[str, np.ndarray]:
  if "components" in element:  # a JPEG file's own coefficients
    return coder.sequence_of(fit_components(element, coder, rng))
  image = fit_image(np.asarray(element["image"]), coder.size, rng)
  if flip and rng.random() < 0.5:
    image = np.ascontiguousarray(image[:, ::-1])
  return coder.sequence(image)


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


def prefix_of(seq: dict[str, np.ndarray], ranks: int, channels: int) -> dict[str, np.ndarray]:
  """The conditioning prefix of a sequence: its entries with rank < ``ranks`` (a prefix,
  since entries are rank-major); ``length`` counts them."""
  n = int(np.sum((seq["ranks"] < ranks) & (np.arange(len(seq["ranks"])) < seq["length"])))
  out = {k: np.array(seq[k]) for k in ("ranks", "positions", "values")}
  out["ranks"][n:], out["positions"][n:], out["values"][n:] = channels, 0, 0
  out["length"] = np.int32(n)
  return out


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
    self.bridge = ModuleBridge(nnx.eval_shape(
        lambda: dct_model.DCTransformer(self.model_cfg, rngs=nnx.Rngs(0))))

  # -- data -----------------------------------------------------------------------------------
  def _source(self, split: str):
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
    src = self._source("eval")
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
      ds = grain.MapDataset.source(EpochShuffle(self._source("train"), shuffle_seed))
      ds = ds.random_map(functools.partial(_train_element, coder=self.coder,
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
    out = dct_model.generate(self.model(params), keys, self.coder.layout, self.coder.capacity,
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

  def write_jpegs(self, directory: str) -> int:
    """Writes NNNNN.jpg next to every NNNNN.png of a sample directory (8x8 blocks only)."""
    path = os.path.join(directory, "samples.npz")
    if self.coder.block != 8 or not os.path.exists(path):
      return 0
    with np.load(path) as f:
      dct = f["dct"]
    for i, image in enumerate(dct):
      self.coder.write_jpeg(os.path.join(directory, f"{i:05d}.jpg"), image)
    return len(dct)

  # -- artifacts ------------------------------------------------------------------------------
  def sample_meta(self):
    """The conditioning mode: an upsampling draw must not overwrite an unconditional one."""
    return {"condition": str(self.config.condition)}

  def write_artifacts(self, params, model_state, step, workdir):
    """``artifacts/samples_STEP/``: a few samples as PNGs, .jpg files and a grid."""
    num = int(self.config.artifact_samples)
    if num <= 0:
      return
    params = jax.tree.map(jnp.asarray, params)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(num))
    opts = {"temperature": 1.0, "top_p": 1.0, "use_cache": True, "input_image": ""}
    out = jax.jit(lambda p, k: self.sample(p, model_state, k, opts))(params, keys)
    out = jax.tree.map(np.asarray, out)
    directory = os.path.join(workdir, "artifacts", f"samples_{step}")
    os.makedirs(directory, exist_ok=True)
    for i, image in enumerate(out["image"]):
      images.save_png(os.path.join(directory, f"{i:05d}.png"), image)
      if self.coder.block == 8:
        self.coder.write_jpeg(os.path.join(directory, f"{i:05d}.jpg"), out["dct"][i])
    images.save_png(os.path.join(directory, "grid.png"), images.captioned(
        images.image_grid(out["image"]), f"unconditional samples at step {step} (temperature "
        "1, top_p 1, cached sampler)"))


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> Any:
  """Runs the task; after ``--mode sample`` also writes each sample as a .jpg."""
  task = DCTransformerTask(config)
  state = loop.run(task, config, workdir, mode)
  if mode == "sample" and jax.process_index() == 0:
    for directory in sorted(glob.glob(os.path.join(workdir, "samples", "*"))):
      task.write_jpegs(directory)
  return state
