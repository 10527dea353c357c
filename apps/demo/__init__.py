"""The demo: a Gradio app that puts the codecs, fractalization and trained runs in front of a
person (``collage-demo``, or ``python -m apps.demo``; install with ``pip install -e '.[demo]'``).

Modules, each with one purpose:
  app.py          the page (tabs, controls, named API endpoints) and the ``collage-demo`` command
  inputs.py       uploads and embedded photographs in, with the checks bad files meet
  compress.py     a codec run with its numbers, JPEG and WebP at the same size, zooming a file
  fractal.py      fitting a restricted collage to one image, its decoding iterations, any scale
  generate.py     trained runs: what is one, restoring its checkpoint, sampling through its task
  screenshots.py  a headless Chromium over a running app: the tests' browser and the README's
                  pictures
  timing.py       the response time of the ``compress`` endpoint, as ``docs/demo.md`` reports
"""
