"""The Inception score (Salimans et al. 2016): exp E_x KL(p(y | x) || p(y)).

As guided-diffusion's evaluator computes it (after improved-gan's ``inception_score/model.py``):
class probabilities are the softmax of ``pool_3 @ softmax/weights`` without the bias
(:class:`collage.nn.inception.InceptionV3`'s ``logits``); the samples are cut, in order, into
splits of ``split_size`` (the last one may be shorter), each split's score uses its own marginal
p(y), and the result is the mean over splits (their standard deviation is reported too). Here the
log-probabilities come from a float64 log-softmax and the marginal's log from a
log-mean-exp, so a probability that underflows to zero contributes 0 instead of NaN.
"""

from __future__ import annotations

import numpy as np

SPLIT_SIZE = 5000  # guided-diffusion's evaluator


def _log_softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(axis=1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def inception_score(logits: np.ndarray, split_size: int = SPLIT_SIZE) -> tuple[float, float]:
  """logits: [N, K] -> (mean, standard deviation) of the per-split scores.

  Raises:
    ValueError: not [N >= 1, K] finite logits, or ``split_size`` < 1.
  """
  x = np.asarray(logits, np.float64)
  if x.ndim != 2 or x.shape[0] < 1:
    raise ValueError(f"the Inception score needs logits [N >= 1, K], got shape {x.shape}")
  if not np.all(np.isfinite(x)):
    raise ValueError("logits contain NaN or infinity")
  if int(split_size) < 1:
    raise ValueError(f"split_size must be >= 1, got {split_size}")
  scores = []
  for start in range(0, x.shape[0], int(split_size)):
    logp = _log_softmax(x[start:start + int(split_size)])
    p = np.exp(logp)
    top = logp.max(axis=0)  # log of the mean probability, kept finite where it underflows
    log_marginal = top + np.log(np.exp(logp - top).mean(axis=0))
    kl = np.sum(p * (logp - log_marginal), axis=1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))
