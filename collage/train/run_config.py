"""A run's recorded config (``DIR/config.json``) against the config a command asks for.

A workdir with checkpoints belongs to the config that wrote them. Before anything is written or
restored, the requested config is compared with the recorded one: a field that changes the
saved state's structure (the task, the model's architecture, an optimizer's kind, an EMA turned
on or off) is refused in one line, naming the fields and the two ways out; every other change
(steps, cadences, learning-rate schedule, data, evaluators, sampling options, compute dtype,
recomputation) is allowed and logged.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from collage.train.errors import ConfigError
from collage.train.writer import CONFIG_FILE
# Model fields that change how the step computes, not what the checkpoint holds.
COMPUTE_ONLY = frozenset({"model.dtype", "model.param_dtype", "model.remat"})
_MISSING = object()  # a field one of the two configs does not have


def _number(v: Any) -> float:
  return 0.0 if v is _MISSING or v is None else float(v)


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _optimizer_field(key: str) -> str | None:
  """``"lr"`` for ``optimizer.lr`` / ``optimizers.NAME.lr``; None for other keys."""
  parts = key.split(".")
  if parts[0] == "optimizer" and len(parts) == 2:
    return parts[1]
  if parts[0] == "optimizers" and len(parts) == 3:
    return parts[2]
  return None


def changes_structure(key: str, old: Any, new: Any) -> bool:
  """Whether changing ``key`` from ``old`` to ``new`` changes what a checkpoint holds."""
  if key == "task" or (key.startswith("model.") and key not in COMPUTE_ONLY):
    return True
  field = _optimizer_field(key)
  if field == "name":
    return True
  if field == "ema_decay":  # an EMA appears or disappears; another decay is the same state
    return (_number(old) > 0) != (_number(new) > 0)
  return False


def _show(v: Any) -> str:
  return "(absent)" if v is _MISSING else json.dumps(v)


def recorded_config(workdir: str) -> dict[str, Any] | None:
  """``DIR/config.json`` as a dict, or None when the run has not recorded one."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def check_against_run(config: ml_collections.ConfigDict, workdir: str, mode: str) -> list[str]:
  """Compares ``config`` with the run's recorded config; returns the allowed changes.

  Call it only when ``workdir`` holds checkpoints.

  Raises:
    ConfigError: one line naming every field that changes the saved state, old -> new, and
      the ways out.
  """
  saved = recorded_config(workdir)
  if saved is None:
    return []
  old = _flat(saved)
  new = _flat(json.loads(config.to_json_best_effort()))
  diffs = [(k, old.get(k, _MISSING), new.get(k, _MISSING)) for k in sorted(set(old) | set(new))
           if old.get(k, _MISSING) != new.get(k, _MISSING)]
  refused = [d for d in diffs if changes_structure(*d)]
  if refused:
    fields = ", ".join(f"{k} {_show(a)} -> {_show(b)}" for k, a, b in refused)
    raise ConfigError(
        f"--mode {mode}: {workdir} holds checkpoints of another config: {fields}. These fields "
        "change what a checkpoint holds, so it cannot be restored with this config (the "
        "checkpoints are intact). Run with the config the run was trained with (recorded in "
        f"{os.path.join(workdir, CONFIG_FILE)}), or give a new --workdir.")
  return [f"{k} {_show(a)} -> {_show(b)}" for k, a, b in diffs]
