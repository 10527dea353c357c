"""The weight file: written reproducibly, read back exactly, and refused with one clear line
when it is missing, truncated, foreign or of another layout."""

import numpy as np
import pytest

from collage.nn import inception, inception_io


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  path = tmp_path_factory.mktemp("w") / "w.npz"
  weights = inception.random_weights(0)
  sha = inception_io.save(path, weights, source="synthetic")
  return path, weights, sha


def test_round_trip_and_hash(saved, tmp_path):
  path, weights, sha = saved
  loaded = inception_io.load(path)
  assert loaded.sha256 == sha == inception_io.file_sha256(path) and loaded.source == "synthetic"
  for k, v in weights.items():
    np.testing.assert_array_equal(loaded.arrays[k], v)
  again = inception_io.save(tmp_path / "again.npz", loaded.arrays, source="synthetic")
  assert again == sha, "writing the same constants again gives the same bytes"


def _one_line(excinfo):
  msg = str(excinfo.value)
  assert "\n" not in msg and "inception_convert" in msg, msg
  return msg


def test_missing_truncated_and_foreign_files_give_one_clear_error(saved, tmp_path):
  path, _, _ = saved
  with pytest.raises(inception_io.WeightFileError) as e:
    inception_io.load(tmp_path / "absent.npz")
  assert "does not exist" in _one_line(e)
  data = path.read_bytes()
  for n, name in ((len(data) // 2, "half.npz"), (len(data) - 100, "tail.npz"), (10, "ten.npz")):
    cut = tmp_path / name
    cut.write_bytes(data[:n])
    with pytest.raises(inception_io.WeightFileError) as e:
      inception_io.load(cut)
    assert "truncated or corrupt" in _one_line(e)
  foreign = tmp_path / "foreign.npz"
  np.savez(foreign, kernel=np.zeros(3))
  with pytest.raises(inception_io.WeightFileError) as e:
    inception_io.load(foreign)
  assert "not a collage Inception weight file" in _one_line(e)


def test_a_file_of_another_layout_names_the_differences(tmp_path):
  weights = inception.random_weights(0)
  weights["mixed_6/conv/conv2d_params"] = np.zeros((1, 1, 768, 7), np.float32)
  del weights["softmax/biases"]
  with pytest.raises(ValueError, match="1 missing: softmax/biases; 1 mis-shaped: "
                                       r"mixed_6/conv/conv2d_params \(1, 1, 768, 7\)"):
    inception_io.save(tmp_path / "bad.npz", weights, source="x")
  assert not (tmp_path / "bad.npz").exists()
