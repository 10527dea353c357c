"""The digit feature network: a small CNN classifier of 28x28 digits, and its weight file.

What Inception is to FID on natural images, this network is to the sample quality of the
generative models trained on the embedded digits (``collage.data.digits``): Frechet distance,
KID, precision and recall are computed over its penultimate features, as the MNIST literature
does when Inception does not fit. The shipped weights (:data:`SHIPPED`, checked against
:data:`SHIPPED_SHA256` on load) were trained on the 4,500 "train" digits only; the recipe, the
held-out accuracy and how to retrain are in ``collage/assets/digit_features/README.md``.

Input: digits ``[N, 28, 28, 1]`` with pixel values in 0..255 (uint8, or float holding 0..255:
a library image in [0, 1] is multiplied by 255 first); the network scales by 1/255 itself.
Outputs (:meth:`DigitClassifier.__call__`):

  features  [N, feature_dim]  float32, the penultimate layer (after its ReLU)
  logits    [N, 10]           float32, the class scores

The layers (``width`` w, 3x3 convolutions with SAME padding, each followed by a ReLU)::

  28x28x1 -> conv w -> conv w /2 -> conv 2w -> conv 2w /2 -> conv 2w /2 -> 4x4x2w flattened
          -> dense feature_dim (ReLU): the features -> dense 10: the logits

There is no normalization layer and nothing depends on the batch: an image's features are a
function of that image alone, in training and in evaluation. Convolutions and matmuls run at
full float32 precision, so a GPU's TF32 does not move the features.

The weight file (:func:`save`; :func:`load`, or :func:`read` for any file) is a ``.npz`` holding every parameter (float32,
keyed by its path in the module, e.g. ``conv1/kernel``) and three records:

  __format__   :data:`FORMAT`
  __config__   the architecture, :class:`DigitFeaturesConfig` as JSON (checked against the
               arrays' shapes on load)
  __meta__     free JSON: how the weights were made (run, step, held-out accuracy)

It is written byte-for-byte reproducibly (members sorted, stored uncompressed, zip dates fixed).
A missing, truncated, corrupt or foreign file, or the shipped file changed, raises
:class:`WeightFileError`, never loads into garbage.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from collage.nn import weight_files
from collage.nn.bridge import ModuleBridge
from collage.nn.weight_files import file_sha256  # re-exported: a file's fingerprint

SIDE, NUM_CLASSES = 28, 10
INPUT_SCALE = 1.0 / 255.0  # pixel values 0..255 -> [0, 1] inside the network
FORMAT = "collage-digit-features/1"
_RECORDS = ("__format__", "__config__", "__meta__")
SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets",
                       "digit_features", "weights.npz")
SHIPPED_SHA256 = "254bee12df60b8b7daeabada672543c75354178e6fd2ff2f217f5637bbec08af"
FEATURE_DIM = 128  # the shipped network's feature_dim
HOW_TO_MAKE = (
    "train one with `python -m experiments.main --config experiments/configs/digit_features.py "
    "--workdir runs/digit_features` and export it with `python -m "
    "experiments.tasks.digit_features export --workdir runs/digit_features --out FILE` "
    "(collage/assets/digit_features/README.md)")
# Convolutions and matmuls at full float32 precision (a GPU's TF32 would move the features).
_PRECISION = jax.lax.Precision.HIGHEST


# -- the network ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DigitFeaturesConfig:
  """The architecture (hashable; stored in the weight file).

  Attributes:
    width: channels of the first two convolutions; the last three have 2 * width.
    feature_dim: D, the size of the penultimate layer (the features).
  """
  width: int = 32
  feature_dim: int = FEATURE_DIM

  def __post_init__(self):
    for name in ("width", "feature_dim"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"DigitFeaturesConfig.{name} must be a positive int, got {value!r}")


# (name, output channels as a multiple of width, stride) of the five convolutions.
_CONVS = (("conv1", 1, 1), ("conv2", 1, 2), ("conv3", 2, 1), ("conv4", 2, 2), ("conv5", 2, 2))
_FINAL_SIDE = 4  # 28 -> 14 -> 7 -> 4 after the three stride-2 convolutions (SAME padding)


class DigitClassifier(nnx.Module):
  """The CNN of the module docstring. ``images: [N, 28, 28, 1]`` in 0..255 -> features, logits."""

  def __init__(self, cfg: DigitFeaturesConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    cin = 1
    for name, mult, stride in _CONVS:
      cout = mult * cfg.width
      setattr(self, name, nnx.Conv(cin, cout, (3, 3), strides=(stride, stride), padding="SAME",
                                   precision=_PRECISION, rngs=rngs))
      cin = cout
    self.features = nnx.Linear(_FINAL_SIDE * _FINAL_SIDE * cin, cfg.feature_dim,
                               precision=_PRECISION, rngs=rngs)
    self.logits = nnx.Linear(cfg.feature_dim, NUM_CLASSES, precision=_PRECISION, rngs=rngs)

  def __call__(self, images: jax.Array, *, dropout: float = 0.0,
               rng: jax.Array | None = None) -> dict[str, jax.Array]:
    """images: [N, 28, 28, 1] uint8 or float in 0..255 -> {"features": [N, D], "logits": [N, 10]}.

    ``dropout`` (training only, with ``rng``): the fraction of the features zeroed, the rest
    scaled up, before the logits; the returned features are the undropped ones.
    """
    check_shape(images.shape)
    x = jnp.asarray(images, jnp.float32) * INPUT_SCALE
    for name, _, _ in _CONVS:
      x = jax.nn.relu(getattr(self, name)(x))
    feats = jax.nn.relu(self.features(x.reshape(x.shape[0], -1)))
    h = feats
    if dropout > 0.0:
      if rng is None:
        raise ValueError("dropout > 0 needs a key: pass rng=")
      keep = jax.random.bernoulli(rng, 1.0 - dropout, h.shape)
      h = jnp.where(keep, h / (1.0 - dropout), 0.0)
    return {"features": feats, "logits": self.logits(h)}


def check_shape(shape: tuple[int, ...]) -> None:
  """Raises ``ValueError`` unless ``shape`` is [N, 28, 28, 1]."""
  if len(shape) != 4 or tuple(shape[1:]) != (SIDE, SIDE, 1):
    raise ValueError(f"the digit feature network takes digits [N, {SIDE}, {SIDE}, 1] with values "
                     f"0..255, got shape {tuple(shape)}")


@functools.lru_cache(maxsize=8)
def bridge(cfg: DigitFeaturesConfig) -> ModuleBridge:
  """The NNX bridge of the architecture ``cfg`` (params: flat dict keyed by path)."""
  return ModuleBridge(nnx.eval_shape(lambda: DigitClassifier(cfg, rngs=nnx.Rngs(0))))


def init_params(cfg: DigitFeaturesConfig, rng: jax.Array) -> dict[str, jax.Array]:
  """Fresh parameters (Flax's default initializers): ``{path: array}``."""
  return bridge(cfg).params(DigitClassifier(cfg, rngs=nnx.Rngs(rng)))


def param_shapes(cfg: DigitFeaturesConfig) -> dict[str, tuple[int, ...]]:
  """Every parameter of the architecture and its shape, by path (the weight file's keys)."""
  abstract = nnx.eval_shape(lambda: DigitClassifier(cfg, rngs=nnx.Rngs(0)))
  return {k: tuple(v.shape) for k, v in bridge(cfg).params(abstract).items()}


def apply(cfg: DigitFeaturesConfig, params: Mapping[str, Any], images: jax.Array, *,
          dropout: float = 0.0, rng: jax.Array | None = None) -> dict[str, jax.Array]:
  """The network ``cfg`` with ``params`` on ``images`` (pure, traceable)."""
  return bridge(cfg).merge(params)(images, dropout=dropout, rng=rng)


# -- the weight file ----------------------------------------------------------------------------
class WeightFileError(ValueError):
  """A weight file that is missing, not ours, truncated, corrupt, inconsistent or changed."""


def _check_arrays(arrays: Mapping[str, Any], cfg: DigitFeaturesConfig, source: str) -> None:
  """Raises ``ValueError`` naming every missing, unexpected or mis-shaped array."""
  shapes = param_shapes(cfg)
  missing = sorted(set(shapes) - set(arrays))
  unexpected = sorted(set(arrays) - set(shapes))
  wrong = sorted(f"{k} {tuple(np.shape(arrays[k]))} (expected {shapes[k]})"
                 for k in set(shapes) & set(arrays) if tuple(np.shape(arrays[k])) != shapes[k])
  problems = [f"{len(items)} {what}: {', '.join(items[:5])}" for what, items in
              (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong)) if items]
  if problems:
    raise ValueError(f"{source} does not hold the {len(shapes)} parameters of the digit feature "
                     f"network {cfg}: {'; '.join(problems)}")


