"""A tfds builder over the embedded photographs: ``collage_embedded``.

It makes the ``tfds:`` source path real without a network: the dataset is generated
from ``collage.data.embedded`` (splits "train" and "eval", RGB, PNG-encoded) and
written as array_record, so ``tfds.data_source("collage_embedded", data_dir=...)``
reads it with random access. Importing this module registers the builder with tfds;
``collage.data.sources.TfdsSource`` prepares it on first use.

Example::

  builder = tfds.builder("collage_embedded", data_dir=DIR)
  builder.download_and_prepare(file_format="array_record")
  ds = tfds.data_source("collage_embedded", split="train", data_dir=DIR)
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from collage.data import embedded


class CollageEmbedded(tfds.core.GeneratorBasedBuilder):
  """The embedded photographs of scikit-image and PyWavelets, as a tfds dataset."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "17 photographs; eval = astronaut, coffee, gravel."}
  # No download checksums to locate. (tfds' ``code_path`` also needs the
  # ``importlib_resources`` backport, which Python 3.11 environments may lack.)
  code_path = None

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format or "array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "name": tfds.features.Text(),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in ("train", "eval")}

  def _generate_examples(self, split):
    for name, image in embedded.embedded_images(channels=3, split=split):
      yield name, {"image": image, "name": name}
