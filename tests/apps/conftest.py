"""Shared pieces of the demo's tests: a demo served in this process on a free port, and the
files a person might give it (a photograph, a non-image, a 16-bit image, one over the size
limit)."""

import contextlib
import socket

import numpy as np
import pytest
from PIL import Image

from apps.demo import app, inputs


def free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind((app.DEFAULT_HOST, 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def serving(runs=(), run_errors=()):
  """The demo, serving on 127.0.0.1 at a free port until the block ends -> its URL."""
  outputs = app.Outputs()
  demo = app.build_app(runs, run_errors, outputs)
  url = app.launch(demo, port=free_port(), outputs=outputs)
  try:
    yield url
  finally:
    demo.close()


def photo_crop() -> np.ndarray:
  """A small RGB photograph (176 x 240: the smallest side MS-SSIM takes, so every number is
  computed, at a fraction of a Kodak image's time)."""
  return np.ascontiguousarray(inputs.photo("chelsea")[40:216, 100:340])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """Paths of: photo (PNG), gray (PNG), text (not an image), deep (16-bit PNG), huge (over
  16 MP), transparent (RGBA with transparent pixels)."""
  d = tmp_path_factory.mktemp("uploads")
  paths = {k: str(d / name) for k, name in (
      ("photo", "chelsea.png"), ("gray", "camera.png"), ("text", "notes.txt"),
      ("deep", "scan16.png"), ("huge", "huge.png"), ("transparent", "logo.png"))}
  Image.fromarray(photo_crop()).save(paths["photo"])
  Image.fromarray(inputs.photo("camera")[:192, :192, 0]).save(paths["gray"])
  with open(paths["text"], "w", encoding="utf-8") as f:
    f.write("this is not an image\n")
  Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(paths["deep"])
  Image.new("L", (4001, 4001)).save(paths["huge"])
  rgba = np.zeros((32, 32, 4), np.uint8)
  Image.fromarray(rgba, "RGBA").save(paths["transparent"])
  return paths
