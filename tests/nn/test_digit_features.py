"""The digit feature network: the shipped weights give the recorded features and classify the
held-out digits, an image's features do not depend on its batch, and a missing, truncated,
corrupt, foreign, inconsistent or changed weight file is refused with WeightFileError."""

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.data import digits as digits_lib
from collage.nn import digit_features as df

TINY = df.DigitFeaturesConfig(width=4, feature_dim=8)

# The shipped network (sha256 254bee12...) on held-out digits 0, 1, 2 (all three are zeros),
# recorded when the weights were shipped: the sum of all 128 features, eight of them (the ones
# most active on these digits; a ReLU leaves most of the others at 0) and the logits.
RECORDED_FEATURE_SUMS = np.array([226.85623, 199.21649, 191.62590], np.float32)
RECORDED_INDICES = [33, 34, 81, 88, 97, 100, 121, 124]
RECORDED_FEATURES = np.array([
    [10.435541, 8.588305, 11.992056, 17.107798, 13.937876, 13.133505, 10.417542, 9.480627],
    [10.451986, 13.939965, 7.450827, 15.862327, 11.746051, 9.922401, 12.478255, 8.918144],
    [10.306127, 11.821733, 8.946884, 14.958432, 9.778930, 14.010656, 8.004774, 9.369473],
], np.float32)
RECORDED_LOGITS = np.array([
    [18.78228, -13.84835, -7.42881, -17.26556, -11.12411, -8.44413, 1.12042, -6.20515, -0.33605,
     5.15484],
    [19.67216, -9.26150, -7.04227, -14.72869, -9.97140, -14.10020, -2.25674, -5.19353, -2.57583,
     5.83197],
    [18.14708, -11.06204, -2.70598, -11.26912, -8.51851, -7.91809, -4.08238, -3.14707, 1.95746,
     2.71991],
], np.float32)


@pytest.fixture(scope="module")
def shipped():
  return df.load()


@pytest.fixture(scope="module")
def held_out():
  return digits_lib.digit_images("eval")


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("w") / "tiny.npz"
  params = jax.jit(lambda k: df.init_params(TINY, k))(jax.random.PRNGKey(0))
  sha = df.save(path, params, TINY, {"note": "random"})
  return path, {k: np.asarray(v) for k, v in params.items()}, sha


def test_the_shipped_file_is_small_and_its_recorded_fingerprint(shipped):
  assert shipped.sha256 == df.SHIPPED_SHA256 == df.file_sha256(df.SHIPPED)
  assert shipped.path == df.SHIPPED and shipped.feature_dim == df.FEATURE_DIM
  assert shipped.config == df.DigitFeaturesConfig()
  assert os.path.getsize(df.SHIPPED) < 2_000_000


