"""Stored numbers for the shipped codecs: a change meant to keep behaviour must keep every file
and every decode byte for byte (in the spirit of CompressAI's expected outputs for its zoo).

One fixed crop of an embedded photograph (coffee, 60 x 90, so the tiles need padding) is
coded by every shipped fixed-rate model (``collage/assets/neural``), every retired one (whose
files must keep decoding), the per-tile model choice, test-time refinement, a gray crop, the
default variable-rate model (``collage/assets/neural_variable``, the context model since
session 8; also coded at 1/2 and 2/3 resolution) and its retired predecessor ``r4_var8`` at a
few qualities, and the PIFS codec.
For each case the test compares the SHA-256 of the file, the SHA-256 of the decoded pixels
and the decoded PSNR with the numbers below.

The numbers come from the CPU backend, which the suite runs on. A deliberate change of the
models or of the format makes new ones: ``python tests/codec/test_neural_regression.py``
prints the table in the form below.
"""

import hashlib
import os

import numpy as np
import pytest

from collage.codec import neural, neural_models
from collage.codec.pifs import PIFSCodec
from collage.data.embedded import embedded_images
from collage.metrics.distortion import psnr

# case -> (SHA-256 of the file, SHA-256 of the decoded uint8 pixels, decoded PSNR in dB).
EXPECTED = {
    "model r4_lam0.005": (
        "680abcf5d77e90116d0a538c521f1258d9c3ea35655916b12642af1b445fc6f0",
        "ced9762e18affedd8bc7b5d54f25375d086dd7bae226ede2f3f8a3310f0df6ac", 31.0310),
    "model r4_lam0.009": (
        "14637cd0e73a8a5e3f3dcd41c7c8be07274b10a1341be37123112d34b3ad9f20",
        "4f0b1c02ea9a0a3009677fbc31db7e6da0fe45eb7fe0fa862e0f06c2ba770e5f", 32.1898),
    "model r4_lam0.015": (
        "b4e50f9d59a64751b0d44aa46ffd6b7432d7abd6747ed00d1b20857fd9792b57",
        "e6749394a770c996db7ccb7d36d37cd59eee4d30bba5e61659d7f2a6ede9194f", 33.1470),
    "model r8_lam0.0008": (
        "a989d62c4e18d617751bddffb72c5816d0293aeb0116010df418e6f26a722742",
        "6f8b9e181a2cd110272db2484d9f146487ca9f8ca6585f4c47ce499251d57fd1", 28.0635),
    "model r8_lam0.003": (
        "4ffad0851983710085988fefee7488e594a408e750edad3a206b3e0f205a2b33",
        "89eb1fb59314c12911d91f56246fcb7d60c7e20193404a6454e0d514e46c454d", 30.2275),
    "model lam0.01": (
        "ed124218e0b0252cdbfa7907a9096e78c07d13a0867d54f92f6c87dc07f22aeb",
        "c02d5ddd0f9f92c1c04d6f6ea1ad19fb3b0518dc8e4d36f9589ebfd3d6aec7d4", 31.3106),
    "model lam0.04": (
        "508ee93067b34a75362afec9c2d2870fdd09dcc2dab5c7116b878d2587406329",
        "ea755e44e10392dddc850513e4ef070df3ecdfa7449413aebed2abc18a6cc64b", 32.2616),
    "model lam0.15": (
        "f11846c23d751108504e77017d9858dce0a1c981d90c6a6f1607605e3d03c93a",
        "bacecd4c3676225f62144d9e96066da2d45f2ed7e981893b99c6e2c8a0d190c9", 32.3657),
    "model s3_r4_lam0.005": (
        "5f2d8215f969dc4abf422d08ca5c8b3e3e5730777fce934799198d8fe35879a5",
        "de720ecd63f72afdc0d4566b83cddd59c2a2b51b1271eda637d8814929a426aa", 30.6772),
    "model s3_r4_lam0.009": (
        "b06372f6406b3feb112b0c4a01c36a32ebbdfca3c50ab79dc078de7a7d6c66a9",
        "5a4b6c7d2c03ec3c7201bc39bbb54c7bfdfe3a1fbb8ec197a898c089228ece0d", 31.8764),
    "model s3_r4_lam0.015": (
        "53084a7059320a90b874b6a866fc64d1a398ad3f37269ef65009f18c3e3fe88b",
        "f26611e5450f262f33d663ce81e8388317d676ccb64b1d1bda62bc69dd262970", 32.7009),
    "model s3_r8_lam0.0008": (
        "ca2ff3c15bdcca0f6a21aaacf8b4858aeeaebadca3f770bce4c6f82ae2f79283",
        "47feeb3ba874e9f046144e8ce5c9d5ab6b4edb28fa3f652ed7149ed0a3deb10b", 27.7880),
    "model s3_r8_lam0.003": (
        "7df74a5bbe5264c77960b1a6ee5329e0935dc33f84f3e4d239cfc5240d50403e",
        "aae948a259f32b599e925e3f25dcbcc5183a23a41230ff750158f115be2ae1a1", 30.0535),
    "mix q90": (
        "82380a4c2f2aff589975c4611a7cf348d375dc11e7879ada202086e12e01b324",
        "8116e6246bf2f40038dd224ea2060aee00204370093a5c511cf6399162b6924c", 32.9822),
    "refine30 q50": (
        "1a344627c2261ddc3561db47e9d02fe795470ce918424b4ff85fd63ad20e1596",
        "aeb2542dc60f1a7f346d3fdc2fbf34dfc41d94a0ea993adbb98cd9c51ad9ea1f", 30.6957),
    "gray q30": (
        "c1723e3ac9e922a25383535568fe5033817c0bcf1d3688b4cf4f7064880efcf6",
        "82622c7747e26266517f68eaf62b00536b40cc45b8c9b5f186ca195705de3ffb", 25.6337),
    "pifs q50": (
        "fde194594037b5a592901dad0caaa03ad82c886f2bcf4f7c9d0aef37beb28788",
        "37be41c42e14919d28e31b1a8b7d447d9e2a96ac7a50a8acfa0921f1b7866f1d", 28.2843),
    "var8 q10": (
        "9408d5734d2c6c83e4c8c5bf2651208ea746575aaf008abd8618c4cde39fb0b7",
        "ddbcc2f883e894cfeadd95ad876f387f5c4d88a596e7b6f62335d2bea3544d4b", 25.4700),
    "var8 q75": (
        "39c870e68cffa185788ee37b08b9f1aff5017b2b66beccac5903ba258dc635ac",
        "c30bd64bfe7cba56615076374a2bf7a73dde999bf05445d75dbc127ccfa37e8a", 32.8526),
    "var8 gray q40": (
        "54ed714b9ab2c1731f87440c80d9f0d9fc9b00ff9b35af10791247f881c4c7f2",
        "f38a8453f4fb0cc88634ecfb431a6d243b4de9de9b562915320790a828086bda", 24.8525),
    "var8 refine10 q60": (
        "2a40721a185294e8f670a0baf67d591668d8dffea66a5dc0b8bdb29b94353551",
        "f53f53b251cad7d705117c74a8dbd38361f1ba5513686f17e535f8af5548b857", 31.3224),
    # The default since session 8 (neural_variable/r4_ctx8, the context model).
    "variable q10": (
        "9d8a7829efbd6894b597b3c8549a23bb7828b04e12c40c556ae2a02dad620df0",
        "5ab5ce016e883c4f645624fb4aeb0315a4b951e4a64cf04342e652e1e69a34dc", 26.2302),
    "variable q75": (
        "4f8e05098a6b7966433a1b45612dcc81bb0013640563ebdeb8371ab66eeedd72",
        "df1b76dbb8ef9df40d0031a9c419ad6e942e5c66c11da72f4cd448035ff591ce", 33.2865),
    "variable gray q40": (
        "0864fdeefae26c16f463ea05041c0ff22689f70e12c54adb094a127b34b92ec8",
        "7b626585d362a56bc4dcea3b265bafb1fa9dc5d9ee5537829396615715b1cb40", 25.1702),
    "variable refine10 q60": (
        "73cc15f0c9e7c9c0036063d323855e302d759f24aea684eeb25ce4a12feb6d29",
        "54965ac2902bb70f3167b518537b231b433a698a5cf4e765095869afbdee9c21", 31.7334),
    # The default model coded at 1/2 and 2/3 resolution (file versions 5 and 6, session 10).
    "variable downscale2 q60": (
        "af1171e99f705fe7908b532bb073a46a309a754ad7cc096b1e66178efe10e828",
        "9e83d3272ed695bc665d4ca4ae91c205355ee421d54409ec5ffac38911a335bf", 28.7219),
    "variable downscale1.5 q75": (
        "f95790d0a689508c7cbd6fbee767aa1424365c2efbad74b5e7b5f0b171107f2b",
        "47db25442705209162164881aae3dd6825155459b00f69a66a320277ad63febf", 30.9763),
    "model r4_var8": (
        "c4a5d837e5ed4b43c568a7b0a7a38790d0d4761dd60354ba316d38f1729955d6",
        "4c4d86d1e72774656620207c3525437a0688b35655d24e4ecec20292ee0ae57e", 29.9573),
}
# SHA-256 of the scale-2 decode of the "mix q90" file.
EXPECTED_MIX_SCALE2 = "2eb9d74dfc0343a592188bcadeb8fbf436d6f8daf8e6d5eb6ac0e23df347a5d3"

