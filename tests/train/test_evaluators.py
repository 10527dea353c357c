"""Evaluators accumulate weighted sums: exact means, also of arrays (feature statistics)."""

import numpy as np
import pytest

from collage.train.evaluators import Accumulator


def test_accumulates_arrays_to_exact_means_over_uneven_batches():
  """Mean and second moment of 2-D features from batches of 5 and 2 real rows."""
  rng = np.random.default_rng(0)
  feats = rng.normal(size=(7, 2))
  acc = Accumulator()
  for chunk in (feats[:5], feats[5:]):
    acc.add({"mean": chunk.sum(0), "outer": chunk.T @ chunk}, len(chunk))
  means = acc.means()
  np.testing.assert_allclose(means["mean"], feats.mean(0), rtol=1e-12)
  np.testing.assert_allclose(means["outer"], feats.T @ feats / 7, rtol=1e-12)
  assert acc.count == 7


def test_nothing_added_means_no_metrics():
  assert Accumulator().means() == {}


def test_unknown_evaluator_field_lists_the_valid_ones():
  from collage.train.errors import ConfigError
  from collage.train.evaluators import SamplesEvaluator
  with pytest.raises(ConfigError, match="unknown fields \\['nmu'\\].*type, num, seed"):
    SamplesEvaluator("grid", {"type": "samples", "nmu": 3}, ctx=None)


def test_register_a_new_evaluator_type_and_refuse_a_clash():
  from collage.train import evaluators

  class Probe(evaluators.Evaluator):
    def run(self, state, step):
      return {"one": 1.0}

  try:
    assert evaluators.register("probe_test", Probe) is Probe
    assert evaluators.EVALUATORS["probe_test"] is Probe
    with pytest.raises(ValueError, match="already registered"):
      evaluators.register("probe_test", evaluators.LossEvaluator)
  finally:
    evaluators.EVALUATORS.pop("probe_test", None)
