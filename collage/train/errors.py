"""Errors the runtime raises for bad input; the entrypoint prints them without a traceback."""


class ConfigError(ValueError):
  """A config value the runtime cannot use (names the value and the valid choices)."""


class CheckpointError(RuntimeError):
  """A checkpoint directory exists but cannot be restored, or a needed one is missing."""