SHIPPED = tuple(sorted(os.listdir(neural_models.ASSET_DIR)))
RETIRED = tuple(sorted(os.listdir(neural_models.RETIRED_DIR)))
_VAR8 = os.path.join(neural_models.RETIRED_DIR, "r4_var8")


def _colour() -> np.ndarray:
  """uint8 [60, 90, 3]: a crop of the coffee photograph (cup rim and saucer)."""
  return np.ascontiguousarray(dict(embedded_images(3, "eval"))["coffee"][100:160, 200:290])


def _gray() -> np.ndarray:
  """uint8 [40, 70, 1]: a crop of the gravel photograph."""
  return np.ascontiguousarray(dict(embedded_images(1, "eval"))["gravel"][200:240, 300:370])


def _case(name: str):
  """case name -> (codec, image, quality)."""
  if name.startswith("model "):
    model = name.split()[1]
    base = neural_models.RETIRED_DIR if model in RETIRED else neural_models.ASSET_DIR
    return neural.NeuralCollageCodec(model=os.path.join(base, model)), _colour(), 50
  return {
      "mix q90": lambda: (neural.NeuralCollageCodec(mix=True), _colour(), 90),
      "refine30 q50": lambda: (neural.NeuralCollageCodec("fixed", refine=30), _colour(), 50),
      "gray q30": lambda: (neural.NeuralCollageCodec("fixed"), _gray(), 30),
      "variable q10": lambda: (neural.NeuralCollageCodec(), _colour(), 10),
      "variable q75": lambda: (neural.NeuralCollageCodec(), _colour(), 75),
      "variable gray q40": lambda: (neural.NeuralCollageCodec(), _gray(), 40),
      "variable refine10 q60": lambda: (neural.NeuralCollageCodec(refine=10), _colour(), 60),
      # Coded at a lower resolution: file versions 5 (a whole D) and 6 (a fraction).
      "variable downscale2 q60": lambda: (neural.NeuralCollageCodec(downscale=2), _colour(), 60),
      "variable downscale1.5 q75": lambda: (neural.NeuralCollageCodec(downscale=1.5), _colour(),
                                            75),
      # The default of session 7, retired in session 8: its files and decodes are unchanged.
      "var8 q10": lambda: (neural.NeuralCollageCodec(_VAR8), _colour(), 10),
      "var8 q75": lambda: (neural.NeuralCollageCodec(_VAR8), _colour(), 75),
      "var8 gray q40": lambda: (neural.NeuralCollageCodec(_VAR8), _gray(), 40),
      "var8 refine10 q60": lambda: (neural.NeuralCollageCodec(_VAR8, refine=10), _colour(), 60),
      "pifs q50": lambda: (PIFSCodec(), _colour(), 50),
  }[name]()


