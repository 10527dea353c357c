"""MAGIC (Jetchev et al. 2019): set-transformer GAN collages, guided and unguided.

Two networks on the one runtime: the generator (ST-U-Net + warp + set pooling + refinement,
``collage.nn.magic.Generator``) and a PatchGAN discriminator. Each train step updates the
discriminator (cross-entropy GAN loss, real template crops against generated collages), then
the generator:

    L_G = adversarial * softplus(-D(I))                       non-saturating cross entropy
        + content * mean (lowpass(I) - lowpass(I_c))^2         guided only: box-average views
        + entropy * L_E + tv * L_TV + largest * L_M / (H W)    the regularisers on A

(the lambdas are ``config.loss.*``; the content low-pass is ``content_factor`` x
``content_factor`` box averaging, i.e. downsampling). The generator's forward pass is taken once
per step: its output feeds the discriminator's sub-step (without gradient) and its pullback
gives the generator's gradient after the discriminator has moved. With ``microbatches`` > 1
the generator runs on that many slices of the batch in turn (the same update, a fraction of
the activation memory, one more generator forward pass: :meth:`MagicTask.sliced_train_step`).

Evaluation (per example, exact means over ``data.eval_examples`` held-out sets): the content
fidelity ``content_psnr`` (PSNR of the low-pass views of I and I_c), ``dominant`` (share of
pixels with max_k A > 0.9), ``used`` (templates that are the argmax of A on at least 1% of the
pixels), ``tv`` (L_TV), ``entropy`` (L_E), ``largest`` (L_M / (H W)), ``d_real`` / ``d_fake``.

Sampling. ``--mode sample`` draws ``sample.num`` collages of the training crop size, each from
its own key: K templates chosen from a fixed pool of ``sample.pool`` crops of the template
source (and a content crop from a pool, guided), written by the runtime as PNGs of I, plus
``collage`` (I_M), ``weights_rgb`` (A, one colour per template) in samples.npz. The poster, an
image of any size rendered in tiles on the host (``collage.nn.magic_render``), cannot be one
jitted call per key, so the task's ``write_sample_files`` renders it after the runtime has
written the samples, with the same restored (EMA) parameters, into the same
``DIR/samples/STEP/``: ``poster.png`` (I),
``poster_collage.png`` (I_M), ``poster_weights.png`` (A coloured), ``poster_content.png``,
``poster.json`` (metrics, timing). Guided runs always render one (``sample.height`` /
``sample.width`` 0: the content image's size); unguided runs when both are given.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from collage import images
from collage.data import template_sets as ts
from collage.nn import magic as mg
from collage.nn.bridge import ModuleBridge
from collage.nn.magic_render import TiledRenderer, template_colours
from collage.train import loop
from collage.train.task import Task
from collage.train.writer import Progress

USED_SHARE = 0.01      # a template counts as used where it is the argmax on >= 1% of pixels
DOMINANT_WEIGHT = 0.9  # a pixel is dominated by one template where max_k A > 0.9


def model_config(config: ml_collections.ConfigDict) -> mg.MagicConfig:
  """The architecture that ``config.model`` and ``config.data.crop`` describe."""
  return mg.MagicConfig(crop=int(config.data.crop), **config.model.to_dict())


def colour_weights(weights: jax.Array, colours: jax.Array) -> jax.Array:
  """A shown with one colour per template: weights [B, K, H, W], colours [K, 3] -> [B, H, W, 3]."""
  return jnp.einsum("bkhw,kc->bhwc", weights, colours)


def collage_metrics(out: mg.Collage, content: jax.Array | None, factor: int
                    ) -> dict[str, jax.Array]:
  """The per-example measurements of the module docstring ([B] each)."""
  a = out.weights
  hw = a.shape[2] * a.shape[3]
  winners = jax.nn.one_hot(jnp.argmax(a, axis=1), a.shape[1], axis=1)      # [B, K, H, W]
  m = {"dominant": jnp.mean(jnp.max(a, axis=1) > DOMINANT_WEIGHT, axis=(1, 2)),
       "used": jnp.sum(jnp.mean(winners, axis=(2, 3)) >= USED_SHARE, axis=1).astype(jnp.float32),
       "tv": mg.total_variation(a), "entropy": mg.entropy(a),
       "largest": mg.largest_area(a) / hw}
  if content is not None:
    err = jnp.mean((mg.lowpass(out.image, factor) - mg.lowpass(content, factor)) ** 2,
                   axis=(1, 2, 3))
    m["content_mse"] = err
    m["content_psnr"] = -10.0 * jnp.log10(jnp.maximum(err, 1e-10))
  return m


class MagicTask(Task):
  """The MAGIC GAN; see the module docstring."""

  networks = ("generator", "discriminator")

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.cfg = model_config(config)
    d = config.data
    self.crop = (int(d.crop), int(d.crop))
    factor = int(config.loss.content_factor)
    if self.cfg.guided and (factor < 1 or int(d.crop) % factor):
      raise ValueError(f"loss.content_factor={factor} must be >= 1 and divide data.crop="
                       f"{d.crop}")
    self.gen = ModuleBridge(nnx.eval_shape(lambda: mg.Generator(self.cfg, rngs=nnx.Rngs(0))))
    self.disc = ModuleBridge(nnx.eval_shape(lambda: mg.Discriminator(self.cfg, rngs=nnx.Rngs(0))))
    self._content: np.ndarray | None = None

  # -- data -------------------------------------------------------------------------------------
  def content_image(self) -> np.ndarray | None:
    """The training content image (guided), resized as ``data.content_size`` says."""
    if not self.cfg.guided:
      return None
    if self._content is None:
      self._content = ts.load_content(str(self.config.data.content),
                                      int(self.config.data.content_size))
    return self._content

  def sets(self, split: str, seed: int) -> ts.TemplateSets:
    d = self.config.data
    imgs, pad = ts.template_images(str(d.templates), split)
    return ts.TemplateSets(imgs, self.crop, int(d.k_min), int(d.k_max), seed,
                           ts.TRAIN_STREAM if split == "train" else ts.EVAL_STREAM,
                           self.content_image(), pad)

  def dataset(self, split, *, seed, process_index, process_count, batch_size):
    sets = self.sets(split, seed)
    if split == "train":
      return ts.train_iterator(sets, batch_size, process_index, process_count)
    return ts.eval_batches(sets, int(self.config.data.eval_examples), batch_size,
                           process_index, process_count)

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """One global train batch's shapes, as :func:`collage.data.template_sets.train_iterator`
    yields them: templates uint8 [B, K_max, h, w, 3], set_mask float32 [B, K_max], real uint8
    [B, h, w, 3] and (guided) content uint8 [B, h, w, 3]."""
    b, k = int(batch_size), int(self.config.data.k_max)
    image = jax.ShapeDtypeStruct((b, *self.crop, 3), jnp.uint8)
    spec = {"templates": jax.ShapeDtypeStruct((b, k, *self.crop, 3), jnp.uint8),
            "set_mask": jax.ShapeDtypeStruct((b, k), jnp.float32), "real": image}
    if self.cfg.guided:
      spec["content"] = image
    return spec

  @staticmethod
  def inputs(batch) -> tuple[jax.Array, jax.Array | None, jax.Array, jax.Array]:
    """(templates [B, K, h, w, 3], content or None, set_mask [B, K], real [B, h, w, 3]) as
    floats in [0, 1]."""
    f = lambda x: jnp.asarray(x, jnp.float32) / 255.0
    content = f(batch["content"]) if "content" in batch else None
    return f(batch["templates"]), content, jnp.asarray(batch["set_mask"]), f(batch["real"])

  # -- networks ---------------------------------------------------------------------------------
  def init(self, rng):
    kg, kd = jax.random.split(rng)
    g, _ = self.gen.split(mg.Generator(self.cfg, rngs=nnx.Rngs(kg)))
    d, _ = self.disc.split(mg.Discriminator(self.cfg, rngs=nnx.Rngs(kd)))
    return {"generator": g, "discriminator": d}, {}

  def generate(self, g_params, templates, content=None, set_mask=None) -> mg.Collage:
    return self.gen.merge(g_params)(templates, content if self.cfg.guided else None, set_mask)

  def critic(self, d_params, x) -> jax.Array:
    return self.disc.merge(d_params)(x)

  def generator_loss(self, out: mg.Collage, content, d_params):
    """(L_G, metrics) for a generator output; see the module docstring."""
    lam = self.config.loss
    adv = jnp.mean(jax.nn.softplus(-self.critic(d_params, out.image)))
    a = out.weights
    reg = {"entropy": jnp.mean(mg.entropy(a)), "tv": jnp.mean(mg.total_variation(a)),
           "largest": jnp.mean(mg.largest_area(a)) / (a.shape[2] * a.shape[3])}
    loss = float(lam.adversarial) * adv + sum(float(lam[k]) * v for k, v in reg.items())
    metrics = {"g_adv": adv, **reg}
    if self.cfg.guided:
      f = int(lam.content_factor)
      c = jnp.mean((mg.lowpass(out.image, f) - mg.lowpass(content, f)) ** 2)
      loss = loss + float(lam.content) * c
      metrics["content_mse"] = c
    return loss, {"g_loss": loss, **metrics}

  def train_step(self, state, batch, rng, update):
    del rng  # the generator is deterministic given its set; the data carry the randomness
    slices = int(self.config.get("microbatches", 1))
    if slices > 1:
      return self.sliced_train_step(state, batch, update, slices)
    templates, content, set_mask, real = self.inputs(batch)
    out, pullback = jax.vjp(lambda g: self.generate(g, templates, content, set_mask),
                            state.params["generator"])
    fake = jax.lax.stop_gradient(out.image)

    state, m_d, u_d = self.discriminator_step(state, real, fake, update)
    d_params = state.params["discriminator"]
    cotangent, m_g = jax.grad(lambda o: self.generator_loss(o, content, d_params),
                              has_aux=True)(out)
    (grads,) = pullback(cotangent)
    state, u_g = update(state, "generator", grads)
    return state, {**m_d, **m_g, **u_d, **u_g}

  def discriminator_step(self, state, real, fake, update):
    """The discriminator's update on real and (gradient-free) fake images:
    ``(state, its metrics, its update's metrics)``."""
    def d_loss(d_params):
      real_logits, fake_logits = self.critic(d_params, real), self.critic(d_params, fake)
      loss = jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
      return loss, {"d_loss": loss, "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
                    "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}

    grads, m_d = jax.grad(d_loss, has_aux=True)(state.params["discriminator"])
    state, u_d = update(state, "discriminator", grads)
    return state, m_d, u_d

  def sliced_train_step(self, state, batch, update, slices: int):
    """:meth:`train_step` with the generator run on ``slices`` equal slices of the batch, one
    after another (``lax.scan``), so only one slice's activations live at once.

    The same update: the discriminator sees every fake of the batch (a first, gradient-free
    generator pass per slice), then the generator's gradient is the mean of the slices'
    gradients of the per-slice mean losses, which is the gradient of the batch's mean loss. It
    costs one more generator forward pass per step. Slice j holds rows j, j + slices, ...:
    each device's rows split evenly over the slices (no data moves between devices).
    """
    templates, content, set_mask, real = self.inputs(batch)
    rows = templates.shape[0]
    if rows % slices:
      raise ValueError(f"microbatches={slices} does not divide the batch of {rows} sets")
    split = lambda x: jnp.swapaxes(x.reshape(rows // slices, slices, *x.shape[1:]), 0, 1)
    xs = jax.tree.map(split, (templates, content, set_mask))  # [slices, rows/slices, ...]
    g_params = state.params["generator"]
    _, fakes = jax.lax.scan(lambda _, x: (None, self.generate(g_params, *x).image), None, xs)
    fake = jax.lax.stop_gradient(jnp.swapaxes(fakes, 0, 1).reshape(rows, *fakes.shape[2:]))

    state, m_d, u_d = self.discriminator_step(state, real, fake, update)
    d_params = state.params["discriminator"]

    def g_loss(g, x):
      t, c, m = x
      return self.generator_loss(self.generate(g, t, c, m), c, d_params)

    grad_fn = jax.grad(g_loss, has_aux=True)
    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype),
                         jax.eval_shape(grad_fn, g_params, jax.tree.map(lambda a: a[0], xs)))
    total, _ = jax.lax.scan(lambda acc, x: (jax.tree.map(jnp.add, acc, grad_fn(g_params, x)),
                                            None), zeros, xs)
    grads, m_g = jax.tree.map(lambda a: a / slices, total)
    state, u_g = update(state, "generator", grads)
    return state, {**m_d, **m_g, **u_d, **u_g}

  # -- evaluation -------------------------------------------------------------------------------
  def eval_fn(self, params, model_state, batch, rng):
    del model_state, rng
    templates, content, set_mask, real = self.inputs(batch)
    out = self.generate(params["generator"], templates, content, set_mask)
    m = collage_metrics(out, content, int(self.config.loss.content_factor))
    d = params["discriminator"]
    m["d_real"] = jnp.mean(jax.nn.sigmoid(self.critic(d, real)), axis=(1, 2))
    m["d_fake"] = jnp.mean(jax.nn.sigmoid(self.critic(d, out.image)), axis=(1, 2))
    return m

  # -- sampling ---------------------------------------------------------------------------------
  def sample_pool(self, options) -> tuple[np.ndarray, np.ndarray | None]:
    """The fixed pools the per-key samples choose from: template crops uint8 [P, h, w, 3] and
    content crops (guided) uint8 [P, h, w, 3], from the held-out split where there is one."""
    source = str(options.get("templates") or self.config.data.templates)
    if os.path.isdir(source):
      source = "folder:" + source
    imgs, pad = ts.template_images(source, "eval")
    content = self.content_image()
    if self.cfg.guided and options.get("content"):
      content = ts.load_content(str(options["content"]), int(self.config.data.content_size))
    pool = int(options.get("pool", 64))
    sets = ts.TemplateSets(imgs, self.crop, 1, 1, 0, ts.EVAL_STREAM, content, pad)
    rows = [sets[i] for i in range(pool)]
    crops = np.stack([r["templates"][0] for r in rows])
    contents = np.stack([r["content"] for r in rows]) if content is not None else None
    return crops, contents

  def sample(self, params, model_state, keys, options):
    del model_state
    k, pool = int(options.get("k", self.config.data.k_max)), int(options.get("pool", 64))
    if not 1 <= k <= pool:
      raise ValueError(f"sample.k={k} must be in [1, sample.pool={pool}]: the K templates of a "
                       "sample are distinct crops of the pool")
    crops, contents = self.sample_pool(options)
    crops = jnp.asarray(crops, jnp.float32) / 255.0

    def inputs(key):
      kt, kc = jax.random.split(key)
      chosen = crops[jax.random.choice(kt, pool, (k,), replace=False)]
      if contents is None:
        return chosen, jnp.zeros(crops.shape[1:], jnp.float32)
      return chosen, jnp.asarray(contents, jnp.float32)[jax.random.randint(kc, (), 0, pool)] / 255.0

    templates, content = jax.vmap(inputs)(keys)
    out = self.generate(params["generator"], templates, content if self.cfg.guided else None)
    colours = jnp.asarray(template_colours(k, int(options.get("colour_seed", 0))))
    result = {"image": out.image, "collage": out.collage,
              "weights_rgb": colour_weights(out.weights, colours), "weights": out.weights}
    if self.cfg.guided:
      result["content"] = content
    return result

  def write_sample_files(self, params, model_state, samples, directory, meta):
    """The poster of the draw (see the module docstring), rendered with the draw's parameters
    into its directory, when :func:`wants_poster`."""
    del model_state, samples
    options = {"seed": int(meta["seed"]), **meta["options"]}
    if not wants_poster(self, options):
      return
    report = write_poster(self, params["generator"], options, os.path.join(directory, "poster"))
    print(f"poster {report['height']}x{report['width']} written to {directory}/poster*.png "
          f"in {report['seconds']:.1f} s ({report['megapixels_per_second']:.3f} MP/s)")

  # -- artifacts --------------------------------------------------------------------------------
  def write_artifacts(self, params, model_state, step, workdir):
    """artifacts/collage_STEP.png: per held-out set (columns) its content (guided), I_M, A
    coloured and I (rows); at the last step also the poster of ``artifact_poster`` px."""
    del model_state
    out_dir = os.path.join(workdir, "artifacts")
    os.makedirs(out_dir, exist_ok=True)
    params = jax.tree.map(jnp.asarray, params)
    batch = self.dataset("eval", seed=int(self.config.seed), process_index=0, process_count=1,
                         batch_size=min(8, int(self.config.data.eval_examples)))[0]
    templates, content, set_mask, _ = self.inputs(batch)
    out = self.generate(params["generator"], templates, content, set_mask)
    colours = jnp.asarray(template_colours(templates.shape[1]))
    rows = ([content] if content is not None else []) + [
        out.collage, colour_weights(out.weights, colours), out.image]
    grid = images.image_grid(np.concatenate([np.asarray(r) for r in rows]),
                             columns=templates.shape[0])
    images.save_png(os.path.join(out_dir, f"collage_{step}.png"), grid)
    side = int(self.config.artifact_poster)
    if side and step >= int(self.config.total_steps):
      opts = {"k": int(self.config.data.k_max), "height": side, "width": side, "seed": 0,
              "tile": 0, "window": -1, "halo": -1}
      write_poster(self, params["generator"], opts, os.path.join(out_dir, "poster"))


# -- the poster ---------------------------------------------------------------------------------

def poster_inputs(task: MagicTask, options: dict[str, Any]
                  ) -> tuple[np.ndarray, np.ndarray | None]:
  """The poster's set and content: K crops of the canvas size, each from a template image
  drawn at random (seeded), and the content resized to the canvas (float32 in [0, 1])."""
  cfg = task.config
  source = str(options.get("templates") or cfg.data.templates)
  if os.path.isdir(source):
    source = "folder:" + source
  imgs, pad = ts.template_images(source, "eval" if source == "digits" else "train")
  content = None
  h, w = int(options.get("height") or 0), int(options.get("width") or 0)
  if task.cfg.guided:
    full = ts.load_content(str(options.get("content") or cfg.data.content))
    if not h and not w:  # the content image's own size
      h, w = full.shape[:2]
    elif not h:          # one side given: keep the content's aspect ratio
      h = max(1, round(full.shape[0] * w / full.shape[1]))
    elif not w:
      w = max(1, round(full.shape[1] * h / full.shape[0]))
    content = ts.resize(full, h, w).astype(np.float32) / 255.0
  if h < 1 or w < 1:
    raise ValueError(f"poster size {h}x{w}: give sample.height and sample.width (pixels)")
  k = int(options.get("k") or cfg.data.k_max)
  rng = np.random.default_rng([int(options.get("seed", 0)), 0x706F73])  # "pos"
  templates = np.stack([ts.crop_padded(imgs[int(rng.integers(0, len(imgs)))], h, w, rng, pad)
                        for _ in range(k)]).astype(np.float32) / 255.0
  return templates, content


def write_poster(task: MagicTask, g_params, options: dict[str, Any], prefix: str
                 ) -> dict[str, Any]:
  """Renders the poster that ``options`` describes and writes PREFIX.png, PREFIX_collage.png,
  PREFIX_weights.png, PREFIX_content.png (guided) and PREFIX.json; returns the json's dict."""
  templates, content = poster_inputs(task, options)
  generator = task.gen.merge(jax.tree.map(jnp.asarray, g_params))
  renderer = TiledRenderer(generator)
  tile = int(options.get("tile", 256)) or None
  window = int(options.get("window", -1))
  halo = int(options.get("halo", -1))
  k, h, w = templates.shape[:3]
  keep = k * h * w <= 2 ** 27
  start = time.perf_counter()
  progress = None

  def report(done: int, total: int) -> None:  # tiles done / total and an ETA, as training shows
    nonlocal progress
    if progress is None:  # the first tile compiled the tile pass: the rate counts from here
      progress = Progress(done, total, label=f"poster {h}x{w} tile")
    elif done == total or done % max(1, total // 20) == 0:
      progress.report(done, {})

  out = renderer(templates, content, tile=tile, window=None if window < 0 else window,
                 halo=None if halo < 0 else halo, keep_weights=keep,
                 colour_seed=int(options.get("colour_seed", 0)), progress=report)
  seconds = time.perf_counter() - start
  images.save_png(prefix + ".png", out["image"])
  images.save_png(prefix + "_collage.png", out["collage"])
  images.save_png(prefix + "_weights.png", out["weights_rgb"])
  counts = np.bincount(out["argmax"].ravel(), minlength=k) / out["argmax"].size
  report = {"height": h, "width": w, "k": k, "tiles": out["tiles"], "halo": out["halo"],
            "seconds": seconds, "megapixels_per_second": h * w / 1e6 / seconds,
            "dominant": float(np.mean(out["max_weight"] > DOMINANT_WEIGHT)),
            "used": int(np.sum(counts >= USED_SHARE))}
  if keep:
    report["tv"] = float(mg.total_variation(jnp.asarray(out["weights"][None]))[0])
  if content is not None:
    images.save_png(prefix + "_content.png", content)
    f = int(task.config.loss.content_factor)
    hh, ww = h // f * f, w // f * f
    low = lambda x: np.asarray(mg.lowpass(jnp.asarray(x[None, :hh, :ww]), f))
    err = float(np.mean((low(out["image"]) - low(content)) ** 2))
    report["content_psnr"] = -10.0 * float(np.log10(max(err, 1e-10)))
  with open(prefix + ".json", "w", encoding="utf-8") as fh:
    json.dump(report, fh, indent=1, sort_keys=True)
  return report


def wants_poster(task: MagicTask, options: dict[str, Any]) -> bool:
  return task.cfg.guided or (int(options.get("height") or 0) > 0
                             and int(options.get("width") or 0) > 0)


def run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> Any:
  return loop.run(MagicTask(config), config, workdir, mode)
