"""grain pipelines: determinism, augmentation, sharding, checkpointing, eval padding."""

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from collage.data import augment, pipeline
from collage.data.sources import ArraySource, JoinedSource, open_source, parse_source


def _take(it, n):
  return [next(it) for _ in range(n)]


def _id_source(n, size=6, channels=3):
  """n constant images; image i has value 10 * i, so a crop identifies its image."""
  return ArraySource([np.full((size, size, channels), 10 * i, np.uint8) for i in range(n)])


def _ids(batch):
  img = batch["image"]
  ids = np.rint(img[..., 0].reshape(img.shape[0], -1).mean(1) * 255 / 10).astype(int)
  return ids.tolist()


def test_train_batch_shape_dtype_range():
  it = pipeline.make_image_dataset("embedded", split="train", crop_size=(32, 48),
                                   batch_size=4, seed=0)
  b = next(it)
  assert set(b) == {"image"}
  assert b["image"].shape == (4, 32, 48, 3) and b["image"].dtype == np.float32
  assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0 and b["image"].std() > 0.01
  gray = next(pipeline.make_image_dataset("embedded", split="train", crop_size=16,
                                          batch_size=2, seed=0, channels=1))
  assert gray["image"].shape == (2, 16, 16, 1)


def test_same_seed_same_batches_different_seed_differs():
  kw = dict(split="train", crop_size=24, batch_size=4)
  a = _take(pipeline.make_image_dataset("embedded", seed=3, **kw), 3)
  b = _take(pipeline.make_image_dataset("embedded", seed=3, **kw), 3)
  c = _take(pipeline.make_image_dataset("embedded", seed=4, **kw), 3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  assert any(not np.array_equal(x["image"], z["image"]) for x, z in zip(a, c))


def test_every_epoch_is_a_fresh_permutation():
  it = pipeline.make_image_dataset(_id_source(12), split="train", crop_size=4,
                                   batch_size=12, seed=0, augment=False)
  epochs = [_ids(b) for b in _take(it, 3)]
  for e in epochs:
    assert sorted(e) == list(range(12))
  assert epochs[0] != epochs[1] and epochs[1] != epochs[2]


def test_flips_and_rotations_happen_and_are_dihedral():
  base = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3) * 5
  variants = [augment.to_float(augment.dihedral(base, k)) for k in range(8)]
  src = ArraySource([base])
  seen = set()
  for b in _take(pipeline.make_image_dataset(src, split="train", crop_size=4,
                                             batch_size=16, seed=0), 4):
    for img in b["image"]:
      matches = [k for k, v in enumerate(variants) if np.array_equal(img, v)]
      assert len(matches) == 1
      seen.add(matches[0])
  assert seen == set(range(8))
  plain = next(pipeline.make_image_dataset(src, split="train", crop_size=4, batch_size=8,
                                           seed=0, augment=False))
  assert all(np.array_equal(img, variants[0]) for img in plain["image"])


def test_non_square_crops_keep_shape_and_crops_move():
  image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
  b = next(pipeline.make_image_dataset(ArraySource([image]), split="train",
                                       crop_size=(6, 10), batch_size=32, seed=1))
  assert b["image"].shape == (32, 6, 10, 3)
  assert len({x.tobytes() for x in b["image"]}) > 16


