"""Test setup: 8 fake CPU devices, so every test exercises sharding.

The flag must be set before JAX initialises its backends, hence at import time here.
"""

import os

os.environ["JAX_PLATFORMS"] = "cpu"
_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def eight_devices():
  devices = jax.devices()
  assert len(devices) == 8, f"expected 8 fake CPU devices, got {len(devices)}"
  return devices
