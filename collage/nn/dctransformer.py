"""DCTransformer (Nash, Menick, Dieleman, Battaglia, ICML 2021): sparse JPEG coefficients,
generated one (channel, position, value) triple at a time.

Chunked training (paper Sec. 3.2): the sequence is cut into chunks of T entries; for chunk k the
entries before it (``[0, kT)``) are scattered into a partial DCT image that a Transformer encoder
reads; the chunk's entries are predicted by three decoders, each causal within the chunk and
cross-attending to the encoder:

  channel decoder:  previous triple (+ step in chunk)          -> next channel's rank
  position decoder: channel features + the (true) next rank     -> next position
  value decoder:    position features + the next position + the
                    encoder's features at that position          -> next value

The loss is the sum of the three categorical log-likelihoods. Structure the order implies is
masked, identically in training and sampling: ranks never decrease, a position within the same
rank is after the previous one, and values are non-zero.

Sampling (:func:`generate`) runs element by element in a ``lax.while_loop``: at every chunk
boundary (``t % T == 0``) the encoder re-reads the partial image of everything generated so far,
the cross-attention keys are computed once and the self-attention caches restart; in between,
each element costs one token through each decoder against the key/value caches. The same
function forces a given prefix (conditional generation) and reports every element's
log-probability, so the training path and the sampling path can be checked against each other.

Precision (``DCTConfig.dtype``): matmuls, attention and the residual stream run in the compute
dtype, parameters stay float32 (``param_dtype``); the final LayerNorms and the three output
heads run in float32, and so do every log-softmax over the vocabularies, the masks and the
log-likelihoods. ``DCTConfig.remat`` (``collage.nn.precision.REMAT``) recomputes each encoder and
decoder layer of the teacher-forced pass in the backward pass ("blocks", or a checkpoint
policy); the cached sampler never differentiates and is unaffected.

Shapes: a batch of sequences is ``{"ranks", "positions", "values": int32 [B, L], "length":
int32 [B]}`` (``collage.ops.sparse_dct``); C channels (rank C = end-of-sequence), P positions,
values in [-V, V] (token ``value + V``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from collage.nn import precision
from collage.nn.precision import f32
from collage.nn.transformer import DecoderBlock, EncoderBlock, empty_cache
from collage.ops import sparse_dct

Seq = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class DCTConfig:
  """The architecture.

  Attributes:
    channels: C, channels of the DCT image (rank C is end-of-sequence).
    positions: P, cells of the position grid.
    max_value: V, the largest |coefficient| in the value vocabulary (2V + 1 tokens).
    chunk: T, entries per training chunk (and per sampling chunk).
    dim, heads, mlp_ratio: width, attention heads and MLP expansion of every layer.
    encoder_layers: layers of the partial-image encoder.
    decoder_layers: layers of each of the three decoders.
    dtype: compute dtype name ("float32" | "bfloat16", ``collage.nn.precision``).
    param_dtype: parameter dtype name ("float32").
    remat: recomputation of each layer in the backward pass (``precision.REMAT``).
  """
  channels: int
  positions: int
  max_value: int
  chunk: int = 64
  dim: int = 128
  heads: int = 4
  mlp_ratio: int = 4
  encoder_layers: int = 2
  decoder_layers: int = 2
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat: str = "none"

  @property
  def bos(self) -> int:
    """The rank token of "no previous element" (start of sequence)."""
    return self.channels + 1


class DCTransformer(nnx.Module):
  """The encoder and the channel, position and value decoders."""

  def __init__(self, cfg: DCTConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d, c, p = cfg.dim, cfg.channels, cfg.positions
    self.dtype = precision.compute_dtype(cfg.dtype)
    pdt = precision.param_dtype(cfg.param_dtype)
    precision.check_remat(cfg.remat)
    init = nnx.initializers.normal(0.02)
    kw = dict(dtype=self.dtype, param_dtype=pdt, rngs=rngs)
    out = dict(dtype=jnp.float32, param_dtype=pdt, rngs=rngs)  # final norms and heads: float32
    block = lambda cls: cls(d, cfg.heads, cfg.mlp_ratio, **kw)  # noqa: E731
    # Encoder of the partial DCT image [P, C].
    self.enc_in = nnx.Linear(2 * c, d, **kw)
    self.enc_pos = nnx.Param(init(rngs.params(), (p, d), pdt))
    self.enc_blocks = nnx.List([block(EncoderBlock) for _ in range(cfg.encoder_layers)])
    self.enc_norm = nnx.LayerNorm(d, **kw)
    # Embedding of the previous element and the step within the chunk.
    self.prev_rank = nnx.Embed(c + 2, d, **kw)
    self.prev_pos = nnx.Embed(p, d, **kw)
    self.prev_val = nnx.Embed(2 * cfg.max_value + 1, d, **kw)
    self.step_pos = nnx.Param(init(rngs.params(), (cfg.chunk, d), pdt))
    # The three decoders.
    self.chan_blocks = nnx.List([block(DecoderBlock) for _ in range(cfg.decoder_layers)])
    self.chan_norm = nnx.LayerNorm(d, **out)
    self.chan_head = nnx.Linear(d, c + 1, **out)
    self.pos_rank = nnx.Embed(c + 1, d, **kw)
    self.pos_blocks = nnx.List([block(DecoderBlock) for _ in range(cfg.decoder_layers)])
    self.pos_norm = nnx.LayerNorm(d, **out)
    self.pos_head = nnx.Linear(d, p, **out)
    self.val_pos = nnx.Embed(p, d, **kw)
    self.val_enc = nnx.Linear(d, d, **kw)
    self.val_blocks = nnx.List([block(DecoderBlock) for _ in range(cfg.decoder_layers)])
    self.val_norm = nnx.LayerNorm(d, **out)
    self.val_head = nnx.Linear(d, 2 * cfg.max_value + 1, **out)

  # -- pieces shared by the teacher-forced and the cached paths ------------------------------
  def encode(self, ranked: jax.Array) -> jax.Array:
    """A partial DCT image, channels by rank: int [B, P, C] -> features [B, P, D] in the
    compute dtype. Each layer is recomputed in the backward pass as ``cfg.remat`` says."""
    v = ranked.astype(jnp.float32)
    feats = jnp.concatenate([jnp.sign(v) * jnp.log1p(jnp.abs(v)), (v != 0).astype(jnp.float32)],
                            axis=-1)
    x = self.enc_in(feats) + self.enc_pos[...].astype(self.dtype)
    layer = precision.remat(lambda blk, h: blk(h), self.cfg.remat)
    for blk in self.enc_blocks:
      x = layer(blk, x)
    return self.enc_norm(x)

  def contexts(self, enc: jax.Array) -> dict[str, list[tuple[jax.Array, jax.Array]]]:
    """Every decoder layer's cross-attention keys and values of the encoder output."""
    return {name: [b.cross_kv(enc) for b in blocks] for name, blocks in self._decoders()}

  def _decoders(self):
    return (("chan", self.chan_blocks), ("pos", self.pos_blocks), ("val", self.val_blocks))

  def embed_prev(self, prev_rank, prev_pos, prev_val, step) -> jax.Array:
    """The decoder input: previous triple ([B, T] each, rank ``bos`` at the start) and the step
    within the chunk ([T] or [B, T]) -> [B, T, D] in the compute dtype."""
    return (self.prev_rank(prev_rank) + self.prev_pos(prev_pos)
            + self.prev_val(self._value_token(prev_val))
            + self.step_pos[...].astype(self.dtype)[step])

  def _value_token(self, values: jax.Array) -> jax.Array:
    return jnp.clip(values + self.cfg.max_value, 0, 2 * self.cfg.max_value)

  def pos_input(self, h_chan: jax.Array, rank: jax.Array) -> jax.Array:
    return h_chan + self.pos_rank(rank)

  def val_input(self, h_pos: jax.Array, pos: jax.Array, enc: jax.Array) -> jax.Array:
    at = jnp.take_along_axis(enc, pos[..., None], axis=1)  # [B, T, D]
    return h_pos + self.val_pos(pos) + self.val_enc(at)

  # -- the teacher-forced pass over one chunk -------------------------------------------------
  def decode(self, blocks, h: jax.Array, ctx: list[tuple[jax.Array, jax.Array]]) -> jax.Array:
    """One decoder's causal teacher-forced pass: h [B, T, D] through ``blocks`` with their
    cross-attention keys/values ``ctx``; each layer recomputed as ``cfg.remat`` says."""
    layer = precision.remat(lambda blk, x, kv: blk(x, kv, is_causal=True), self.cfg.remat)
    for blk, kv in zip(blocks, ctx):
      h = layer(blk, h, kv)
    return h

  def chunk_logits(self, enc: jax.Array, x: jax.Array, rank: jax.Array, pos: jax.Array
                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Logits of every chunk entry. enc: [B, P, D]; x: [B, T, D] (:meth:`embed_prev`); rank,
    pos: the true entries [B, T] -> float32 ([B, T, C+1], [B, T, P], [B, T, 2V+1]) unmasked."""
    ctx = self.contexts(enc)
    h = self.decode(self.chan_blocks, x, ctx["chan"])
    lc = self.chan_head(self.chan_norm(h))
    h = self.decode(self.pos_blocks, self.pos_input(h, rank), ctx["pos"])
    lp = self.pos_head(self.pos_norm(h))
    h = self.decode(self.val_blocks, self.val_input(h, pos, enc), ctx["val"])
    lv = self.val_head(self.val_norm(h))
    return lc, lp, lv


# -- structure masks ----------------------------------------------------------------------------

def rank_mask(cfg: DCTConfig, prev_rank: jax.Array, prev_pos: jax.Array) -> jax.Array:
  """bool [..., C+1]: ranks that may follow (prev_rank, prev_pos); ``bos`` allows all.

  Ranks never decrease; the previous rank stays possible while positions remain after
  prev_pos; end-of-sequence is always possible.
  """
  r = jnp.arange(cfg.channels + 1)
  start = (prev_rank == cfg.bos)[..., None]
  later = r > prev_rank[..., None]
  same = (r == prev_rank[..., None]) & (prev_pos[..., None] < cfg.positions - 1)
  return start | later | same | (r == cfg.channels)


def position_mask(cfg: DCTConfig, prev_rank, prev_pos, rank) -> jax.Array:
  """bool [..., P]: positions after prev_pos when the rank repeats, else all."""
  p = jnp.arange(cfg.positions)
  new_rank = (rank != prev_rank)[..., None]
  return new_rank | (p > prev_pos[..., None])


def value_mask(cfg: DCTConfig) -> jax.Array:
  """bool [2V+1]: every value but zero."""
  return jnp.arange(2 * cfg.max_value + 1) != cfg.max_value


def _masked(logits: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.where(mask, logits, -1e9)


def element_logprob(cfg: DCTConfig, logits, prev_rank, prev_pos, rank, pos, value) -> jax.Array:
  """log p(rank) + [rank != EOS] (log p(pos | rank) + log p(value | rank, pos)), masked as
  above. logits: the three [..., K] arrays; the others [...] -> float32 [...]."""
  lc, lp, lv = (f32(l) for l in logits)
  lc = jax.nn.log_softmax(_masked(lc, rank_mask(cfg, prev_rank, prev_pos)))
  lp = jax.nn.log_softmax(_masked(lp, position_mask(cfg, prev_rank, prev_pos, rank)))
  lv = jax.nn.log_softmax(_masked(lv, value_mask(cfg)))
  pick = lambda l, i: jnp.take_along_axis(l, i[..., None], axis=-1)[..., 0]  # noqa: E731
  vtok = jnp.clip(value + cfg.max_value, 0, 2 * cfg.max_value)
  rest = pick(lp, jnp.clip(pos, 0, cfg.positions - 1)) + pick(lv, vtok)
  return pick(lc, rank) + jnp.where(rank < cfg.channels, rest, 0.0)


# -- chunked teacher forcing ------------------------------------------------------------------

def _gather(seq: Seq, idx: jax.Array, cfg: DCTConfig):
  """Entries idx [B, T] of the sequences (rank ``bos`` at index -1)."""
  safe = jnp.clip(idx, 0, seq["ranks"].shape[1] - 1)
  take = lambda a: jnp.take_along_axis(a, safe, axis=1)  # noqa: E731
  before = idx < 0
  return (jnp.where(before, cfg.bos, take(seq["ranks"])), jnp.where(before, 0, take(seq["positions"])),
          jnp.where(before, 0, take(seq["values"])))


def partial_images(seq: Seq, count: jax.Array, layout: sparse_dct.Layout) -> jax.Array:
  """The first count[b] entries of each sequence as ranked images int32 [B, P, C]."""
  return jax.vmap(lambda r, p, v, n: sparse_dct.scatter_prefix(r, p, v, n, layout))(
      seq["ranks"], seq["positions"], seq["values"], count)


def chunk_logprobs(model: DCTransformer, seq: Seq, chunk_index: jax.Array,
                   layout: sparse_dct.Layout) -> tuple[jax.Array, jax.Array]:
  """Per-entry log-probabilities of chunk ``chunk_index`` [B] of each sequence.

  Returns:
    (logp [B, T], mask [B, T]: 1 where the entry is part of the sequence, before ``length``).
  """
  cfg = model.cfg
  t = cfg.chunk
  start = chunk_index * t                                  # [B]
  idx = start[:, None] + jnp.arange(t)[None, :]            # [B, T]
  rank, pos, val = _gather(seq, idx, cfg)
  prev_rank, prev_pos, prev_val = _gather(seq, idx - 1, cfg)
  enc = model.encode(partial_images(seq, start, layout))
  x = model.embed_prev(prev_rank, prev_pos, prev_val, jnp.arange(t))
  logits = model.chunk_logits(enc, x, rank, pos)
  logp = element_logprob(cfg, logits, prev_rank, prev_pos, rank, pos, val)
  mask = (idx < seq["length"][:, None]).astype(jnp.float32)
  return logp * mask, mask


def sequence_logprob(model: DCTransformer, seq: Seq, layout: sparse_dct.Layout) -> jax.Array:
  """Total log-probability (nats) of each whole sequence, chunk by chunk: [B]."""
  chunks = -(-seq["ranks"].shape[1] // model.cfg.chunk)
  b = seq["ranks"].shape[0]

  def body(k, total):
    logp, _ = chunk_logprobs(model, seq, jnp.full((b,), k), layout)
    return total + logp.sum(axis=1)

  return jax.lax.fori_loop(0, chunks, body, jnp.zeros((b,), jnp.float32))


# -- sampling -----------------------------------------------------------------------------------

def _draw(keys: jax.Array, logits: jax.Array, mask: jax.Array, temperature: jax.Array,
          top_p: jax.Array) -> jax.Array:
  """One token per row of logits [B, K] (masked) with that row's key [B, 2].

  ``temperature`` divides the logits (<= 0: greedy); nucleus sampling keeps the most likely
  tokens until their mass reaches ``top_p`` (the top token always; >= 1: all). Both may be
  traced scalars, so one compiled sampler serves every setting.
  """
  logits = _masked(logits, mask)
  scaled = logits / jnp.maximum(temperature, 1e-6)
  order = jnp.argsort(-scaled, axis=-1)
  probs = jax.nn.softmax(jnp.take_along_axis(scaled, order, axis=-1), axis=-1)
  before = jnp.cumsum(probs, axis=-1) - probs             # mass of the tokens ahead of each
  keep_sorted = (before < top_p) | (top_p >= 1.0)
  rows = jnp.arange(logits.shape[0])[:, None]
  keep = jnp.zeros_like(keep_sorted).at[rows, order].set(keep_sorted)
  sampled = jax.vmap(jax.random.categorical)(keys, jnp.where(keep & mask, scaled, -1e9))
  return jnp.where(temperature <= 0.0, jnp.argmax(logits, axis=-1), sampled)


def generate(model: DCTransformer, keys: jax.Array, layout: sparse_dct.Layout, capacity: int,
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
  cfg = model.cfg
  b, t_chunk = keys.shape[0], cfg.chunk
  if prefix is None:
    prefix = {"ranks": jnp.zeros((b, capacity), jnp.int32),
              "positions": jnp.zeros((b, capacity), jnp.int32),
              "values": jnp.zeros((b, capacity), jnp.int32),
              "length": jnp.zeros((b,), jnp.int32)}
  forced_len = jnp.asarray(prefix["length"], jnp.int32)
  temperature = jnp.asarray(temperature, jnp.float32)
  top_p = jnp.asarray(top_p, jnp.float32)
  heads, head_dim = cfg.heads, cfg.dim // cfg.heads
  vmask = value_mask(cfg)[None]

  seq0 = {"ranks": jnp.full((b, capacity), cfg.channels, jnp.int32),
          "positions": jnp.zeros((b, capacity), jnp.int32),
          "values": jnp.zeros((b, capacity), jnp.int32),
          "length": jnp.full((b,), capacity, jnp.int32)}
  caches0 = {name: [empty_cache(b, t_chunk, heads, head_dim, model.dtype) for _ in blocks]
             for name, blocks in model._decoders()}  # pylint: disable=protected-access
  enc0 = jnp.zeros((b, cfg.positions, cfg.dim), model.dtype)
  carry0 = dict(t=jnp.int32(0), seq=seq0, done=jnp.zeros((b,), bool),
                logprob=jnp.zeros((b, capacity), jnp.float32), enc=enc0,
                ctx=model.contexts(enc0), caches=caches0)

  def new_chunk(c):
    enc = model.encode(partial_images(c["seq"], jnp.full((b,), c["t"]), layout))
    return dict(c, enc=enc, ctx=model.contexts(enc), caches=caches0)

  def prev_of(seq, t):
    idx = jnp.full((b, 1), t)
    return _gather(seq, idx - 1, cfg)

  def choose(key, logits, mask, forced, t):
    drawn = _draw(key, logits, mask, temperature, top_p)
    return jnp.where(t < forced_len, forced[:, t], drawn)

  def body(c):
    t = c["t"]
    c = jax.lax.cond(t % t_chunk == 0, new_chunk, lambda c: c, c)
    seq, j = c["seq"], t % t_chunk
    pr, pp, pv = prev_of(seq, t)                          # [B, 1]
    x = model.embed_prev(pr, pp, pv, jnp.full((1,), j))   # [B, 1, D]
    # Each sample's keys for this element: fold in the element index, split three ways.
    ks = jax.vmap(lambda kb: jax.random.split(jax.random.fold_in(kb, t), 3))(keys)  # [B, 3, 2]
    caches = dict(c["caches"])

    def run(name, blocks, h, full_input_fn):
      if use_cache:
        new = []
        for blk, kv, cache in zip(blocks, c["ctx"][name], caches[name]):
          h, cache = blk.step(h, j, cache, kv)
          new.append(cache)
        caches[name] = new
        return h
      full = full_input_fn()                               # [B, T, D]
      for blk, kv in zip(blocks, c["ctx"][name]):
        full = blk(full, kv, is_causal=True)
      return jax.lax.dynamic_slice_in_dim(full, j, 1, axis=1)

    start = t - j
    idx = start + jnp.arange(t_chunk)[None, :].repeat(b, 0)

    # Without the cache: the chunk's teacher-forced inputs, up to and including entry t.
    def chan_full():
      prv = _gather(seq, idx - 1, cfg)
      return model.embed_prev(*prv, jnp.arange(t_chunk))

    h_c = run("chan", model.chan_blocks, x, chan_full)
    lc = model.chan_head(model.chan_norm(h_c))[:, 0]
    rmask = rank_mask(cfg, pr[:, 0], pp[:, 0])
    rank = choose(ks[:, 0], lc, rmask, prefix["ranks"], t)
    seq_r = dict(seq, ranks=seq["ranks"].at[:, t].set(rank))

    def pos_full():
      h = chan_full()
      for blk, kv in zip(model.chan_blocks, c["ctx"]["chan"]):
        h = blk(h, kv, is_causal=True)
      rk, _, _ = _gather(seq_r, idx, cfg)
      return model.pos_input(h, jnp.minimum(rk, cfg.channels))

    h_p = run("pos", model.pos_blocks, model.pos_input(h_c, rank[:, None]), pos_full)
    lp = model.pos_head(model.pos_norm(h_p))[:, 0]
    pmask = position_mask(cfg, pr[:, 0], pp[:, 0], rank)
    pos = choose(ks[:, 1], lp, pmask, prefix["positions"], t)
    pos = jnp.where(rank < cfg.channels, pos, 0)
    seq_p = dict(seq_r, positions=seq_r["positions"].at[:, t].set(pos))

    def val_full():
      h = pos_full()
      for blk, kv in zip(model.pos_blocks, c["ctx"]["pos"]):
        h = blk(h, kv, is_causal=True)
      _, ps, _ = _gather(seq_p, idx, cfg)
      return model.val_input(h, ps, c["enc"])

    h_v = run("val", model.val_blocks, model.val_input(h_p, pos[:, None], c["enc"]), val_full)
    lv = model.val_head(model.val_norm(h_v))[:, 0]
    vtok = choose(ks[:, 2], lv, vmask, prefix["values"] + cfg.max_value, t)
    val = jnp.where(rank < cfg.channels, vtok - cfg.max_value, 0)

    logp = element_logprob(cfg, (lc, lp, lv), pr[:, 0], pp[:, 0], rank, pos, val)
    done = c["done"]
    rank = jnp.where(done, cfg.channels, rank)
    pos, val = jnp.where(done, 0, pos), jnp.where(done, 0, val)
    logp = jnp.where(done, 0.0, logp)
    ended = (~done) & (rank == cfg.channels)
    seq = {"ranks": seq["ranks"].at[:, t].set(rank),
           "positions": seq["positions"].at[:, t].set(pos),
           "values": seq["values"].at[:, t].set(val),
           "length": jnp.where(ended, t + 1, seq["length"])}
    return dict(c, t=t + 1, seq=seq, done=done | ended, caches=caches,
                logprob=c["logprob"].at[:, t].set(logp))

  def cond(c):
    return (c["t"] < capacity) & ~jnp.all(c["done"])

  out = jax.lax.while_loop(cond, body, carry0)
  return {**out["seq"], "logprob": out["logprob"]}


def num_parameters(params: Any) -> int:
  """Number of scalars in a parameter pytree."""
  return sum(int(x.size) for x in jax.tree.leaves(params))
