"""``collage-demo``: the codecs, fractalization and trained runs in one page a person opens.

    pip install -e '.[demo]'
    collage-demo                                   # http://127.0.0.1:7860 (the URL is printed)
    collage-demo --port 8080 --runs runs/vdvae_mnist runs/magic_uq

Tabs:
  Compress    a photograph (embedded, or an upload) through a codec at a quality, beside JPEG
              and WebP at the same file size; the numbers; the file to download; a zoom (1x-8x)
              of the file decoded at that scale beside the JPEG upscaled with Lanczos.
  Fractalize  the fractalize task's collage fitted to an image, its decoding iterations from a
              blank start as an animation, and its decode at 1x-8x.
  Generate    samples of the runs named by ``--runs`` (VDVAE / Collage-VDVAE, MAGIC,
              DCTransformer); without runs, the command that trains one.

Named API endpoints (``gradio_client``: ``Client(url).predict(..., api_name="/compress")``):
  compress(image, codec, quality) -> (decoded image, stats)   stats: bytes, bpp, psnr, ms_ssim,
                                                              encode_s, decode_s, sha256, ...
  zoom(file, scale) -> image                                  a compressed file at 1..8x
  fractalize(image) -> (image, stats)                         the 1x decode, psnr_1x, fit_s, ...

Bad input (not an image, deeper than 8 bits, over 16 MP, a zoom larger than memory, a run
directory that is not a run) is one message in the page, or the error a client receives; the
app keeps serving. Every computing event waits in Gradio's queue (``--concurrency`` at a time);
what a person uploads and gets back lives in their session's state and in files Gradio serves
under a hash of their content, never in anything another session's handlers read.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local demo

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from apps.demo import compress as cp  # noqa: E402
from apps.demo import fractal, generate, inputs  # noqa: E402
from collage import compilation_cache  # noqa: E402
from collage.codec.base import CodecError  # noqa: E402
from collage.data.embedded import EMBEDDED_NAMES  # noqa: E402

PROG = "collage-demo"
TITLE = "collage: Neural Collages, fractal compression, generative collages"
DEFAULT_HOST = "127.0.0.1"
MAX_UPLOAD = "64mb"  # a 16 MP PNG is at most 48 MB
EXPECTED = (inputs.InputError, CodecError, generate.RunError)  # bad input: its message as is
COMPUTE = "compute"  # the concurrency group of every event that computes
FRACTAL_PHOTO = "chelsea"
SHOWN = ["download", "fullscreen"]  # the buttons on a result picture
PNG_LEVEL = 1  # zlib level of the PNG files the app hands out
OUTPUT_AGE_S = 3600  # request folders older than this are removed (Gradio has copied them)
SWEEP_EVERY = 64  # request folders made between two sweeps

INTRO = """\
# collage
Self-referential image representations in JAX: compress a photograph with **Neural Collages**
or **PIFS** fractal compression beside JPEG and WebP at the same number of bytes, and zoom into
the collage's resolution-free decode; fit a collage to any image; sample trained generative
runs. Everything runs on this machine.
"""


# -- errors --------------------------------------------------------------------------------
def _out_of_memory(e: BaseException) -> bool:
  return isinstance(e, MemoryError) or (
      type(e).__name__ in ("XlaRuntimeError", "JaxRuntimeError")
      and ("RESOURCE_EXHAUSTED" in str(e) or "Out of memory" in str(e)))


def shown(fn: Callable) -> Callable:
  """Runs a handler; an expected error becomes its message in the page (``gr.Error``), running
  out of memory one line that says what to change, anything else an internal error to
  report. The server keeps serving in every case."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except gr.Error:
      raise
    except EXPECTED as e:
      raise gr.Error(str(e), duration=None, print_exception=False) from None
    except Exception as e:  # noqa: BLE001
      if _out_of_memory(e):
        raise gr.Error("out of memory: choose a smaller image or a smaller zoom",
                       duration=None, print_exception=False) from None
      raise gr.Error(f"internal error (please report it): {type(e).__name__}: {e}",
                     duration=None) from e

  return wrapper


