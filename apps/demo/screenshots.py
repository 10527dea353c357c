"""A headless Chromium over a running demo: what the browser test drives, and the README's
pictures of each tab.

    python -m apps.demo.screenshots          # docs/demo/{compress,fractalize,generate}.png
    python -m apps.demo.screenshots --runs runs/vdvae_mnist --out /tmp/shots

The browser is the system's Chromium (Debian ``chromium``; ``$COLLAGE_CHROMIUM`` names another
executable), driven by Playwright's Python API pointed at that executable: nothing is
downloaded at run time. :class:`DemoPage` does what a person does (pick a photograph, move a
slider, press a button, upload a file) through the page's element ids, and reads back what
the page shows (a table's numbers, an image's size, an error message).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Sequence

CHROMIUM_ENV = "COLLAGE_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_MS = 300_000  # the first compress compiles the neural codec: minutes on a busy CPU
SHOT_WIDTH, SHOT_HEIGHT = 1280, 900


def find_chromium() -> str | None:
  """The Chromium executable to drive: ``$COLLAGE_CHROMIUM``, else the first of
  CHROMIUM_NAMES on the PATH; None if there is none."""
  named = os.environ.get(CHROMIUM_ENV)
  if named:
    return named if os.path.isfile(named) and os.access(named, os.X_OK) else None
  for name in CHROMIUM_NAMES:
    path = shutil.which(name)
    if path:
      return path
  return None


class DemoPage:
  """One browser tab on the demo at ``url`` (a Playwright ``Page``); every wait gives up
  after ``timeout_ms``."""

  def __init__(self, page, url: str, timeout_ms: int = TIMEOUT_MS):
    self.page = page
    page.set_default_timeout(timeout_ms)
    page.goto(url)
    page.wait_for_selector("#compress-button")

  def tab(self, name: str) -> None:
    """Opens the tab labelled ``name`` ("Compress", "Fractalize", "Generate")."""
    self.page.get_by_role("tab", name=name).click()

  def pick(self, elem_id: str, option: str) -> None:
    """Chooses ``option`` in the dropdown ``elem_id``."""
    self.page.click(f"#{elem_id} input")
    self.page.click(f"ul[role=listbox] li:text-is('{option}')")

  def radio(self, elem_id: str, label: str) -> None:
    self.page.click(f"#{elem_id} label:has-text('{label}')")

  def slider(self, elem_id: str, value: float) -> None:
    """Types ``value`` into the slider's number box, as a person does for an exact value."""
    box = self.page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")

  def press(self, elem_id: str) -> None:
    self.page.click(f"#{elem_id}")

  def upload(self, elem_id: str, path: str) -> None:
    """Replaces the file in the upload ``elem_id`` with ``path``."""
    clear = self.page.locator(f"#{elem_id} button[aria-label=Clear]")
    if clear.count():
      clear.first.click()
    self.page.set_input_files(f"#{elem_id} input[type=file]", path)

  def image_size(self, elem_id: str, previous_src: str | None = None) -> tuple[int, int, str]:
    """(width, height, src) of the picture shown in ``elem_id`` once it is loaded (and, with
    ``previous_src``, once it is another picture than that one)."""
    self.page.wait_for_function(
        """([sel, old]) => { const i = document.querySelector(sel);
             return i && i.complete && i.naturalWidth > 0 && i.src !== old; }""",
        arg=[f"#{elem_id} img", previous_src or ""])
    return tuple(self.page.evaluate(
        "sel => { const i = document.querySelector(sel); "
        "return [i.naturalWidth, i.naturalHeight, i.src]; }", f"#{elem_id} img"))

  def table(self, elem_id: str) -> list[dict[str, str]]:
    """The rows of the markdown table in ``elem_id`` as {header: cell} (an empty header cell
    is "name")."""
    self.page.wait_for_selector(f"#{elem_id} table tbody tr")
    rows = self.page.evaluate(
        """sel => [...document.querySelectorAll(sel + ' table tr')].map(
             r => [...r.children].map(c => c.innerText.trim()))""", f"#{elem_id}")
    header = [h or "name" for h in rows[0]]
    return [dict(zip(header, r)) for r in rows[1:]]

  def src(self, elem_id: str) -> str:
    """The address of the picture ``elem_id`` shows now ("" for none)."""
    return self.page.evaluate("sel => document.querySelector(sel)?.src ?? ''",
                              f"#{elem_id} img")

  _BUSY = """() => [...document.querySelectorAll('[data-testid=status-tracker]')].filter(
      e => !e.classList.contains('hide') && !e.querySelector('.error')).map(
      e => (e.closest('[id]') || {}).id + ': ' + e.className)"""

  def idle(self, settle_ms: int = 300) -> None:
    """Waits until no event of the page is queued or running (every status tracker hidden,
    or showing "Error"), after ``settle_ms`` for events just triggered to show."""
    self.page.wait_for_timeout(settle_ms)
    try:
      self.page.wait_for_function(f"() => ({self._BUSY})().length === 0")
    except Exception as e:  # name what is still busy  # noqa: BLE001
      raise AssertionError(f"the page is still busy: {self.page.evaluate(self._BUSY)}") from e

  def error(self, containing: str = "") -> str:
    """The text of the error message the page shows (waits for one that contains
    ``containing``); then closes every message, so the next one is new."""
    toast = self.page.locator(".toast-body.error", has_text=containing).last
    toast.wait_for()
    text = toast.inner_text()
    self.page.evaluate("() => document.querySelectorAll('.toast-close').forEach(b => b.click())")
    self.page.wait_for_function("() => !document.querySelector('.toast-body')")
    return text

  def shot(self, path: str) -> None:
    self.page.screenshot(path=path, full_page=False)