def save(path: str | os.PathLike, params: Mapping[str, Any], cfg: DigitFeaturesConfig,
         meta: Mapping[str, Any] | None = None) -> str:
  """Writes a weight file atomically (temporary file, then rename); returns its sha256.

  Args:
    path: the ``.npz`` to write (its folder must exist).
    params: ``{path: array}`` of the architecture ``cfg`` (stored as float32).
    cfg: the architecture.
    meta: JSON-able facts about the weights (run, step, held-out accuracy), stored as they are.

  Raises:
    ValueError: ``params`` do not match ``cfg`` (naming every difference) or are not finite.
  """
  _check_arrays(params, cfg, "the parameters to save")
  members = {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in params.items()}
  bad = sorted(k for k, v in members.items() if not np.all(np.isfinite(v)))
  if bad:
    raise ValueError(f"parameters not finite: {', '.join(bad[:5])}")
  members.update({"__format__": np.array(FORMAT),
                  "__config__": np.array(json.dumps(dataclasses.asdict(cfg), sort_keys=True)),
                  "__meta__": np.array(json.dumps(dict(meta or {}), sort_keys=True))})
  return weight_files.write(path, members, prefix=".digit_features_")


def _config_of(text: str, path: str) -> DigitFeaturesConfig:
  """The architecture recorded in a file; ``WeightFileError`` when it is not one."""
  fields = {f.name for f in dataclasses.fields(DigitFeaturesConfig)}
  try:
    raw = json.loads(text)
    if not isinstance(raw, dict) or set(raw) != fields:
      raise ValueError(f"fields {sorted(raw) if isinstance(raw, dict) else raw!r}, expected "
                       f"{sorted(fields)}")
    return DigitFeaturesConfig(**raw)
  except (ValueError, TypeError) as e:
    raise WeightFileError(f"{path}: its architecture record __config__ is not valid ({e}); "
                          f"{HOW_TO_MAKE}") from None