# -- small helpers ------------------------------------------------------------------------
def picture(image: np.ndarray | None) -> np.ndarray | None:
  """uint8 [H, W, C] -> what gr.Image shows: [H, W] for gray, [H, W, 3] for colour."""
  if image is None:
    return None
  image = np.asarray(image)
  return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


class Outputs:
  """Per-request folders for the files the app hands out (PNGs, ``.clg`` downloads, GIFs,
  ``.jpg`` samples); Gradio copies each into its own cache as it serves it, so a folder older
  than OUTPUT_AGE_S is removed (swept every SWEEP_EVERY folders), and the root when the
  process exits."""

  def __init__(self, root: str | None = None):
    self.root = root or tempfile.mkdtemp(prefix="collage-demo-")
    atexit.register(shutil.rmtree, self.root, True)
    self.photos = inputs.PhotoFolder(os.path.join(self.root, "photos"))
    self._made = 0
    self._lock = threading.Lock()

  def folder(self) -> str:
    """A new, empty folder for one request's files."""
    with self._lock:
      self._made += 1
      sweep = self._made % SWEEP_EVERY == 0
    if sweep:
      self.sweep()
    return tempfile.mkdtemp(dir=self.root, prefix="request-")

  def sweep(self, age_s: float | None = None) -> None:
    """Removes the request folders last changed more than ``age_s`` (OUTPUT_AGE_S) ago."""
    limit = time.time() - (OUTPUT_AGE_S if age_s is None else age_s)
    for entry in os.scandir(self.root):
      if entry.name.startswith("request-") and entry.stat().st_mtime < limit:
        shutil.rmtree(entry.path, ignore_errors=True)

  def png(self, image: np.ndarray | None, name: str = "image") -> str | None:
    """A picture (uint8 [H, W, C]) as a PNG file to hand out (zlib level PNG_LEVEL: a
    fraction of the default level's time, a few percent larger); None for None."""
    if image is None:
      return None
    path = os.path.join(self.folder(), f"{name}.png")
    Image.fromarray(picture(image)).save(path, format="PNG", compress_level=PNG_LEVEL)
    return path


def _fmt(value: Any, digits: int) -> str:
  return "n/a" if value is None else f"{value:.{digits}f}"