def _write_png_small(path: str) -> None:
  """Re-encodes a screenshot as an optimized, 256-colour PNG (a fraction of the size)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  with Image.open(path) as img:
    small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                        dither=Image.Dither.NONE)
  small.save(path, format="PNG", optimize=True)


def take(url: str, out: str, chromium: str, with_runs: bool) -> list[str]:
  """Screenshots of each tab of the demo at ``url`` after a representative action, into
  ``out``; returns the files."""
  from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel
  os.makedirs(out, exist_ok=True)
  files = []
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, headless=True)
    try:
      page = browser.new_page(viewport={"width": SHOT_WIDTH, "height": SHOT_HEIGHT})
      demo = DemoPage(page, url)
      before = demo.src("compress-original")
      demo.pick("compress-photo", "motorcycle")
      demo.image_size("compress-original", before)
      demo.slider("compress-quality", 40)
      demo.press("compress-button")
      demo.image_size("compress-webp")
      demo.idle()
      demo.press("compress-button")  # again: the table then shows warm encode and decode times
      demo.idle(1000)
      demo.slider("compress-cx", 36)
      demo.slider("compress-cy", 40)
      demo.slider("compress-zoom", 6)
      page.wait_for_function("() => document.querySelector('#compress-zoom-own')"
                             ".innerText.includes('at 6x')")
      demo.idle(1000)
      files.append(os.path.join(out, "compress.png"))
      page.set_viewport_size({"width": SHOT_WIDTH, "height": 1340})
      demo.shot(files[-1])
      page.set_viewport_size({"width": SHOT_WIDTH, "height": SHOT_HEIGHT})
      demo.tab("Fractalize")
      demo.press("fractal-button")
      demo.image_size("fractal-zoomed")
      demo.idle()
      files.append(os.path.join(out, "fractalize.png"))
      demo.shot(files[-1])
      demo.tab("Generate")
      if with_runs:
        button = page.locator("#vdvae-button:visible, #magic-button:visible, #dct-button:visible")
        button.first.click()
        page.wait_for_selector("#vdvae-out img, #magic-image img, #dct-image img")
        demo.idle()
      files.append(os.path.join(out, "generate.png"))
      page.set_viewport_size({"width": SHOT_WIDTH, "height": 1200})
      demo.shot(files[-1])
    finally:
      browser.close()
  for f in files:
    _write_png_small(f)
  return files


def main(argv: Sequence[str] | None = None) -> int:
  from apps.demo import app  # pylint: disable=import-outside-toplevel
  p = argparse.ArgumentParser(prog="python -m apps.demo.screenshots",
                              description="Screenshots of each tab of the demo.")
  p.add_argument("--out", default=os.path.join("docs", "demo"), help="folder for the PNGs")
  p.add_argument("--runs", nargs="*", default=[], metavar="DIR",
                 help="run directories for the Generate tab")
  args = p.parse_args(argv)
  chromium = find_chromium()
  if chromium is None:
    print(f"no Chromium found (install Debian's chromium, or set ${CHROMIUM_ENV})",
          file=sys.stderr)
    return 2
  runs, errors = app.check_runs(args.runs)
  for e in errors:
    print(f"warning: {e}", file=sys.stderr)
  outputs = app.Outputs()
  demo = app.build_app(runs, errors, outputs)
  url = app.launch(demo, outputs=outputs)
  try:
    for f in take(url, args.out, chromium, bool(runs)):
      print(f"{f}: {os.path.getsize(f) // 1024} KB")
  finally:
    demo.close()
  return 0


if __name__ == "__main__":
  sys.exit(main())
