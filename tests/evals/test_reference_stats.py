"""The reference-statistics command and the comparison of two statistics files.

The feature network is :class:`tests.metrics.tiny_taps.TinyTaps` (the weight file is still read,
and its hash recorded); the real network is tested in tests/nn/."""

import numpy as np
import pytest

from collage.evals import features, reference_stats
from collage.evals import compare_stats, reference
from collage.metrics import frechet
from collage.nn import inception, inception_io
from tests.metrics.tiny_taps import TinyTaps


@pytest.fixture()
def tiny(monkeypatch):
  original = features.FeatureExtractor
  monkeypatch.setattr(features, "FeatureExtractor",
                      lambda weights, mesh, batch_size=200: original(TinyTaps(), mesh, batch_size))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("w") / "w.npz"
  inception_io.save(path, inception.random_weights(0), source="random")
  return str(path)


def _images(path, n, seed, gray=False):
  rng = np.random.default_rng(seed)
  shape = (n, 12, 10) if gray else (n, 12, 10, 3)
  images = rng.integers(0, 256, shape).astype(np.uint8)
  np.savez(path, arr_0=images, mu=np.zeros(2048), sigma=np.eye(2048), mu_s=np.zeros(2023),
           sigma_s=np.eye(2023))
  return images


def test_npz_source_to_statistics_and_comparison(tiny, weights_file, tmp_path, capsys):
  images = _images(tmp_path / "a.npz", 11, 0)
  out = tmp_path / "ref.npz"
  assert reference_stats.main(["--source", f"npz:{tmp_path / 'a.npz'}", "--weights", weights_file,
                               "--out", str(out), "--pr_num", "9", "--batch_size", "8"]) == 0
  ref = reference.load(out)
  assert ref.num_images == 11 and ref.features.shape == (9, 2048)
  assert ref.dataset == f"npz:{tmp_path / 'a.npz'}"
  assert ref.weights_sha256 == inception_io.file_sha256(weights_file)
  assert np.isfinite(ref.inception_score) and "reference_stats" in ref.notes
  # The statistics are those of the features of the resized images, in source order.
  resized = np.stack([inception.resize_bilinear_legacy_host(im) for im in images])
  from collage.train import mesh  # pylint: disable=import-outside-toplevel
  feats = features.FeatureSet(features.FeatureExtractor(None, mesh.make_mesh(), 8))
  feats.add(resized)
  direct = feats.gather()
  np.testing.assert_allclose(ref.features, direct["pool"][:9], rtol=1e-5, atol=1e-6)
  mu, sigma = frechet.gaussian_fit(direct["spatial"])
  np.testing.assert_allclose(ref.mu_s, mu, atol=1e-6)
  np.testing.assert_allclose(ref.sigma_s, sigma, atol=1e-6)
  # An existing output is kept; --take_moments copies the file's moments.
  assert reference_stats.main(["--source", f"npz:{tmp_path / 'a.npz'}", "--weights",
                               weights_file, "--out", str(out)]) == 2
  assert "exists" in capsys.readouterr().err
  taken = tmp_path / "taken.npz"
  assert reference_stats.main(["--source", f"npz:{tmp_path / 'a.npz'}", "--weights", weights_file,
                               "--out", str(taken), "--take_moments", "--start", "3"]) == 0
  t = reference.load(taken)
  np.testing.assert_array_equal(t.sigma, np.eye(2048))
  assert "moments taken from" in t.notes and t.num_images == 8 and t.dataset.endswith("[3:]")
  np.testing.assert_allclose(t.features, direct["pool"][3:], rtol=1e-5, atol=1e-6)


def test_compare_prints_what_the_reference_evaluator_prints():
  """Statistics in 8-D (the comparison is dimension-agnostic; 2048-D costs seconds of eigh)."""
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(40, 8)), rng.normal(size=(30, 8)) + 5.0

  def stats(f, score):
    (mu, sigma), (mu_s, sigma_s) = frechet.gaussian_fit(f), frechet.gaussian_fit(f[:, :4])
    return reference.Reference("x", len(f), "sha", mu, sigma, mu_s, sigma_s, f.astype(np.float32),
                               inception_score=score)

  same = compare_stats.compare(stats(x, 2.0), stats(x, 3.0))
  assert same == pytest.approx({"inception_score": 3.0, "fid": 0.0, "sfid": 0.0,
                                "precision": 1.0, "recall": 1.0}, abs=1e-9)
  far = compare_stats.compare(stats(x, 2.0), stats(y, 3.0))
  assert far["fid"] > 8 * 5.0 ** 2 * 0.9 and far["precision"] == 0.0 and far["recall"] == 0.0


def test_statistics_of_other_weights_are_refused(tiny, weights_file, tmp_path, capsys):
  _images(tmp_path / "g.npz", 6, 1, gray=True)
  other = tmp_path / "other.npz"
  inception_io.save(other, inception.random_weights(1), source="other")
  a, b = tmp_path / "sa.npz", tmp_path / "sb.npz"
  for w, out in ((weights_file, a), (str(other), b)):
    assert reference_stats.main(["--source", f"npz:{tmp_path / 'g.npz'}", "--weights", w,
                                 "--out", str(out), "--batch_size", "8"]) == 0
  capsys.readouterr()
  assert compare_stats.main([str(a), str(b)]) == 2
  assert "not with these weights" in capsys.readouterr().err


def test_bad_inputs_are_one_line_errors(weights_file, tmp_path, capsys):
  np.savez(tmp_path / "f.npz", arr_0=np.zeros((4, 8, 8, 3), np.float32))
  for args, want in (
      (["--source", f"npz:{tmp_path / 'f.npz'}", "--weights", weights_file], "must be uint8"),
      (["--source", "npz:/nonexistent.npz", "--weights", weights_file], "does not exist"),
      (["--source", "embedded", "--weights", str(tmp_path / "none.npz")], "inception_convert"),
      (["--source", "embedded", "--weights", weights_file, "--take_moments"], "take_moments")):
    assert reference_stats.main([*args, "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert want in err and err.count("\n") == 1, err
  assert not (tmp_path / "o.npz").exists()
