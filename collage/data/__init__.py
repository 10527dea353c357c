"""Image data: sources (embedded photographs, image folders, tfds) and grain pipelines.

Source strings: "embedded", "folder:PATH", "tfds:NAME[:SPLIT]" (see ``sources``). Import the
module you need (``.embedded``, ``.sources``, ``.pipeline``): the package imports nothing
itself, so a tool that reads one embedded photograph does not start grain, orbax or
tensorflow. Image files in and out are the ground floor's :mod:`collage.images`. The tfds builder ``collage_embedded`` lives in
``collage.data.tfds_builder`` (it imports tensorflow_datasets).
"""
