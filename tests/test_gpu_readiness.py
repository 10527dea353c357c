"""benchmarks/gpu_readiness.py, the script a lent GPU runs, works end to end on the CPU."""

import math

from benchmarks import gpu_readiness


def test_a_small_config_runs_its_real_train_step_on_a_synthetic_batch():
  result = gpu_readiness.measure("experiments/configs/vdvae.py:tiny", batch=2, steps=2,
                                 overrides=["model.head=collage"])
  assert result["loss_finite"] and len(result["step_seconds"]) == 2
  assert result["batch_per_device"] == 2 and result["predicted_peak_bytes"] > 0
  assert result["matmul_flops_per_step"] > 0 and result["achieved_tflops"] > 0
  assert result["mfu"] is None or math.isfinite(result["mfu"])  # a CPU has no peak in PEAKS
