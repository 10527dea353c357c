"""Fixtures of the neural codec's tests (``test_neural_*.py``): folders of small random models
(:mod:`tests.codec.neural_helpers`), built once per session."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collage.codec import base
from collage.nn import neural_collage as hn
from collage.nn import neural_collage_io
from tests.codec.neural_helpers import TINY, save_model


@pytest.fixture(scope="session")
def models(tmp_path_factory):
  """A folder of two fixed-rate models: "lo" (lam 0.001, in a training workdir layout) and
  "hi" (lam 0.1)."""
  root = tmp_path_factory.mktemp("neural_models")
  save_model(root / "lo" / "artifacts" / "model", 0, 0.001)   # a training workdir layout
  save_model(root / "hi", 1, 0.1)
  return str(root)


@pytest.fixture(scope="session")
def codec(models):
  return base.get_codec("neural", model=models)


@pytest.fixture(scope="session")
def vmodel(tmp_path_factory):
  """A variable-rate model whose steps get finer with the level (so rates rise with quality)."""
  path = tmp_path_factory.mktemp("variable") / "v"
  m = neural_collage_io.random_model(hn.ModelConfig(**TINY, rate_lams=(0.001, 0.01, 0.1)), seed=2)
  m.encoder.head_g2.bias[...] = m.encoder.head_g2.bias[...] + 3.0
  m.encoder.head_w.bias[...] = m.encoder.head_w.bias[...] + 1.0
  m.log_step[...] = m.log_step[...] - 0.7 * jnp.arange(3.0)[:, None]
  m.encoder.film[...] = 0.2 * jax.random.normal(jax.random.PRNGKey(0), m.encoder.film.shape)
  neural_collage_io.save_model(m, str(path), {"step": 0})
  return str(path)


@pytest.fixture(scope="session")
def cmodel(vmodel, tmp_path_factory):
  """The variable-rate model with the context entropy model, its contexts made distinct."""
  m = neural_collage_io.to_context_model(neural_collage_io.load_model(vmodel)[0])
  noise = np.random.default_rng(4).normal(size=m.zero_logits.shape) / hn.CONTEXT_GAIN
  m.zero_logits[...] = m.zero_logits[...] + jnp.asarray(noise, jnp.float32)
  path = tmp_path_factory.mktemp("context") / "c"
  neural_collage_io.save_model(m, str(path), {"step": 0})
  return str(path)
