r"""Per-step overhead of the training loop with a near-empty step, on N fake CPU devices.

    python -m benchmarks.runtime_overhead --devices 1 --networks 1
    python -m benchmarks.runtime_overhead --devices 8 --networks 2

``--networks 2`` is a GAN-shaped task: two networks with their own optimizers, each train step
updates the first and then the second (two sub-steps, one step counter).

Measures, after compilation:
  * ``raw``: the jitted, donated train step alone, fed one pre-placed global batch
    (dispatch + the tiny computation; the floor);
  * ``loop``: :func:`collage.train.loop.run` end to end (grain iterator, global-array
    assembly, step dispatch, metrics bookkeeping), from the steps/s it logs between log points.
The loop's overhead per step is ``1/loop - 1/raw``. Results go to stdout as a markdown row.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def _parse() -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--devices", type=int, default=1, help="fake CPU devices")
  p.add_argument("--steps", type=int, default=2000, help="measured steps")
  p.add_argument("--interval", type=int, default=250, help="steps per timed interval")
  p.add_argument("--batch_size", type=int, default=8, help="global batch")
  p.add_argument("--networks", type=int, default=1, choices=(1, 2),
                 help="1: one network (default step); 2: two networks, two sub-steps per step")
  return p.parse_args()


# The fake device count must be in the environment before JAX is imported, hence the imports
# below the flags.
ARGS = _parse()
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ARGS.devices}"

import grain  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import logging  # noqa: E402

from collage.train import loop, mesh as mesh_lib, optimizer, state as state_lib, step  # noqa: E402
from collage.train.config import training_defaults  # noqa: E402
from collage.train.task import Task  # noqa: E402


class EmptyTask(Task):
  """One scalar parameter; loss = mean(x) * w: the step is almost pure runtime overhead."""

  def dataset(self, split, *, seed, process_index, process_count, batch_size):
    x = np.ones((batch_size, 1), np.float32)
    ds = grain.MapDataset.source([0]).repeat(None).map(lambda _: {"x": x})
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))

  def init_params(self, rng):
    return {"w": jnp.zeros(())}

  def loss_fn(self, params, batch, rng):
    loss = jnp.mean(batch["x"]) * params["w"]
    return loss, {}


class EmptyPairTask(EmptyTask):
  """Two one-scalar networks updated one after the other in each step (a GAN's shape)."""

  networks = ("first", "second")

  def init_params(self, rng):
    return {"first": {"w": jnp.zeros(())}, "second": {"w": jnp.zeros(())}}

  def train_step(self, state, batch, rng, update):
    metrics = {}
    for name in self.networks:
      (loss, _), grads = jax.value_and_grad(self.loss_fn, has_aux=True)(
          state.params[name], batch, rng)
      state, up = update(state, name, grads)
      metrics |= {f"{name}/loss": loss, **up}
    return state, metrics


TASK = EmptyTask if ARGS.networks == 1 else EmptyPairTask


def _config(total: int):
  c = training_defaults(networks=None if ARGS.networks == 1 else TASK.networks)
  c.task = "empty"
  c.total_steps = total
  c.batch_size = ARGS.batch_size
  c.log_every = ARGS.interval
  c.eval_every = 0
  c.eval_batches = 0
  c.checkpoint_every = 0
  for block in ([c.optimizer] if ARGS.networks == 1 else c.optimizers.values()):
    block.name = "sgd"
  return c


def raw_steps_per_sec(config) -> float:
  task = TASK(config)
  m = mesh_lib.make_mesh()
  blocks = optimizer.network_blocks(config, task.networks)
  txs = {n: optimizer.make_optimizer(b, int(config.total_steps)) for n, b in blocks.items()}
  rep = mesh_lib.replicated(m)
  st = jax.jit(lambda: state_lib.create_state(task.init(None)[0], {}, txs,
                                               jax.random.PRNGKey(0), ()), out_shardings=rep)()
  batch = mesh_lib.global_batch({"x": np.ones((config.batch_size, 1), np.float32)}, m)
  fn = jax.jit(step.make_train_step(task, step.NetworkUpdate(txs, {})), donate_argnums=(0,))
  for _ in range(50):
    st, _ = fn(st, batch)
    jax.block_until_ready(st)
  ahead = config.max_steps_ahead  # the same bound on queued steps as the loop
  inflight = []
  t = time.perf_counter()
  for _ in range(ARGS.steps):
    st, metrics = fn(st, batch)
    inflight.append(jax.tree.leaves(metrics)[0])
    if len(inflight) > ahead:
      inflight.pop(0).block_until_ready()
  jax.block_until_ready((st, metrics))
  return ARGS.steps / (time.perf_counter() - t)


def component_ms(config) -> tuple[float, float]:
  """Host cost per step of (grain next(), assembling the global batch), in ms."""
  it = TASK(config).dataset("train", seed=0, process_index=0, process_count=1,
                                 batch_size=config.batch_size)
  m = mesh_lib.make_mesh()
  t = time.perf_counter()
  local = [next(it) for _ in range(ARGS.steps)]
  t_data = time.perf_counter() - t
  t = time.perf_counter()
  for b in local:
    mesh_lib.global_batch(b, m)
  t_put = time.perf_counter() - t
  return 1e3 * t_data / ARGS.steps, 1e3 * t_put / ARGS.steps


def loop_steps_per_sec(config) -> float:
  with tempfile.TemporaryDirectory() as workdir:
    loop.run(TASK(config), config, workdir, "train")
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
      rows = [json.loads(r) for r in f if "steps_per_sec" in r]
  rates = [r["steps_per_sec"] for r in rows[1:]]  # the first interval includes compilation
  return float(np.median(rates))


def main() -> None:
  logging.set_verbosity(logging.WARNING)
  config = _config(ARGS.steps + ARGS.interval)
  raw = raw_steps_per_sec(config)
  looped = loop_steps_per_sec(config)
  data_ms, put_ms = component_ms(config)
  overhead_ms = 1e3 * (1 / looped - 1 / raw)
  load = os.getloadavg()[0]
  print("| networks | devices | global batch | raw jitted step (steps/s) | full loop (steps/s) "
        "| loop overhead (ms/step) | of which grain next() | of which global batch "
        "| load avg (1 min) |")
  print("|---|---|---|---|---|---|---|---|---|")
  print(f"| {ARGS.networks} | {jax.device_count()} | {config.batch_size} | {raw:.0f} | {looped:.0f} "
        f"| {overhead_ms:.3f} | {data_ms:.3f} | {put_ms:.3f} | {load:.2f} on {os.cpu_count()} cores |")


if __name__ == "__main__":
  main()
