"""A tiny task for the runtime's tests: linear regression on synthetic data.

The data is a grain ``MapDataset`` over in-memory arrays with a seeded ``random_map``
augmentation (input noise), batched globally and then sliced to this process's rows, so the
global batch at every step is the same whatever the process / device count.
"""

from __future__ import annotations

import json
import os
import time

import grain
import jax
import jax.numpy as jnp
import numpy as np

from collage.train import loop
from collage.train.mesh import to_host
from collage.train.task import Task

DIM = 4  # input features
N_TRAIN, N_EVAL = 64, 16  # examples
W_TRUE = np.arange(1, DIM + 1, dtype=np.float32)[:, None] / DIM  # [D, 1]


def _examples(n: int, seed: int) -> list[dict[str, np.ndarray]]:
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, DIM)).astype(np.float32)
  y = (x @ W_TRUE + 0.5).astype(np.float32)
  return [{"x": x[i], "y": y[i]} for i in range(n)]


def _augment(example: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Seeded input noise: x -> x + 0.05 * N(0, 1)."""
  noise = rng.normal(size=example["x"].shape).astype(np.float32)
  return {"x": example["x"] + 0.05 * noise, "y": example["y"]}


class LinRegTask(Task):
  """y = x @ w + b, mean squared error. Params: w [D, 1], b [1]."""

  def dataset(self, split, *, seed, process_index, process_count, batch_size):
    global_batch = batch_size * process_count
    if split == "train":
      ds = grain.MapDataset.source(_examples(N_TRAIN, 1)).seed(seed).shuffle().repeat(None)
    else:
      ds = grain.MapDataset.source(_examples(N_EVAL, 2)).seed(seed + 1)
    ds = ds.random_map(_augment).batch(global_batch, drop_remainder=True)
    lo, hi = process_index * batch_size, (process_index + 1) * batch_size
    delay = float(self.config.get("slow_data_s", 0.0))

    def share(b):
      if delay:
        time.sleep(delay)
      return {k: v[lo:hi] for k, v in b.items()}

    ds = ds.map(share)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))

  def batch_spec(self, batch_size):
    return {"x": jax.ShapeDtypeStruct((batch_size, DIM), jnp.float32),
            "y": jax.ShapeDtypeStruct((batch_size, 1), jnp.float32)}

  def init_params(self, rng):
    return {"w": 0.1 * jax.random.normal(rng, (DIM, 1)), "b": jnp.zeros((1,))}

  def loss_fn(self, params, batch, rng):
    del rng
    pred = batch["x"] @ params["w"] + params["b"]  # [B, 1]
    mse = jnp.mean((pred - batch["y"]) ** 2)
    return mse, {"mse": mse}

  def write_artifacts(self, params, model_state, step, workdir):
    out = os.path.join(workdir, "artifacts")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"params_{step}.json"), "w", encoding="utf-8") as f:
      json.dump({k: np.asarray(v).tolist() for k, v in params.items()}, f)


def run(config, workdir: str, mode: str):
  """Trains / evaluates; every process also saves its copy of the final params for the tests."""
  state = loop.run(LinRegTask(config), config, workdir, mode)
  if mode == "plan":
    return state
  params = to_host(state.params["model"])
  np.savez(os.path.join(workdir, f"final_params_p{jax.process_index()}.npz"), **params)
  return state