def stats_table(rows: Sequence[tuple[str, dict]]) -> str:
  """A markdown table of codec results: (label, stats) rows."""
  lines = ["| | quality | bytes | bpp | PSNR (dB) | MS-SSIM | encode (s) | decode (s) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for label, s in rows:
    lines.append(f"| {label} | {s['quality']} | {s['bytes']:,} | {s['bpp']:.3f} | "
                 f"{_fmt(s['psnr'], 2)} | {_fmt(s['ms_ssim'], 4)} | {s['encode_s']:.3f} | "
                 f"{s['decode_s']:.3f} |")
  return "\n".join(lines)


# -- the Compress tab ---------------------------------------------------------------------
class CompressHandlers:
  """The Compress tab's handlers. A session's state is a dict: the original image, the
  codec's file and name, the same-size JPEG's decode, and the last whole-image decode that
  zooming reuses."""

  def __init__(self, outputs: Outputs):
    self.outputs = outputs

  def photo_file(self, name: str) -> str | None:
    return self.outputs.photos.path(name) if name else None

  def preview(self, path: str | None) -> str | None:
    return self.outputs.png(inputs.read_upload(path), "original") if path else None

  @staticmethod
  def crop_centre(evt: gr.SelectData, path: str | None) -> tuple[float, float]:
    """A click on the original (a picture of ``path``) -> the zoom crop's centre, in percent
    of width and height."""
    if not path or evt is None or not isinstance(evt.index, (list, tuple)):
      return gr.update(), gr.update()
    with Image.open(path) as img:
      w, h = img.size
    x, y = evt.index[:2]
    return round(100.0 * (x + 0.5) / w, 1), round(100.0 * (y + 0.5) / h, 1)

  def compress(self, path: str | None, name: str, quality: float, state: dict | None):
    """-> decoded image, table, .clg download, state, cleared JPEG / WebP pictures."""
    image = inputs.read_upload(path)
    coded = cp.run(image, cp.check_codec(name), quality)
    folder = self.outputs.folder()
    stem = os.path.splitext(os.path.basename(path))[0] or "image"
    out = os.path.join(folder, f"{stem}_{name}_q{coded.quality}{cp.SUFFIXES[name]}")
    with open(out, "wb") as f:
      f.write(coded.data)
    state = {"image": image, "data": coded.data, "codec": name, "stats": coded.stats,
             "jpeg": None, "cache": {}}
    table = stats_table([(cp.CODEC_LABELS[name], coded.stats)])
    return self.outputs.png(coded.decoded, "decoded"), table, out, state, None, None

  def compare(self, state: dict | None):
    """-> JPEG and WebP at the codec file's size, the full table, state."""
    if not state or state.get("data") is None:
      return gr.update(), gr.update(), gr.update(), state
    image, target = state["image"], len(state["data"])
    jpeg = cp.same_size(image, "jpeg", target)
    webp = cp.same_size(image, "webp", target)
    state = dict(state, jpeg=jpeg.decoded)
    table = stats_table([(cp.CODEC_LABELS[state["codec"]], state["stats"]),
                         ("JPEG, same size", jpeg.stats), ("WebP, same size", webp.stats)])
    return (self.outputs.png(jpeg.decoded, "jpeg"), self.outputs.png(webp.decoded, "webp"),
            table, state)

  def zoom(self, state: dict | None, scale: float, cx: float, cy: float):
    """-> the file decoded at ``scale`` on the crop, the same-size JPEG upscaled with Lanczos
    on it, and the two captions."""
    if not state or state.get("data") is None:
      return None, None, gr.update(), gr.update()
    k = cp.check_zoom(scale)
    h, w = state["image"].shape[:2]
    box = cp.Box.around(h, w, float(cy) / 100.0, float(cx) / 100.0)
    name = state["codec"]
    own = cp.zoom_crop(state["data"], k, box, state["cache"])
    how = ("its own operator, no resampling" if name in cp.COLLAGE_CODECS
           else "decoded, then bicubic: no resolution-free decode")
    left = f"{cp.CODEC_LABELS[name]} file at {k}x ({how})"
    if state.get("jpeg") is None:
      return self.outputs.png(own, "zoom"), None, gr.update(label=left), gr.update()
    right = f"JPEG at the same size, Lanczos {k}x"
    return (self.outputs.png(own, "zoom"),
            self.outputs.png(cp.lanczos_crop(state["jpeg"], k, box), "zoom_jpeg"),
            gr.update(label=left), gr.update(label=right))


# -- the Fractalize tab ---------------------------------------------------------------------
class FractalHandlers:
  """The Fractalize tab's handlers; a session's state is its last :class:`fractal.Fit`."""

  def __init__(self, outputs: Outputs):
    self.outputs = outputs

  def fit(self, path: str | None, size: float, steps: float, progress=gr.Progress()):
    """-> animation (GIF file), 1x decode, numbers, state (the fit)."""
    image = inputs.read_upload(path)
    progress(0.0, desc="compiling the fit (first time only)")
    result = fractal.fit(path, image.shape[-1], size, steps,
                         lambda done, total: progress(done / total,
                                                      desc=f"Adam step {done}/{total}"))
    progress(1.0, desc="decoding from a blank start")
    gif = fractal.decoding_gif(result, os.path.join(self.outputs.folder(), "decoding.gif"))
    return (gif, self.outputs.png(fractal.decode_at(result, 1), "fixed_point"),
            self.table(result.stats), result)

  @staticmethod
  def table(s: dict) -> str:
    return ("| size | Adam steps | fit (s) | PSNR at 1x (dB) | collage error | contraction | "
            "parameters |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
            f"| {s['size']} | {s['steps']} | {s['fit_s']:.1f} | {s['psnr_1x']:.2f} | "
            f"{s['collage_mse']:.2e} | {s['contraction']:.3f} | {s['parameters']:,} |")

  def zoom(self, result: fractal.Fit | None, scale: float):
    if result is None:
      return None, gr.update()
    k = cp.check_zoom(scale)
    side = result.target.shape[0] * k
    return (self.outputs.png(fractal.decode_at(result, k), f"collage_{k}x"),
            gr.update(label=f"the collage decoded at {k}x: {side} x {side} pixels"))


# -- the Generate tab -----------------------------------------------------------------------
class GenerateHandlers:
  """The Generate tab's handlers over the runs named on the command line."""

  def __init__(self, runs: Sequence[generate.RunInfo], outputs: Outputs):
    self.runs = {info.path: info for info in runs}
    self.outputs = outputs

  def info(self, path: str) -> generate.RunInfo:
    if path not in self.runs:
      raise generate.RunError(f"{path!r} is not one of the runs this demo was started with "
                              f"({', '.join(self.runs) or 'none'})")
    return self.runs[path]

  def visibility(self, path: str):
    """-> which task's controls show, and whether the scale slider applies."""
    info = self.info(path)
    return (gr.update(visible=info.task == "vdvae"), gr.update(visible=info.task == "magic"),
            gr.update(visible=info.task == "dctransformer"),
            gr.update(interactive=info.collage_head, value=1),
            gr.update(visible=info.guided), gr.update(visible=info.condition != "none"))

  def vdvae(self, path: str, temperature: float, scale: float, num: float, seed: float):
    info = self.info(path)
    options = generate.vdvae_options(info, temperature, int(scale))
    samples = generate.loaded(info).sample(options, int(num), int(seed))
    return self.outputs.png(generate.grid(samples["image"]), "samples")

  def _templates(self, files: Sequence[str] | None) -> str | None:
    """Uploaded template images, checked, copied into one folder (MAGIC reads a folder)."""
    if not files:
      return None
    folder = self.outputs.folder()
    for i, f in enumerate(files):
      image = inputs.read_upload(f, "template image")
      Image.fromarray(picture(image)).save(os.path.join(folder, f"{i:04d}.png"))
    return folder

  def magic(self, path: str, content_photo: str, content_file: str | None,
            templates: Sequence[str] | None, seed: float):
    info = self.info(path)
    content = None
    if info.guided:
      if content_file:
        inputs.read_upload(content_file, "content image")
        content = content_file
      else:
        content = content_photo or None
    options = generate.magic_options(info, content, self._templates(templates))
    out = generate.loaded(info).sample(options, 1, int(seed))
    return tuple(self.outputs.png(generate.grid(out[k][:1]), k)
                 for k in ("collage", "weights_rgb", "image"))

  def dct(self, path: str, input_file: str | None, temperature: float, seed: float):
    info = self.info(path)
    if info.condition != "none":
      if not input_file:
        raise inputs.InputError(f"{info.name} is a {info.condition} run: upload the image to "
                                f"{info.condition}")
      inputs.read_upload(input_file, "input image")
    run = generate.loaded(info)
    out = run.sample(generate.dct_options(info, input_file, temperature), 1, int(seed))
    jpg = generate.write_jpeg(run, out["dct"][0], os.path.join(self.outputs.folder(),
                                                               f"{info.name}_sample.jpg"))
    condition = (self.outputs.png(generate.grid(out["condition"][:1]), "condition")
                 if "condition" in out else None)
    return self.outputs.png(generate.grid(out["image"][:1]), "sample"), condition, jpg


# -- the page -----------------------------------------------------------------------------
def _photo_picker(elem_id: str, value: str) -> gr.Dropdown:
  return gr.Dropdown(choices=list(EMBEDDED_NAMES), value=value, label="Photograph (embedded)",
                     elem_id=elem_id)


def _original(value: str | None, label: str, elem_id: str, height: int) -> gr.Image:
  """The picture of the image a tab works on (a file path, as handlers read it)."""
  return gr.Image(value=value, label=label, type="filepath", interactive=False,
                  buttons=["fullscreen"], elem_id=elem_id, height=height)


def _result(label: str, elem_id: str, height: int | None = None) -> gr.Image:
  """A picture the app computed (a PNG or GIF file), to look at full screen or download."""
  return gr.Image(label=label, type="filepath", interactive=False, buttons=SHOWN,
                  elem_id=elem_id, height=height)


def _compute(event, fn, inputs_, outputs_, **kwargs):
  """An event in the queue's one compute group, its errors shown in the page."""
  return event(shown(fn), inputs_, outputs_, concurrency_id=COMPUTE, **kwargs)


def build_app(runs: Sequence[generate.RunInfo] = (), run_errors: Sequence[str] = (),
              outputs: Outputs | None = None, concurrency: int = 1) -> gr.Blocks:
  """The page. ``runs``: checked run directories for the Generate tab; ``run_errors``: why
  the other ``--runs`` are not runs (shown in that tab)."""
  outputs = outputs or Outputs()
  ch, fh, gh = CompressHandlers(outputs), FractalHandlers(outputs), GenerateHandlers(runs, outputs)
  with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(600, 3600)) as demo:
    _api(outputs)  # first: the endpoints own their names (the page's events are private)
    gr.Markdown(INTRO)
    with gr.Tabs():
      # -- Compress ---------------------------------------------------------------------------
      with gr.Tab("Compress", id="compress", elem_id="tab-compress"):
        c_state = gr.State(None)
        with gr.Row():
          with gr.Column(scale=1, min_width=300):
            c_photo = _photo_picker("compress-photo", inputs.DEFAULT_PHOTO)
            c_file = gr.File(value=ch.photo_file(inputs.DEFAULT_PHOTO), label="Image (or upload "
                             "your own: PNG, JPEG, WebP, ... up to 16 MP, 8 bits)",
                             elem_id="compress-upload")
            c_original = _original(ch.preview(ch.photo_file(inputs.DEFAULT_PHOTO)),
                                   "Original: click where to zoom", "compress-original", 260)
            c_codec = gr.Radio(choices=list(cp.CODEC_CHOICES), value="neural", label="Codec",
                               info="PIFS searches every domain: seconds for a Kodak-sized "
                                    "photograph, minutes for the largest uploads",
                               elem_id="compress-codec")
            c_quality = gr.Slider(1, 100, value=50, step=1, label="Quality",
                                  elem_id="compress-quality")
            c_button = gr.Button("Compress", variant="primary", elem_id="compress-button")
          with gr.Column(scale=3):
            with gr.Row():
              c_decoded = _result("Decoded", "compress-decoded", 300)
              c_jpeg = _result("JPEG at the same size", "compress-jpeg", 300)
              c_webp = _result("WebP at the same size", "compress-webp", 300)
            c_table = gr.Markdown(elem_id="compress-stats")
            c_download = gr.File(label="The compressed file", interactive=False,
                                 elem_id="compress-download")
            with gr.Row():
              c_zoom = gr.Slider(1, cp.MAX_ZOOM, value=4, step=1, label="Zoom",
                                 elem_id="compress-zoom")
              c_cx = gr.Slider(0, 100, value=50, step=0.1, label="Crop centre x (%)",
                               elem_id="compress-cx")
              c_cy = gr.Slider(0, 100, value=50, step=0.1, label="Crop centre y (%)",
                               elem_id="compress-cy")
            with gr.Row():
              c_zoom_own = _result("The file decoded at the zoom", "compress-zoom-own", 400)
              c_zoom_jpeg = _result("JPEG at the same size, Lanczos", "compress-zoom-jpeg", 400)
        c_photo.change(shown(ch.photo_file), c_photo, c_file, api_visibility="private")
        c_file.change(shown(ch.preview), c_file, c_original, api_visibility="private")
        c_original.select(ch.crop_centre, c_original, [c_cx, c_cy], api_visibility="private")
        zoom_io = ([c_state, c_zoom, c_cx, c_cy], [c_zoom_own, c_zoom_jpeg, c_zoom_own,
                                                   c_zoom_jpeg])
        (_compute(c_button.click, ch.compress, [c_file, c_codec, c_quality, c_state],
                  [c_decoded, c_table, c_download, c_state, c_jpeg, c_webp],
                  api_visibility="private")
         .success(shown(ch.compare), c_state, [c_jpeg, c_webp, c_table, c_state],
                  concurrency_id=COMPUTE, api_visibility="private")
         .success(shown(ch.zoom), *zoom_io, concurrency_id=COMPUTE, api_visibility="private"))
        for slider in (c_zoom, c_cx, c_cy):
          _compute(slider.change, ch.zoom, *zoom_io, trigger_mode="always_last",
                   api_visibility="private")

      # -- Fractalize -------------------------------------------------------------------------
      with gr.Tab("Fractalize", id="fractalize", elem_id="tab-fractalize"):
        f_state = gr.State(None)
        with gr.Row():
          with gr.Column(scale=1, min_width=300):
            f_photo = _photo_picker("fractal-photo", FRACTAL_PHOTO)
            f_file = gr.File(value=ch.photo_file(FRACTAL_PHOTO), label="Image (or upload your "
                             "own; its centre square is used)", elem_id="fractal-upload")
            f_original = _original(ch.preview(ch.photo_file(FRACTAL_PHOTO)), "Original",
                                   "fractal-original", 220)
            f_size = gr.Radio(choices=list(fractal.SIZES), value=fractal.DEFAULT_SIZE,
                              label="Size (pixels, square)", elem_id="fractal-size")
            f_steps = gr.Slider(fractal.CHUNK, fractal.MAX_STEPS, value=fractal.DEFAULT_STEPS,
                                step=fractal.CHUNK, label="Adam steps", elem_id="fractal-steps")
            f_button = gr.Button("Fractalize", variant="primary", elem_id="fractal-button")
          with gr.Column(scale=3):
            with gr.Row():
              f_gif = _result("Decoding from a blank start", "fractal-gif", 320)
              f_decoded = _result("The collage's fixed point at 1x", "fractal-decoded", 320)
            f_table = gr.Markdown(elem_id="fractal-stats")
            f_zoom = gr.Slider(1, fractal.MAX_ZOOM, value=4, step=1, label="Decode at",
                               elem_id="fractal-zoom")
            f_zoomed = _result("The collage decoded at the zoom", "fractal-zoomed", 512)
        f_photo.change(shown(ch.photo_file), f_photo, f_file, api_visibility="private")
        f_file.change(shown(ch.preview), f_file, f_original, api_visibility="private")
        (_compute(f_button.click, fh.fit, [f_file, f_size, f_steps],
                  [f_gif, f_decoded, f_table, f_state], api_visibility="private")
         .success(shown(fh.zoom), [f_state, f_zoom], [f_zoomed, f_zoomed],
                  concurrency_id=COMPUTE, api_visibility="private"))
        _compute(f_zoom.change, fh.zoom, [f_state, f_zoom], [f_zoomed, f_zoomed],
                 trigger_mode="always_last", api_visibility="private")

      # -- Generate ---------------------------------------------------------------------------
      with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
        _generate_tab(gh, runs, run_errors)
  demo.queue(default_concurrency_limit=int(concurrency))
  return demo