def test_process_shares_are_disjoint_cover_and_match_single_process():
  n, count, per = 12, 3, 4  # one global batch = one epoch
  src = _id_source(n)
  shares = []
  for p in range(count):
    it = pipeline.make_image_dataset(src, split="train", crop_size=4, batch_size=per,
                                     seed=7, process_index=p, process_count=count)
    shares.append(_take(it, 2))
  for k in range(2):
    ids = [i for p in range(count) for i in _ids(shares[p][k])]
    assert sorted(ids) == list(range(n))  # disjoint and covering
  single = _take(pipeline.make_image_dataset(src, split="train", crop_size=4,
                                             batch_size=n, seed=7), 2)
  for k in range(2):  # global batch k holds the same crops, however many processes
    joined = np.stack([shares[i % count][k]["image"][i // count] for i in range(n)])
    np.testing.assert_array_equal(joined, single[k]["image"])


def test_checkpoint_state_resumes_at_the_same_batch():
  kw = dict(split="train", crop_size=16, batch_size=5, seed=11)
  it = pipeline.make_image_dataset("embedded", **kw)
  _take(it, 4)  # crosses an epoch boundary (14 train images)
  state = it.get_state()
  expected = _take(it, 3)
  fresh = pipeline.make_image_dataset("embedded", **kw)
  fresh.set_state(state)
  for x, y in zip(expected, _take(fresh, 3)):
    np.testing.assert_array_equal(x["image"], y["image"])


def test_eval_is_finite_in_order_padded_and_sharded():
  n, count, per = 10, 3, 2  # global batch 6: padded to 12, two batches per process
  src = _id_source(n)
  real = []
  for p in range(count):
    batches = list(pipeline.make_image_dataset(src, split="eval", crop_size=4, batch_size=per,
                                               process_index=p, process_count=count))
    assert len(batches) == 2
    for b in batches:
      assert b["image"].shape == (per, 4, 4, 3) and b["mask"].shape == (per,)
      real += [i for i, m in zip(_ids(b), b["mask"]) if m == 1.0]
  assert sorted(real) == list(range(n))
  one = list(pipeline.make_image_dataset(src, split="eval", crop_size=4, batch_size=4))
  assert [i for b in one for i in _ids(b)] == list(range(10)) + [0, 1]
  assert one[-1]["mask"].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_eval_center_crop_and_full_images():
  image = np.arange(8 * 8, dtype=np.uint8).reshape(8, 8, 1) * 3
  b = next(pipeline.make_image_dataset(ArraySource([image]), split="eval", crop_size=4,
                                       batch_size=1, channels=1))
  np.testing.assert_array_equal(b["image"][0], augment.to_float(image[2:6, 2:6]))
  full = list(pipeline.make_image_dataset("embedded", split="eval", crop_size=None,
                                          batch_size=1))
  assert [f["image"].shape for f in full] == [(1, 512, 512, 3), (1, 400, 600, 3),
                                              (1, 512, 512, 3)]
  with pytest.raises(ValueError, match="different shapes"):
    list(pipeline.make_image_dataset("embedded", split="eval", crop_size=None, batch_size=3))


def test_too_small_image_is_a_clear_error():
  src = ArraySource([np.zeros((8, 8, 3), np.uint8)], names=["tiny.png"])
  with pytest.raises(ValueError, match=r"tiny.png.*8x8.*16x16"):
    next(pipeline.make_image_dataset(src, split="train", crop_size=16, batch_size=1))


def test_bad_arguments():
  with pytest.raises(ValueError, match="valid forms"):
    parse_source("imagenet")
  with pytest.raises(ValueError, match="split"):
    pipeline.make_image_dataset("embedded", split="test", crop_size=8, batch_size=1)
  with pytest.raises(ValueError, match="process_index"):
    pipeline.make_image_dataset("embedded", split="train", crop_size=8, batch_size=1,
                                process_index=2, process_count=2)


def test_parse_source_grammar():
  assert parse_source("embedded").kind == "embedded"
  assert parse_source("folder:/a/b:c").path == "/a/b:c"
  s = parse_source("tfds:cifar10")
  assert (s.kind, s.path, s.split) == ("tfds", "cifar10", "")
  s = parse_source("tfds:coco/2017:1.1.0:validation[:10%]")
  assert (s.path, s.split) == ("coco/2017:1.1.0", "validation[:10%]")


def _write_folder(folder, n):
  os.makedirs(folder / "nested", exist_ok=True)
  rng = np.random.default_rng(0)
  for i in range(n):
    image = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
    sub = folder / "nested" if i % 2 else folder
    Image.fromarray(image).save(sub / f"img{i}.PNG")


def test_folder_source_reads_lazily_and_names_corrupt_files(tmp_path):
  _write_folder(tmp_path, 5)
  src = open_source(f"folder:{tmp_path}", channels=1)
  assert len(src) == 5 and src[0]["image"].shape == (20, 24, 1)
  batches = _take(pipeline.make_image_dataset(f"folder:{tmp_path}", split="train",
                                              crop_size=16, batch_size=3, seed=0), 3)
  assert all(b["image"].shape == (3, 16, 16, 3) for b in batches)
  (tmp_path / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
  it = pipeline.make_image_dataset(f"folder:{tmp_path}", split="eval", crop_size=16,
                                   batch_size=6)
  with pytest.raises(ValueError, match="zz_broken.png"):
    list(it)


def test_folder_source_keeps_decoded_images_up_to_its_budget(tmp_path, monkeypatch):
  from collage.data import sources  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  for i in range(3):  # 20 x 24 RGB: 1440 bytes each
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
  decoded = []
  real = sources.load_image
  monkeypatch.setattr(sources, "load_image", lambda p: decoded.append(p) or real(p))
  src = sources.FolderSource(tmp_path, cache_mb=2 * 1440 / 2**20)  # room for two images
  first = [src[i]["image"] for i in range(3)]
  again = [src[i]["image"] for i in range(3)]
  assert len(decoded) == 4  # images 0 and 1 decoded once, image 2 (over budget) twice
  assert again[0] is first[0] and again[1] is first[1] and again[2] is not first[2]
  np.testing.assert_array_equal(again[2], first[2])
  with pytest.raises(ValueError, match="read-only"):
    first[0][0, 0, 0] = 1  # a cached image is shared: nobody may write into it
  decoded.clear()
  nocache = sources.FolderSource(tmp_path, cache_mb=0)
  for _ in range(2):
    nocache[0]  # pylint: disable=pointless-statement
  assert len(decoded) == 2
  with pytest.raises(ValueError, match="cache_mb"):
    sources.FolderSource(tmp_path, cache_mb=-1)
  # grain worker processes get a pickled copy: same images, its own empty cache.
  copy = pickle.loads(pickle.dumps(src))
  assert not copy._cache  # pylint: disable=protected-access
  np.testing.assert_array_equal(copy[1]["image"], first[1])


def test_epoch_shuffle_is_a_pure_function_of_the_index():
  src = list(range(7))
  a, b = pipeline.EpochShuffle(src, seed=5), pipeline.EpochShuffle(src, seed=5)
  seq = [a[i] for i in range(70)]
  assert seq == [b[i] for i in reversed(range(70))][::-1]  # any access order, same elements
  epochs = [seq[k:k + 7] for k in range(0, 70, 7)]
  assert all(sorted(e) == src for e in epochs)
  assert len({tuple(e) for e in epochs}) > 5  # a fresh order most epochs
  assert [pipeline.EpochShuffle(src, seed=6)[i] for i in range(70)] != seq
  assert a[10**12] in src  # far epochs need no history
  # Interleaved reads (reader threads) keep a bounded number of epoch orders.
  c = pipeline.EpochShuffle(src, seed=5)
  c.keep = 8
  for i in np.random.default_rng(0).permutation(7 * 1000):
    c[int(i)]  # pylint: disable=pointless-statement
  assert len(c._recent) == 8  # pylint: disable=protected-access
  assert [pickle.loads(pickle.dumps(a))[i] for i in range(70)] == seq  # for worker processes


def test_folder_source_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    open_source(f"folder:{tmp_path / 'absent'}")
  with pytest.raises(ValueError, match="no image file"):
    open_source(f"folder:{tmp_path}")


# shared/ lies beside the project root (DEVELOPERS.md), in CI as here.
AERIALS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       os.pardir, "shared", "data", "aerials")


@pytest.mark.skipif(not os.path.isdir(AERIALS), reason="shared aerial photographs absent")
def test_real_aerials_folder():
  src = open_source(f"folder:{AERIALS}")
  files = [f for f in os.listdir(AERIALS) if f.endswith(".png")]
  assert len(src) == len(files) >= 12 and src[0]["image"].shape == (512, 512, 3)
  b = next(pipeline.make_image_dataset(f"folder:{AERIALS}", split="train", crop_size=64,
                                       batch_size=4, seed=0))
  assert b["image"].shape == (4, 64, 64, 3)


def test_a_joined_source_reads_its_parts_in_order():
  a, b = _id_source(2), _id_source(3)
  joined = JoinedSource([a, b])
  assert len(joined) == 5
  for i, want in enumerate([a[0], a[1], b[0], b[1], b[2]]):
    np.testing.assert_array_equal(joined[i]["image"], want["image"])
  with pytest.raises(IndexError):
    joined[5]  # pylint: disable=pointless-statement