def load(path: str | os.PathLike | None = None) -> "DigitFeatures":
  """Reads and checks a weight file; ``None`` is the shipped one (:data:`SHIPPED`), whose sha256
  must be :data:`SHIPPED_SHA256` (also when it is named by its path).

  Raises:
    WeightFileError: one line naming the file and the problem (missing; the shipped file's
      sha256 is not :data:`SHIPPED_SHA256`; not a weight file; truncated or corrupt; another
      format; an invalid architecture record; a parameter missing, unexpected, mis-shaped, not
      float32 or not finite), and how to make a good one.
  """
  shipped = path is None or os.path.abspath(os.fspath(path)) == os.path.abspath(SHIPPED)
  net = read(SHIPPED if path is None else path)
  if shipped and net.sha256 != SHIPPED_SHA256:
    raise WeightFileError(
        f"the shipped digit feature weights {net.path} have sha256 {net.sha256}, not the "
        f"recorded SHIPPED_SHA256 {SHIPPED_SHA256}: the file was changed or damaged. Restore it "
        "from the repository; new weights are shipped by exporting them there and updating "
        "SHIPPED_SHA256 (collage/assets/digit_features/README.md)")
  return net


def read(path: str | os.PathLike) -> "DigitFeatures":
  """Reads and checks any weight file, without comparing it with the shipped fingerprint (the
  export reads back what it wrote with it, before ``SHIPPED_SHA256`` names new weights).

  Raises:
    WeightFileError: as :func:`load`, the fingerprint aside.
  """
  path = os.fspath(path)
  fix = f"; {HOW_TO_MAKE}"
  data, digest = weight_files.read(path, what="digit feature weight file", fmt=FORMAT,
                                   fix=HOW_TO_MAKE, error=WeightFileError)
  missing = [r for r in _RECORDS if r not in data]
  if missing:
    raise WeightFileError(f"{path} lacks the records {missing}{fix}")
  cfg = _config_of(str(data["__config__"]), path)
  try:
    meta = json.loads(str(data["__meta__"]))
    if not isinstance(meta, dict):
      raise ValueError(f"a {type(meta).__name__}, not an object")
  except ValueError as e:
    raise WeightFileError(f"{path}: its record __meta__ is not a JSON object ({e}){fix}"
                          ) from None
  arrays = {k: v for k, v in data.items() if k not in _RECORDS}
  try:
    _check_arrays(arrays, cfg, path)
  except ValueError as e:
    raise WeightFileError(f"{e}{fix}") from None
  bad = sorted(k for k, v in arrays.items() if v.dtype != np.float32 or not np.all(np.isfinite(v)))
  if bad:
    raise WeightFileError(f"{path}: parameters not finite float32: {', '.join(bad[:5])}{fix}")
  return DigitFeatures(cfg, {k: jnp.asarray(v) for k, v in arrays.items()}, digest,
                       os.path.abspath(path), meta)