def _generate_tab(gh: GenerateHandlers, runs: Sequence[generate.RunInfo],
                  run_errors: Sequence[str]) -> None:
  if run_errors:
    gr.Markdown("**Not runs this tab can sample:**\n\n" + "\n".join(
        f"- {e}" for e in run_errors), elem_id="generate-errors")
  if not runs:
    gr.Markdown("No trained run to sample. Train one, then start the demo with it:\n\n"
                f"```\n{generate.TRAIN_COMMAND}\ncollage-demo --runs runs/vdvae_mnist_quick\n"
                "```\n\n(any VDVAE / Collage-VDVAE, MAGIC or DCTransformer run directory; "
                "several may follow `--runs`)", elem_id="generate-none")
    return
  first = runs[0]
  g_run = gr.Dropdown(choices=[(info.label, info.path) for info in runs], value=first.path,
                      label="Run", elem_id="generate-run")
  g_seed = gr.Number(value=0, precision=0, label="Seed", elem_id="generate-seed")
  with gr.Group(visible=first.task == "vdvae") as g_vdvae:
    with gr.Row():
      v_temperature = gr.Slider(0.0, 2.0, value=0.85, step=0.05, label="Temperature",
                                elem_id="vdvae-temperature")
      v_scale = gr.Slider(1, generate.MAX_SCALE, value=1, step=1,
                          label="Scale (Collage-VDVAE: its latents decoded k times larger)",
                          interactive=first.collage_head, elem_id="vdvae-scale")
      v_num = gr.Slider(1, generate.MAX_SAMPLES, value=16, step=1, label="Samples",
                        elem_id="vdvae-num")
    v_button = gr.Button("Sample", variant="primary", elem_id="vdvae-button")
    v_out = _result("Samples", "vdvae-out", 520)
  with gr.Group(visible=first.task == "magic") as g_magic:
    with gr.Column(visible=first.guided) as m_content_box:
      m_photo = _photo_picker("magic-photo", "astronaut")
      m_file = gr.File(label="...or upload a content image", elem_id="magic-content",
                       height=140)
    m_templates = gr.File(file_count="multiple", label="Template images (default: the run's "
                          "own templates)", elem_id="magic-templates", height=140)
    m_button = gr.Button("Make a collage", variant="primary", elem_id="magic-button")
    with gr.Row():
      m_collage = _result("I_M: the templates warped and mixed", "magic-collage")
      m_weights = _result("A: which template where", "magic-weights")
      m_image = _result("I: the result", "magic-image")
  with gr.Group(visible=first.task == "dctransformer") as g_dct:
    with gr.Column(visible=first.condition != "none") as d_input_box:
      d_file = gr.File(label="Image to upsample or colorize", elem_id="dct-input", height=140)
    d_temperature = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Temperature",
                              elem_id="dct-temperature")
    d_button = gr.Button("Sample", variant="primary", elem_id="dct-button")
    with gr.Row():
      d_image = _result("Sample", "dct-image")
      d_condition = _result("Its condition (the prefix it continued)", "dct-condition")
    d_jpg = gr.File(label="The sample as a .jpg", interactive=False, elem_id="dct-jpg")
  g_run.change(shown(gh.visibility), g_run,
               [g_vdvae, g_magic, g_dct, v_scale, m_content_box, d_input_box],
               api_visibility="private")
  _compute(v_button.click, gh.vdvae, [g_run, v_temperature, v_scale, v_num, g_seed], v_out,
           api_visibility="private")
  _compute(m_button.click, gh.magic, [g_run, m_photo, m_file, m_templates, g_seed],
           [m_collage, m_weights, m_image], api_visibility="private")
  _compute(d_button.click, gh.dct, [g_run, d_file, d_temperature, g_seed],
           [d_image, d_condition, d_jpg], api_visibility="private")