def test_the_shipped_features_are_the_recorded_numbers(shipped, held_out):
  out = shipped.outputs(held_out[0][:3])
  feats = out["features"]
  assert feats.shape == (3, df.FEATURE_DIM) and feats.dtype == np.float32
  np.testing.assert_allclose(feats.sum(axis=1), RECORDED_FEATURE_SUMS, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(feats[:, RECORDED_INDICES], RECORDED_FEATURES, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(out["logits"], RECORDED_LOGITS, rtol=1e-4, atol=1e-4)


def test_the_shipped_network_classifies_the_held_out_digits(shipped, held_out):
  images, labels = held_out
  logits = shipped.outputs(images)["logits"]
  accuracy = float(np.mean(np.argmax(logits, axis=-1) == labels))
  assert accuracy >= 0.98, accuracy
  # The export recorded it; another machine may at most flip a borderline digit.
  assert accuracy == pytest.approx(shipped.meta["held_out_accuracy"], abs=1.5 / 500)


def test_apply_is_pure_and_jittable_on_uint8_and_float(shipped, held_out):
  images = held_out[0][:5]
  out = jax.jit(shipped.apply)(shipped.params, jnp.asarray(images))
  assert out["features"].shape == (5, df.FEATURE_DIM) and out["logits"].shape == (5, 10)
  assert out["features"].dtype == jnp.float32 and out["logits"].dtype == jnp.float32
  as_float = shipped.apply(shipped.params, jnp.asarray(images, jnp.float32))
  np.testing.assert_allclose(as_float["features"], out["features"], rtol=1e-6, atol=1e-6)
  assert np.all(np.asarray(out["features"]) >= 0.0)  # after the ReLU
  with pytest.raises(ValueError, match=r"takes digits \[N, 28, 28, 1\]"):
    shipped.apply(shipped.params, jnp.zeros((2, 32, 32, 1)))


def test_an_images_features_do_not_depend_on_its_batch(shipped, held_out):
  images = held_out[0]
  whole = shipped.features(images)                 # one batch of 500
  small = shipped.features(images, batch_size=7)   # 72 batches, the last one padded
  alone = np.stack([shipped.features(images[i:i + 1], batch_size=1)[0] for i in (0, 250, 499)])
  np.testing.assert_allclose(small, whole, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(alone, whole[[0, 250, 499]], rtol=1e-5, atol=1e-5)
  # The same digit among other digits, or among blank images: the same features.
  mixed = np.concatenate([np.zeros((3, 28, 28, 1), np.uint8), images[:1], images[100:104]])
  np.testing.assert_allclose(shipped.features(mixed)[3], whole[0], rtol=1e-5, atol=1e-5)
  assert shipped.features(images[:0]).shape == (0, df.FEATURE_DIM)


def test_images_that_are_not_0_to_255_digits_are_refused(shipped, held_out):
  images = held_out[0][:4]
  with pytest.raises(ValueError, match=r"images in \[0, 1\]\? .* multiply them by 255"):
    shipped.features(images / 255.0)
  binary = (images > 127).astype(np.float32)  # a Bernoulli decoder's {0, 1} samples
  with pytest.raises(ValueError, match=r"images in \[0, 1\]\? .* multiply them by 255"):
    shipped.features(binary)
  np.testing.assert_allclose(shipped.features(binary * 255.0),
                             shipped.features((binary * 255).astype(np.uint8)), rtol=1e-6,
                             atol=1e-6)
  assert shipped.features(np.zeros((1, 28, 28, 1), np.float32)).shape == (1, df.FEATURE_DIM)
  with pytest.raises(ValueError, match=r"span \[-1, 254\]"):
    shipped.features(images.astype(np.float32) - 1.0)
  with pytest.raises(ValueError, match="non-finite"):
    shipped.features(np.full((1, 28, 28, 1), np.nan, np.float32))
  with pytest.raises(ValueError, match=r"\[N, 28, 28, 1\] .* got shape \(4, 28, 28\)"):
    shipped.features(images[..., 0])
  with pytest.raises(ValueError, match="batch_size must be a positive int"):
    shipped.features(images, batch_size=0)
  # Whole numbers in 0..255 as float are digits, however dark.
  np.testing.assert_allclose(shipped.features(images.astype(np.float64)),
                             shipped.features(images), rtol=1e-6, atol=1e-6)


def test_save_and_load_round_trip_reproducibly(tiny_file, tmp_path):
  path, params, sha = tiny_file
  net = df.load(path)
  assert net.sha256 == sha and net.config == TINY and net.meta == {"note": "random"}
  for k, v in params.items():
    np.testing.assert_array_equal(np.asarray(net.params[k]), v)
  assert df.save(tmp_path / "again.npz", net.params, TINY, {"note": "random"}) == sha
  assert net.features(np.zeros((2, 28, 28, 1), np.uint8)).shape == (2, 8)


def _refused(path, *fragments):
  with pytest.raises(df.WeightFileError) as e:
    df.load(path)
  msg = str(e.value)
  assert "\n" not in msg and "experiments.tasks.digit_features export" in msg, msg
  for fragment in fragments:
    assert fragment in msg, msg


def test_missing_truncated_corrupt_and_foreign_files_are_refused(tiny_file, tmp_path):
  path, params, _ = tiny_file
  _refused(tmp_path / "absent.npz", "does not exist")
  data = path.read_bytes()
  for n, name in ((len(data) // 2, "half.npz"), (len(data) - 100, "tail.npz"), (10, "ten.npz")):
    (tmp_path / name).write_bytes(data[:n])
    _refused(tmp_path / name, "truncated or corrupt")
  flipped = bytearray(data)
  flipped[len(data) // 3] ^= 0xFF  # inside a stored array: the zip's CRC no longer matches
  (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
  _refused(tmp_path / "flipped.npz", "truncated or corrupt")
  np.savez(tmp_path / "foreign.npz", kernel=np.zeros(3))
  _refused(tmp_path / "foreign.npz", "not a collage digit feature weight file")


def test_a_file_whose_arrays_do_not_match_its_architecture_is_refused(tiny_file, tmp_path):
  path, params, _ = tiny_file
  with np.load(path) as f:
    members = {k: f[k] for k in f.files}
  other = dict(members, __config__=np.array(json.dumps(
      dataclasses.asdict(df.DigitFeaturesConfig(width=4, feature_dim=16)))))
  np.savez(tmp_path / "other.npz", **other)
  _refused(tmp_path / "other.npz", "mis-shaped: features/bias (8,) (expected (16,))")
  broken = dict(members, __config__=np.array('{"width": 4}'))
  np.savez(tmp_path / "broken.npz", **broken)
  _refused(tmp_path / "broken.npz", "__config__ is not valid")
  halved = dict(members, **{"logits/kernel": members["logits/kernel"].astype(np.float16)})
  np.savez(tmp_path / "halved.npz", **halved)
  _refused(tmp_path / "halved.npz", "not finite float32: logits/kernel")
  with pytest.raises(ValueError, match="1 missing: logits/bias"):
    df.save(tmp_path / "short.npz", {k: v for k, v in params.items() if k != "logits/bias"}, TINY)
  assert not (tmp_path / "short.npz").exists()


def test_a_changed_shipped_file_is_refused(tiny_file, tmp_path, monkeypatch):
  path, _, sha = tiny_file
  copy = tmp_path / "weights.npz"
  shutil.copyfile(path, copy)
  monkeypatch.setattr(df, "SHIPPED", str(copy))
  monkeypatch.setattr(df, "SHIPPED_SHA256", sha)
  assert df.load().sha256 == sha  # the recorded fingerprint: loads
  monkeypatch.setattr(df, "SHIPPED_SHA256", "0" * 64)
  with pytest.raises(df.WeightFileError, match=f"sha256 {sha}, not the recorded SHIPPED_SHA256"):
    df.load()
  with pytest.raises(df.WeightFileError, match="SHIPPED_SHA256"):
    df.load(str(copy))  # the shipped file named by its path is checked too
