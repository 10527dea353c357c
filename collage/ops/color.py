"""Colour transforms on float images in [0, 1]. Pure jnp.

Full-range JPEG / JFIF YCbCr (ITU-T T.871, BT.601 primaries), chroma centred on 0.5, used by
the PIFS codec (``collage.ops.pifs``) and the neural collage model (``collage.nn.neural_collage``).
"""

import jax
import jax.numpy as jnp
import numpy as np

_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114],
                        [-0.168735892, -0.331264108, 0.5],
                        [0.5, -0.418687589, -0.081312411]], np.float32)
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC.astype(np.float64)).astype(np.float32)


def rgb_to_ycbcr(x: jax.Array) -> jax.Array:
  """x: [..., 3] RGB in [0, 1] -> [..., 3] YCbCr, Y in [0, 1], Cb/Cr centred on 0.5."""
  y = jnp.einsum("...c,dc->...d", x, jnp.asarray(_RGB_TO_YCC))
  return y + jnp.asarray([0.0, 0.5, 0.5], y.dtype)


def ycbcr_to_rgb(y: jax.Array) -> jax.Array:
  """Inverse of :func:`rgb_to_ycbcr`. y: [..., 3] -> [..., 3] RGB (not clipped)."""
  y = y - jnp.asarray([0.0, 0.5, 0.5], y.dtype)
  return jnp.einsum("...c,dc->...d", y, jnp.asarray(_YCC_TO_RGB))