# -- the named API --------------------------------------------------------------------------
class Api:
  """The named endpoints' functions (their results as PNG files: see :meth:`Outputs.png`)."""

  def __init__(self, outputs: Outputs):
    self.outputs = outputs

  def compress(self, image: str | None, codec: str, quality: float):
    """compress(image, codec, quality) -> (decoded image, stats)."""
    coded = cp.run(inputs.read_upload(image), cp.check_codec(codec), quality)
    return self.outputs.png(coded.decoded, "decoded"), coded.stats

  def zoom(self, file: str | None, scale: float):
    """zoom(file, scale) -> the whole compressed file decoded at ``scale`` (1..8)."""
    if not file:
      raise inputs.InputError("no compressed file: give a file made by compress (.clg, .jpg, "
                              ".webp, .j2k)")
    with open(file, "rb") as f:
      data = f.read()
    return self.outputs.png(cp.decode_at(data, scale), "zoomed")

  def fractalize(self, image: str | None):
    """fractalize(image) -> (the fitted collage's 1x decode, stats), at the default size and
    steps."""
    pixels = inputs.read_upload(image)
    result = fractal.fit(image, pixels.shape[-1])
    return self.outputs.png(fractal.decode_at(result, 1), "fixed_point"), result.stats


def _api(outputs: Outputs) -> None:
  """The named endpoints, on components that are never shown: the page's own events carry
  more (the crop, the comparisons), and a script wants exactly these arguments."""
  api = Api(outputs)
  with gr.Row(visible=False):
    a_image = gr.File(label="image")
    a_codec = gr.Textbox(label="codec")
    a_quality = gr.Number(label="quality")
    a_decoded = gr.Image(label="decoded image", format="png")
    a_stats = gr.JSON(label="stats")
    z_file = gr.File(label="file")
    z_scale = gr.Number(label="scale")
    z_image = gr.Image(label="image", format="png")
    f_image = gr.File(label="image")
    f_decoded = gr.Image(label="image", format="png")
    f_stats = gr.JSON(label="stats")
    trigger = gr.Button()
  _compute(trigger.click, api.compress, [a_image, a_codec, a_quality], [a_decoded, a_stats],
           api_name="compress")
  _compute(trigger.click, api.zoom, [z_file, z_scale], z_image, api_name="zoom")
  _compute(trigger.click, api.fractalize, f_image, [f_decoded, f_stats], api_name="fractalize")


