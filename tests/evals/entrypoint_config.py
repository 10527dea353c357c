"""A config for the entrypoint tests of the evaluators: VDVAE ``tiny`` on the digits (seconds)
with evaluators named in ``config.evals``.

    fid         only ``fid``, with no weights set: the run must stop before writing anything
    misspelt    a ``samples`` evaluator with a sampling option VDVAE does not have
    all         every type: loss, samples, the FID family (weights and reference come as
                ``--config.evals.NAME.weights=`` / ``.reference=`` flags) and the digit family
"""

import ml_collections

from experiments.configs import vdvae


def _block(kind: str, **fields) -> ml_collections.ConfigDict:
  e = ml_collections.ConfigDict()
  e.type = kind
  for k, v in fields.items():
    e[k] = v
  return e


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = vdvae.get_config("tiny")
  c.evals = ml_collections.ConfigDict()
  draw = {"num_samples": 10, "batch_size": 8}  # not a multiple of the 8 devices
  if arg == "fid":
    c.evals.fid = _block("fid", weights="", reference="", **draw)
    return c
  if arg == "misspelt":
    c.evals.grid = _block("samples", num=4, sample={"temperture": 0.5})
    return c
  c.evals.eval = _block("loss")
  c.evals.grid = _block("samples", num=4, sample={"temperature": 0.5})
  for kind in ("fid", "sfid", "prec_recall"):
    c.evals[kind] = _block(kind, weights="", reference="", **draw)
  c.evals.inception_score = _block("inception_score", weights="", split_size=5, **draw)
  c.evals.digits_fid = _block("digits_fid", **draw)
  c.evals.digits_kid = _block("digits_kid", num_subsets=3, subset_size=5, **draw)
  c.evals.digits_prec_recall = _block("digits_prec_recall", **draw)
  c.evals.digits_cold = _block("digits_fid", num_samples=10, batch_size=8, every=0,
                               sample={"temperature": 0.5})
  return c
