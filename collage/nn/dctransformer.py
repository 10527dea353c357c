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

Sampling runs element by element (``collage.nn.dct_sampler``: a typed loop state and one step
function) through the same pieces, masks and :func:`element_logprob`, so the training path and
the sampling path can be checked against each other.

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
from collage.nn.transformer import DecoderBlock, EncoderBlock
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
    return {name: [b.cross_kv(enc) for b in blocks] for name, blocks in self.decoders()}

  def decoders(self):
    """(name, layers) of the channel, position and value decoders."""
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


def masked_logits(logits: jax.Array, mask: jax.Array) -> jax.Array:
  """Logits [..., K] with -1e9 where bool ``mask`` (broadcast to them) is False."""
  return jnp.where(mask, logits, -1e9)


def element_logprob(cfg: DCTConfig, logits, prev_rank, prev_pos, rank, pos, value) -> jax.Array:
  """log p(rank) + [rank != EOS] (log p(pos | rank) + log p(value | rank, pos)), masked as
  above. logits: the three [..., K] arrays; the others [...] -> float32 [...]."""
  lc, lp, lv = (f32(l) for l in logits)
  lc = jax.nn.log_softmax(masked_logits(lc, rank_mask(cfg, prev_rank, prev_pos)))
  lp = jax.nn.log_softmax(masked_logits(lp, position_mask(cfg, prev_rank, prev_pos, rank)))
  lv = jax.nn.log_softmax(masked_logits(lv, value_mask(cfg)))
  pick = lambda l, i: jnp.take_along_axis(l, i[..., None], axis=-1)[..., 0]  # noqa: E731
  vtok = jnp.clip(value + cfg.max_value, 0, 2 * cfg.max_value)
  rest = pick(lp, jnp.clip(pos, 0, cfg.positions - 1)) + pick(lv, vtok)
  return pick(lc, rank) + jnp.where(rank < cfg.channels, rest, 0.0)


# -- chunked teacher forcing ------------------------------------------------------------------

def entries_at(seq: Seq, idx: jax.Array, cfg: DCTConfig):
  """Entries idx [B, T] of the sequences: (ranks, positions, values) int32 [B, T] each, rank
  ``bos`` and position and value 0 before the start (index -1)."""
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
  rank, pos, val = entries_at(seq, idx, cfg)
  prev_rank, prev_pos, prev_val = entries_at(seq, idx - 1, cfg)
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


def num_parameters(params: Any) -> int:
  """Number of scalars in a parameter pytree."""
  return sum(int(x.size) for x in jax.tree.leaves(params))