@dataclasses.dataclass(frozen=True, eq=False)
class DigitFeatures:
  """A loaded digit feature network. Compared and hashed by identity (a cache key).

  Attributes:
    config: the architecture.
    params: ``{path: float32 array}``, the pytree :meth:`apply` takes.
    sha256: the weight file's fingerprint (record it next to statistics made with it).
    path: the weight file.
    meta: what the file says about how the weights were made.
  """
  config: DigitFeaturesConfig
  params: dict[str, jax.Array]
  sha256: str
  path: str = ""
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def feature_dim(self) -> int:
    """D, the size of the features."""
    return self.config.feature_dim

  def apply(self, params: Mapping[str, Any], images: jax.Array) -> dict[str, jax.Array]:
    """Pure and jittable: images [N, 28, 28, 1] uint8 or float in 0..255 ->
    ``{"features": float32 [N, D], "logits": float32 [N, 10]}``."""
    return apply(self.config, params, images)

  def features(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Features of host images, ``batch_size`` at a time: [N, 28, 28, 1] -> float32 [N, D].

    Raises:
      ValueError: a shape other than [N, 28, 28, 1], a non-positive batch size, or float
        values that are not finite, outside [0, 255], or with a maximum in (0, 1] (images in
        [0, 1], binarized ones too: multiply them by 255 first; all-zero images pass).
    """
    return self.outputs(images, batch_size)["features"]

  def outputs(self, images: np.ndarray, batch_size: int = 500) -> dict[str, np.ndarray]:
    """Both outputs of host images (see :meth:`features`): ``{"features", "logits"}`` numpy."""
    images = np.asarray(images)
    check_shape(images.shape)
    check_values(images)
    if isinstance(batch_size, bool) or int(batch_size) < 1:
      raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n, b = images.shape[0], min(int(batch_size), max(1, images.shape[0]))
    outs: dict[str, list[np.ndarray]] = {"features": [], "logits": []}
    for start in range(0, n, b):  # every call has b rows: one compilation
      chunk = images[start:start + b]
      pad = b - chunk.shape[0]
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
      out = _jitted_apply(self.config)(self.params, jnp.asarray(chunk))
      for k in outs:
        outs[k].append(np.asarray(out[k])[:b - pad])
    empty = {"features": (0, self.feature_dim), "logits": (0, NUM_CLASSES)}
    return {k: np.concatenate(v).astype(np.float32) if v else np.zeros(empty[k], np.float32)
            for k, v in outs.items()}


@functools.lru_cache(maxsize=8)
def _jitted_apply(cfg: DigitFeaturesConfig):
  """``jit(apply)`` for ``cfg``, shared by every loaded network of that architecture."""
  return jax.jit(functools.partial(apply, cfg))


def check_values(images: np.ndarray) -> None:
  """Raises ``ValueError`` when host images are not digits with values 0..255 (see
  :meth:`DigitFeatures.features`); uint8 always passes."""
  if images.dtype == np.uint8 or images.size == 0:
    return
  if not np.issubdtype(images.dtype, np.number) or np.issubdtype(images.dtype, np.complexfloating):
    raise ValueError(f"digits must be uint8 or real numbers in 0..255, got dtype {images.dtype}")
  x = images.astype(np.float64)
  if not np.all(np.isfinite(x)):
    raise ValueError("digits hold non-finite values; the network takes values in 0..255")
  lo, hi = float(x.min()), float(x.max())
  if lo < 0.0 or hi > 255.0:
    raise ValueError(f"digit values span [{lo:.4g}, {hi:.4g}]; the network takes 0..255 "
                     "(clip or rescale the images yourself)")
  if 0.0 < hi <= 1.0:  # no 0..255 digit is that dark; [0, 1] images (binarized too) are
    raise ValueError(f"digit values span [{lo:.4g}, {hi:.4g}]: images in [0, 1]? The network "
                     "takes 0..255: multiply them by 255 first")
