"""The FID-family evaluators in the runtime: the Inception features on 8 devices equal 1 device;
the four evaluators run on the tiny GAN's samples and share one draw; missing or mismatched
weights and references stop the run at start-up with one message.

The evaluator tests put :class:`tests.metrics.tiny_taps.TinyTaps` in the Inception network's
place (the weight file is still read and its hash checked): they test the plumbing, and the real
network costs ~5.7 G multiply-adds per image. The network itself is tested in tests/nn/ and in
``test_features_on_eight_devices_equal_one_device``."""

import json

import ml_collections
import numpy as np
import pytest

from collage.evals import features
from collage.evals import reference
from collage.metrics import frechet
from collage.nn import inception, inception_io
from collage.train import loop, mesh
from collage.train.errors import ConfigError
from tests.metrics.tiny_taps import TinyTaps
from tests.train import gan_config
from tests.train.gan_task import GanTask, bars


@pytest.fixture(scope="module")
def sample_metrics():
  """The FID family's module (the runtime imports the wing by name before any lookup)."""
  from collage.evals import fid  # pylint: disable=import-outside-toplevel
  return fid


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("inception") / "inception_random.npz"
  inception_io.save(path, inception.random_weights(0), source="random, for tests")
  return str(path)


def _bars_uint8(n, seed):
  """n noisy 4 x 4 gray bars, uint8 [n, 4, 4, 1]."""
  rng = np.random.default_rng(seed)
  x = bars()[rng.integers(0, 8, n)] + 0.1 * rng.normal(size=(n, 4, 4, 1))
  return features.to_uint8(np.clip(x, 0, 1))


@pytest.fixture()
def tiny_network(monkeypatch, sample_metrics):
  """The evaluators' feature network is TinyTaps (same taps, cheap)."""
  def extractor(weights, mesh_, batch_size):
    del weights
    return features.FeatureExtractor(TinyTaps(), mesh_, batch_size)
  monkeypatch.setattr(sample_metrics, "_extractor", extractor)
  return extractor


@pytest.fixture(scope="module")
def reference_file(weights_file, eight_devices, tmp_path_factory):
  """Reference statistics of 12 noisy bars, with TinyTaps, stamped with the weight file's hash."""
  extractor = features.FeatureExtractor(TinyTaps(), mesh.make_mesh(eight_devices), 8)
  feats = features.FeatureSet(extractor)
  feats.add(_bars_uint8(12, 1))
  arrays = feats.gather()
  mu, sigma = frechet.gaussian_fit(arrays["pool"])
  mu_s, sigma_s = frechet.gaussian_fit(arrays["spatial"])
  path = tmp_path_factory.mktemp("ref") / "bars.npz"
  sha = inception_io.file_sha256(weights_file)
  reference.save(path, reference.Reference("bars", 12, sha, mu, sigma, mu_s, sigma_s,
                                           arrays["pool"]))
  return str(path)


def test_features_on_eight_devices_equal_one_device(weights_file, eight_devices):
  """The real network: 8 images, all in one batch on 8 devices, in chunks of 3, 3, 2 on one."""
  weights = inception_io.load(weights_file)
  images = _bars_uint8(8, 0)
  got = {}
  for devices, batch, cuts in ((eight_devices, 8, (8,)), (eight_devices[:1], 3, (3, 6, 8))):
    feats = features.FeatureSet(features.FeatureExtractor(weights, mesh.make_mesh(devices), batch))
    start = 0
    for stop in cuts:
      feats.add(images[start:stop])
      start = stop
    got[len(devices)] = feats.gather()
  for tap, dim in (("pool", 2048), ("spatial", 2023), ("logits", 1008)):
    assert got[8][tap].shape == (8, dim)
    np.testing.assert_allclose(got[8][tap], got[1][tap], rtol=1e-5, atol=1e-5, err_msg=tap)
  # Statistics do not depend on the order either.
  perm = np.random.default_rng(0).permutation(8)
  m1, s1 = frechet.gaussian_fit(got[1]["pool"][perm])
  np.testing.assert_allclose(got[8]["pool"].mean(0), m1, atol=1e-5)
  assert frechet.frechet_distance_from_features(got[8]["pool"], m1, s1) == pytest.approx(
      0.0, abs=1e-6)


def test_tiny_stand_in_sharded_in_uneven_chunks_equals_one_device(eight_devices):
  images = _bars_uint8(11, 0)  # not a multiple of 8: the last chunk is padded
  got = {}
  for devices, batch in ((eight_devices, 8), (eight_devices[:1], 4)):
    feats = features.FeatureSet(features.FeatureExtractor(TinyTaps(), mesh.make_mesh(devices),
                                                          batch))
    feats.add(images[:5])
    feats.add(images[5:])
    got[len(devices)] = feats.gather()
  for tap in ("pool", "spatial", "logits"):
    assert got[8][tap].shape[0] == 11
    np.testing.assert_allclose(got[8][tap], got[1][tap], rtol=1e-6, atol=1e-6)


