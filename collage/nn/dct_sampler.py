"""Sampling the DCTransformer element by element: a typed loop state and one step function.

:func:`generate` runs :func:`sample_step` in a ``lax.while_loop`` over a :class:`SamplerState`
until every sequence has ended or the capacity L is reached. Each step draws one (rank,
position, value) triple per sample through the channel, position and value decoders
(``collage.nn.dctransformer``). At every chunk boundary (``t % T == 0``) the encoder re-reads
the partial image of everything generated so far (:func:`new_chunk`): the cross-attention keys
are computed once and the self-attention caches restart; in between, each element costs one
token through each decoder against the key/value caches (or, with ``use_cache=False``, the
whole chunk recomputed: the reference the cache is measured against).

What does not change during a draw (the keys, the forced prefix, temperature, top-p, the
layout) is a :class:`Draw`; a prefix is forced through the same path, so each element's
log-probability (at temperature 1) is reported for forced and drawn elements alike.

Shapes: B samples, L = capacity, T = ``cfg.chunk``, P positions, D = ``cfg.dim``, H heads of
D_h = D / H channels.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from collage.nn import dctransformer as dm
from collage.nn.transformer import empty_cache
from collage.ops import sparse_dct

Seq = dm.Seq
Caches = dict[str, list[tuple[jax.Array, jax.Array]]]  # decoder name -> per layer [B, T, H, D_h] x 2


@flax.struct.dataclass
class SamplerState:
  """What the loop carries from one element to the next.

  Attributes:
    t: int32 [], the index of the element the next step draws.
    seq: ``{"ranks", "positions", "values": int32 [B, L], "length": int32 [B]}``; entries
      not drawn yet are end-of-sequence (rank C); ``length`` is L until a sequence ends.
    done: bool [B], the sequences that have drawn end-of-sequence.
    logprob: float32 [B, L], each element's log-probability at temperature 1 (0 after the end).
    enc: [B, P, D] (compute dtype), the encoder's features of this chunk's partial image.
    ctx: per decoder ("chan", "pos", "val"), each layer's cross-attention (keys, values) of
      ``enc``.
    caches: per decoder, each layer's self-attention cache (keys, values) [B, T, H, D_h] of
      this chunk's elements so far.
  """
  t: jax.Array
  seq: Seq
  done: jax.Array
  logprob: jax.Array
  enc: jax.Array
  ctx: Caches
  caches: Caches


@dataclasses.dataclass(frozen=True)
class Draw:
  """What stays fixed during a draw.

  Attributes:
    keys: [B, 2] uint32, one key per sample.
    prefix: forced sequences ``{"ranks", "positions", "values": [B, L], "length": [B]}``:
      entries before ``length`` are forced, the rest drawn.
    temperature: float32 [], logits are divided by it (<= 0: greedy).
    top_p: float32 [], nucleus mass (>= 1: off).
    use_cache: whether the decoders step against their key/value caches.
    layout: the DCT image layout the model was trained on.
  """
  keys: jax.Array
  prefix: Seq
  temperature: jax.Array
  top_p: jax.Array
  use_cache: bool
  layout: sparse_dct.Layout


def draw_token(keys: jax.Array, logits: jax.Array, mask: jax.Array, temperature: jax.Array,
               top_p: jax.Array) -> jax.Array:
  """One token per row of logits [B, K] (masked by bool ``mask`` [B or 1, K]) with that row's
  key [B, 2] -> int32 [B].

  ``temperature`` divides the logits (<= 0: greedy); nucleus sampling keeps the most likely
  tokens until their mass reaches ``top_p`` (the top token always; >= 1: all). Both may be
  traced scalars, so one compiled sampler serves every setting.
  """
  logits = dm.masked_logits(logits, mask)
  scaled = logits / jnp.maximum(temperature, 1e-6)
  order = jnp.argsort(-scaled, axis=-1)
  probs = jax.nn.softmax(jnp.take_along_axis(scaled, order, axis=-1), axis=-1)
  before = jnp.cumsum(probs, axis=-1) - probs             # mass of the tokens ahead of each
  keep_sorted = (before < top_p) | (top_p >= 1.0)
  rows = jnp.arange(logits.shape[0])[:, None]
  keep = jnp.zeros_like(keep_sorted).at[rows, order].set(keep_sorted)
  sampled = jax.vmap(jax.random.categorical)(keys, jnp.where(keep & mask, scaled, -1e9))
  return jnp.where(temperature <= 0.0, jnp.argmax(logits, axis=-1), sampled)


def empty_caches(model: dm.DCTransformer, batch: int) -> Caches:
  """Zeroed self-attention caches of every decoder layer, [B, T, H, D_h] each."""
  cfg = model.cfg
  return {name: [empty_cache(batch, cfg.chunk, cfg.heads, cfg.dim // cfg.heads, model.dtype)
                 for _ in blocks] for name, blocks in model.decoders()}


def empty_prefix(batch: int, capacity: int) -> Seq:
  """No forced entries: zero sequences [B, L] of ``length`` 0."""
  zeros = jnp.zeros((batch, capacity), jnp.int32)
  return {"ranks": zeros, "positions": zeros, "values": zeros,
          "length": jnp.zeros((batch,), jnp.int32)}


def init_state(model: dm.DCTransformer, batch: int, capacity: int) -> SamplerState:
  """The state before the first element: every entry end-of-sequence, nothing done."""
  cfg = model.cfg
  seq = {"ranks": jnp.full((batch, capacity), cfg.channels, jnp.int32),
         "positions": jnp.zeros((batch, capacity), jnp.int32),
         "values": jnp.zeros((batch, capacity), jnp.int32),
         "length": jnp.full((batch,), capacity, jnp.int32)}
  enc = jnp.zeros((batch, cfg.positions, cfg.dim), model.dtype)
  return SamplerState(t=jnp.int32(0), seq=seq, done=jnp.zeros((batch,), bool),
                      logprob=jnp.zeros((batch, capacity), jnp.float32), enc=enc,
                      ctx=model.contexts(enc), caches=empty_caches(model, batch))


def new_chunk(model: dm.DCTransformer, draw: Draw, state: SamplerState) -> SamplerState:
  """At a chunk boundary: the encoder reads the partial image of the ``t`` entries so far, the
  cross-attention keys are recomputed and the caches restart."""
  b = state.done.shape[0]
  enc = model.encode(dm.partial_images(state.seq, jnp.full((b,), state.t), draw.layout))
  return state.replace(enc=enc, ctx=model.contexts(enc), caches=empty_caches(model, b))


def sample_step(model: dm.DCTransformer, draw: Draw, state: SamplerState) -> SamplerState:
  """Draws element ``state.t`` of every sequence (forced where the prefix has it) and returns
  the state with ``t + 1``; a sequence that has ended gets end-of-sequence and log-probability
  0."""
  cfg = model.cfg
  t, t_chunk = state.t, cfg.chunk
  state = jax.lax.cond(t % t_chunk == 0, lambda s: new_chunk(model, draw, s), lambda s: s, state)
  seq, j = state.seq, t % t_chunk
  b = seq["ranks"].shape[0]
  forced_len = jnp.asarray(draw.prefix["length"], jnp.int32)
  pr, pp, pv = dm.entries_at(seq, jnp.full((b, 1), t) - 1, cfg)  # the previous element [B, 1]
  x = model.embed_prev(pr, pp, pv, jnp.full((1,), j))            # [B, 1, D]
  # Each sample's keys for this element: fold in the element index, split three ways.
  ks = jax.vmap(lambda kb: jax.random.split(jax.random.fold_in(kb, t), 3))(draw.keys)  # [B, 3, 2]
  caches = dict(state.caches)

  def choose(key, logits, mask, forced):
    drawn = draw_token(key, logits, mask, draw.temperature, draw.top_p)
    return jnp.where(t < forced_len, forced[:, t], drawn)

  def through(name, blocks, full):
    """The whole chunk [B, T, D] through decoder ``name``'s layers (causal, no cache)."""
    for blk, kv in zip(blocks, state.ctx[name]):
      full = blk(full, kv, is_causal=True)
    return full

  def run(name, blocks, h, full_input_fn):
    if draw.use_cache:
      new = []
      for blk, kv, cache in zip(blocks, state.ctx[name], caches[name]):
        h, cache = blk.step(h, j, cache, kv)
        new.append(cache)
      caches[name] = new
      return h
    full = through(name, blocks, full_input_fn())        # [B, T, D]
    return jax.lax.dynamic_slice_in_dim(full, j, 1, axis=1)

  idx = t - j + jnp.arange(t_chunk)[None, :].repeat(b, 0)  # this chunk's entries [B, T]

  # Without the cache: the chunk's teacher-forced inputs, up to and including entry t.
  def chan_full():
    return model.embed_prev(*dm.entries_at(seq, idx - 1, cfg), jnp.arange(t_chunk))

  h_c = run("chan", model.chan_blocks, x, chan_full)
  lc = model.chan_head(model.chan_norm(h_c))[:, 0]
  rank = choose(ks[:, 0], lc, dm.rank_mask(cfg, pr[:, 0], pp[:, 0]), draw.prefix["ranks"])
  seq_r = dict(seq, ranks=seq["ranks"].at[:, t].set(rank))

  def pos_full():
    h = through("chan", model.chan_blocks, chan_full())
    rk, _, _ = dm.entries_at(seq_r, idx, cfg)
    return model.pos_input(h, jnp.minimum(rk, cfg.channels))

  h_p = run("pos", model.pos_blocks, model.pos_input(h_c, rank[:, None]), pos_full)
  lp = model.pos_head(model.pos_norm(h_p))[:, 0]
  pmask = dm.position_mask(cfg, pr[:, 0], pp[:, 0], rank)
  pos = choose(ks[:, 1], lp, pmask, draw.prefix["positions"])
  pos = jnp.where(rank < cfg.channels, pos, 0)
  seq_p = dict(seq_r, positions=seq_r["positions"].at[:, t].set(pos))

  def val_full():
    h = through("pos", model.pos_blocks, pos_full())
    _, ps, _ = dm.entries_at(seq_p, idx, cfg)
    return model.val_input(h, ps, state.enc)

  h_v = run("val", model.val_blocks, model.val_input(h_p, pos[:, None], state.enc), val_full)
  lv = model.val_head(model.val_norm(h_v))[:, 0]
  vtok = choose(ks[:, 2], lv, dm.value_mask(cfg)[None], draw.prefix["values"] + cfg.max_value)
  val = jnp.where(rank < cfg.channels, vtok - cfg.max_value, 0)

  logp = dm.element_logprob(cfg, (lc, lp, lv), pr[:, 0], pp[:, 0], rank, pos, val)
  done = state.done
  rank = jnp.where(done, cfg.channels, rank)
  pos, val = jnp.where(done, 0, pos), jnp.where(done, 0, val)
  logp = jnp.where(done, 0.0, logp)
  ended = (~done) & (rank == cfg.channels)
  seq = {"ranks": seq["ranks"].at[:, t].set(rank),
         "positions": seq["positions"].at[:, t].set(pos),
         "values": seq["values"].at[:, t].set(val),
         "length": jnp.where(ended, t + 1, seq["length"])}
  return state.replace(t=t + 1, seq=seq, done=done | ended, caches=caches,
                       logprob=state.logprob.at[:, t].set(logp))