# -- the command ----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog=PROG, description="Open the collage demo in a browser.")
  p.add_argument("--host", default=DEFAULT_HOST,
                 help=f"address to serve on (default {DEFAULT_HOST}: this machine only; "
                      "0.0.0.0 serves every network this machine is on)")
  p.add_argument("--port", type=int, default=None,
                 help="port (default: the first free one from 7860)")
  p.add_argument("--runs", nargs="+", default=[], metavar="DIR",
                 help="trained run directories (--workdir of experiments.main) for the "
                      "Generate tab")
  p.add_argument("--concurrency", type=int, default=1,
                 help="computations run at once; the others wait in the queue (default 1)")
  p.add_argument("--no-warmup", action="store_true",
                 help="skip compiling the neural codec at start-up (the first compress then "
                      "waits for it)")
  return p


def check_runs(paths: Sequence[str]) -> tuple[list[generate.RunInfo], list[str]]:
  """(the runs the Generate tab samples, one message per directory that is not one)."""
  runs, errors = [], []
  for path in paths:
    try:
      runs.append(generate.inspect_run(path))
    except generate.RunError as e:
      errors.append(str(e))
  return runs, errors


def warm_up() -> float:
  """Compiles the neural codec's programs on an embedded photograph; returns the seconds."""
  start = time.perf_counter()
  cp.run(inputs.photo(inputs.DEFAULT_PHOTO), "neural", 50)
  return time.perf_counter() - start