CASES = ([f"model {m}" for m in SHIPPED + RETIRED]
         + ["mix q90", "refine30 q50", "gray q30", "pifs q50"]
         + [f"{m} {case}" for m in ("variable", "var8")
            for case in ("q10", "q75", "gray q40", "refine10 q60")]
         + ["variable downscale2 q60", "variable downscale1.5 q75"])


def _measure(name: str) -> tuple[str, str, float]:
  codec, image, quality = _case(name)
  data = codec.compress(image, quality)
  out = codec.decompress(data)
  return (hashlib.sha256(data).hexdigest(), hashlib.sha256(out.tobytes()).hexdigest(),
          psnr(out, image, 255.0))


def test_every_shipped_and_retired_model_has_stored_numbers():
  assert len(SHIPPED) == 5 and len(RETIRED) == 9
  assert os.listdir(neural_models.VARIABLE_DIR) == ["r4_ctx8"]
  assert sorted(EXPECTED) == sorted(CASES)


@pytest.mark.parametrize("name", CASES)
def test_files_and_decodes_are_unchanged(name):
  file_sha, pixels_sha, db = _measure(name)
  want_file, want_pixels, want_db = EXPECTED[name]
  assert db == pytest.approx(want_db, abs=1e-3)
  assert pixels_sha == want_pixels, "the decoded pixels changed"
  assert file_sha == want_file, "the file bytes changed"


def test_scaled_decode_is_unchanged():
  codec, image, quality = _case("mix q90")
  out = codec.decompress(codec.compress(image, quality), scale=2)
  assert out.shape == (120, 180, 3)
  assert hashlib.sha256(out.tobytes()).hexdigest() == EXPECTED_MIX_SCALE2


if __name__ == "__main__":
  for case in CASES:
    f, p, v = _measure(case)
    print(f'    "{case}": (\n        "{f}",\n        "{p}", {v:.4f}),')
  c, im, qual = _case("mix q90")
  scaled = c.decompress(c.compress(im, qual), scale=2)
  print(f'EXPECTED_MIX_SCALE2 = "{hashlib.sha256(scaled.tobytes()).hexdigest()}"')