def generate(model: dm.DCTransformer, keys: jax.Array, layout: sparse_dct.Layout, capacity: int,
             *, prefix: Seq | None = None, temperature: float | jax.Array = 1.0,
             top_p: float | jax.Array = 1.0, use_cache: bool = True) -> dict[str, jax.Array]:
  """Samples sequences element by element (jit it).

  Args:
    model: the model.
    keys: [B, 2] uint32, one key per sample: sample b depends on keys[b] (and its prefix) only.
    layout: the DCT image layout the model was trained on.
    capacity: L, the length cap (a sequence that reaches it without end-of-sequence stops).
    prefix: optional sequences [B, L] and ``length`` [B]: entries before ``length`` are forced
      (teacher-forced through the same cached path), the rest sampled.
    temperature: logits are divided by it (0: greedy); a float or a traced scalar.
    top_p: nucleus sampling: keep the most likely tokens whose mass reaches top_p (1: off).
    use_cache: False recomputes the whole chunk through the three decoders for every element
      (the reference the cache is measured against); the samples are the same.

  Returns:
    {"ranks", "positions", "values": int32 [B, L], "length": int32 [B] (with EOS),
     "logprob": float32 [B, L] (each element's log-probability at temperature 1, 0 after the
     end)}.
  """
  b = keys.shape[0]
  draw = Draw(keys=keys, prefix=empty_prefix(b, capacity) if prefix is None else prefix,
              temperature=jnp.asarray(temperature, jnp.float32),
              top_p=jnp.asarray(top_p, jnp.float32), use_cache=use_cache, layout=layout)

  def cond(state: SamplerState) -> jax.Array:
    return (state.t < capacity) & ~jnp.all(state.done)

  out = jax.lax.while_loop(cond, lambda s: sample_step(model, draw, s),
                           init_state(model, b, capacity))
  return {**out.seq, "logprob": out.logprob}