def launch(demo: gr.Blocks, host: str = DEFAULT_HOST, port: int | None = None,
           outputs: Outputs | None = None) -> str:
  """Starts serving ``demo`` in the background; returns its URL."""
  allowed = [outputs.root] if outputs is not None else []
  _, url, _ = demo.launch(server_name=host, server_port=port, prevent_thread_lock=True,
                          quiet=True, show_error=True, allowed_paths=allowed,
                          max_file_size=MAX_UPLOAD, ssr_mode=False, footer_links=["api"],
                          theme=gr.themes.Default(font=("ui-sans-serif", "system-ui",
                                                        "sans-serif"),
                                                  font_mono=("ui-monospace", "monospace")))
  return url


def main(argv: Sequence[str] | None = None) -> int:
  """Runs ``collage-demo`` until interrupted; returns the exit status."""
  args = _parser().parse_args(argv)
  if args.concurrency < 1:
    print(f"{PROG}: error: --concurrency must be at least 1, got {args.concurrency}",
          file=sys.stderr)
    return 2
  compilation_cache.enable()
  runs, errors = check_runs(args.runs)
  for e in errors:
    print(f"{PROG}: warning: {e}", file=sys.stderr)
  outputs = Outputs()
  demo = build_app(runs, errors, outputs, args.concurrency)
  try:
    url = launch(demo, args.host, args.port, outputs)
  except OSError as e:
    reason = ("the port is taken" if "empty port" in str(e) else str(e))
    print(f"{PROG}: error: cannot serve on {args.host}:{args.port or '7860-7959'}: {reason}; "
          "give another --port (without one, the first free port from 7860 is used)",
          file=sys.stderr)
    return 2
  print(f"{PROG}: open {url} in a browser (Ctrl+C stops it)", flush=True)
  if not args.no_warmup:
    def warm():
      seconds = warm_up()
      print(f"{PROG}: neural codec compiled in {seconds:.1f} s", flush=True)
    threading.Thread(target=warm, daemon=True).start()
  try:
    demo.block_thread()
  except KeyboardInterrupt:  # Ctrl-C is how a person stops the server: close it, exit 0
    print(f"{PROG}: stopped", flush=True)
  finally:
    demo.close()
  return 0


if __name__ == "__main__":
  sys.exit(main())
