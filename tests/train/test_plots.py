"""A run's metrics.jsonl drawn to a PNG without TensorBoard (collage.train.plots)."""

import json

import pytest
from PIL import Image

from collage.train import plots


def _run_dir(tmp_path):
  rows = [{"step": 5, "loss": 2.0, "steps_per_sec": 10.0}, {"step": 10, "loss": 1.0},
          {"step": 10, "eval/bpd": 1.5}, {"step": 20, "loss": float("nan")}]
  (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
  return tmp_path


def test_curves_are_read_per_metric_and_drawn(tmp_path):
  run = _run_dir(tmp_path)
  curves = plots.read_curves(str(run))
  assert curves["loss"] == [(5, 2.0), (10, 1.0)]  # a non-finite value is not a point
  assert curves["eval/bpd"] == [(10, 1.5)]
  path = plots.plot_curves(str(run))
  assert path == str(run / "artifacts" / "metrics.png")
  assert Image.open(path).size[0] > 400


def test_a_metric_the_run_never_logged_lists_the_logged_ones(tmp_path):
  with pytest.raises(ValueError, match="never logged nope; it logged: eval/bpd, loss"):
    plots.plot_curves(str(_run_dir(tmp_path)), ["nope"])
  with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
    plots.read_curves(str(tmp_path / "empty"))