def _config(weights, ref, **evals):
  c = gan_config.get_config()
  c.total_steps = 2
  c.evals = ml_collections.ConfigDict()
  for name, kind in evals.items():
    c.evals[name] = ml_collections.ConfigDict()
    c.evals[name].type = kind
    c.evals[name].num_samples = 10  # not a multiple of the 8 devices
    c.evals[name].batch_size = 8
    c.evals[name].weights = weights
    if kind != "inception_score":
      c.evals[name].reference = ref
  return c


def test_the_four_evaluators_on_gan_samples_share_one_draw(weights_file, reference_file,
                                                           eight_devices, tmp_path, monkeypatch,
                                                           tiny_network, sample_metrics):
  cfg = _config(weights_file, reference_file, fid="fid", sfid="sfid", pr="prec_recall",
                inception="inception_score")
  cfg.evals.inception.split_size = 5
  draws = []
  add = features.FeatureSet.add
  monkeypatch.setattr(features.FeatureSet, "add", lambda self, x: draws.append(len(x)) or add(
      self, x))
  state = loop.run(GanTask(cfg), cfg, str(tmp_path), "train", devices=eight_devices)
  assert draws == [8, 2], "one draw of 10 samples in chunks of 8, shared by all four"
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  logged = next(r for r in rows if "fid/fid" in r)
  assert logged["fid/fid"] > 0 and logged["sfid/sfid"] > 0
  assert 0 <= logged["pr/precision"] <= 1 and 0 <= logged["pr/recall"] <= 1
  assert logged["inception/inception_score"] >= 1 and "inception/inception_score_std" in logged
  # The logged FID is the FID of the 10 samples --mode sample draws with the same seed (in
  # one piece here, in chunks of 8 and 2 in the evaluator).
  rt_mesh = mesh.make_mesh(eight_devices)
  from collage.train.sampling import (  # pylint: disable=import-outside-toplevel
      Sampler, task_options)
  sampler = Sampler(GanTask(cfg), rt_mesh, task_options(cfg.sample))
  imgs = sampler(state.eval_params, state.model_state, 10, 0)["image"]
  feats = features.FeatureSet(tiny_network(None, rt_mesh, 8))
  feats.add(features.to_uint8(imgs))
  ref = reference.load(reference_file)
  fid = frechet.frechet_distance_from_features(feats.gather()["pool"], ref.mu, ref.sigma)
  assert logged["fid/fid"] == pytest.approx(fid, rel=1e-6)


def test_missing_weights_stop_the_run_at_start_up_with_one_message(tmp_path):
  cfg = _config("", "", fid="fid")
  with pytest.raises(ConfigError) as e:
    loop.run(GanTask(cfg), cfg, str(tmp_path / "run"), "train")
  msg = str(e.value)
  assert "\n" not in msg and "inception-2015-12-05.tgz" in msg
  assert "python -m collage.nn.inception_convert" in msg
  assert "--config.evals.fid.weights=" in msg
  assert not (tmp_path / "run").exists(), "nothing is written"
  cfg = _config(str(tmp_path / "absent.npz"), "", fid="fid")
  with pytest.raises(ConfigError, match="--config.evals.fid.weights.*does not exist"):
    loop.run(GanTask(cfg), cfg, str(tmp_path / "run"), "train")


def test_missing_or_foreign_reference_stops_the_run(weights_file, reference_file, tmp_path,
                                                    tiny_network):
  cfg = _config(weights_file, "", pr="prec_recall")
  with pytest.raises(ConfigError, match="collage.evals.reference_stats.*"
                                        "--config.evals.pr.reference="):
    loop.run(GanTask(cfg), cfg, str(tmp_path / "run"), "train")
  other = tmp_path / "other_weights.npz"
  inception_io.save(other, inception.random_weights(1), source="other")
  cfg = _config(str(other), reference_file, sfid="sfid")
  with pytest.raises(ConfigError, match="were made with Inception weights sha256 .* not with "
                                        "these weights"):
    loop.run(GanTask(cfg), cfg, str(tmp_path / "run"), "train")
  assert not (tmp_path / "run").exists()
  cfg = _config(weights_file, reference_file, fid="fid")
  cfg.evals.fid.nmu_samples = 3
  with pytest.raises(ConfigError, match="unknown fields \\['nmu_samples'\\].*num_samples"):
    loop.run(GanTask(cfg), cfg, str(tmp_path / "run"), "train")
