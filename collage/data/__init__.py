"""Image data: sources (embedded photographs, image folders, tfds) and grain pipelines.

Source strings: "embedded", "folder:PATH", "tfds:NAME[:SPLIT]" (see ``sources``).
The tfds builder ``collage_embedded`` lives in ``collage.data.tfds_builder`` (imported
on demand, since it imports tensorflow_datasets).
"""

from collage.data.embedded import EMBEDDED_NAMES, EVAL_NAMES, TRAIN_NAMES, embedded_images
from collage.data.images import SUPPORTED_MODES, image_paths, load_image, to_channels
from collage.data.pipeline import image_pipeline, make_image_dataset
from collage.data.sources import (
    ArraySource, EmbeddedSource, FolderSource, TfdsSource, open_source, parse_source)

__all__ = [
    "EMBEDDED_NAMES", "EVAL_NAMES", "TRAIN_NAMES", "embedded_images",
    "SUPPORTED_MODES", "image_paths", "load_image", "to_channels",
    "image_pipeline", "make_image_dataset",
    "ArraySource", "EmbeddedSource", "FolderSource", "TfdsSource", "open_source",
    "parse_source",
]
