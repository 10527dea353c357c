"""The tfds path: prepare the ``collage_embedded`` builder offline and read it back.

One test on purpose: preparing imports TensorFlow (several seconds).
"""

import numpy as np

from collage.data import embedded, pipeline
from collage.data.sources import open_source


def test_collage_embedded_builder_prepares_and_reads_through_tfds_source(tmp_path):
  import tensorflow_datasets as tfds
  from collage.data import tfds_builder

  data_dir = str(tmp_path)
  builder = tfds_builder.CollageEmbedded(data_dir=data_dir)
  builder.download_and_prepare(file_format="array_record")
  assert builder.name == "collage_embedded"
  train = tfds.data_source("collage_embedded", split="train", data_dir=data_dir)
  assert len(train) == len(embedded.TRAIN_NAMES)

  ev = open_source("tfds:collage_embedded", split="eval", data_dir=data_dir)
  got = sorted(ev[i]["image"].tobytes() for i in range(len(ev)))
  want = sorted(im.tobytes() for _, im in embedded.embedded_images(3, split="eval"))
  assert got == want  # PNG-encoded, so lossless

  it = pipeline.make_image_dataset("tfds:collage_embedded:train[:4]", split="train",
                                   crop_size=32, batch_size=4, seed=0, channels=1,
                                   data_dir=data_dir)
  state = it.get_state()
  first = next(it)
  assert first["image"].shape == (4, 32, 32, 1) and first["image"].dtype == np.float32
  it.set_state(state)
  np.testing.assert_array_equal(next(it)["image"], first["image"])


def test_an_unprepared_dataset_says_how_to_prepare_it(tmp_path):
  import pytest
  with pytest.raises(FileNotFoundError) as e:
    open_source("tfds:mnist", split="train", data_dir=str(tmp_path))
  message = str(e.value)
  assert "tfds build mnist" in message and "TFDS_DATA_DIR" in message
  assert "download=True" not in message  # no config field takes it
