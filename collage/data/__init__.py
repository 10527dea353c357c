"""Image data: sources (embedded photographs, image folders, tfds) and grain pipelines.

Source strings: "embedded", "folder:PATH", "tfds:NAME[:SPLIT]" (see ``sources``). Import the
module you need (``collage.data.images``, ``.embedded``, ``.sources``, ``.pipeline``): the
package imports nothing itself, so reading one image (the codec command) does not start grain,
orbax or tensorflow. The tfds builder ``collage_embedded`` lives in
``collage.data.tfds_builder`` (it imports tensorflow_datasets).
"""
