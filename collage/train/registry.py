"""Configs by file and tasks by name: what the entrypoint resolves, for every tool that drives
an experiment (the entrypoint, sweeps, benchmarks, the demo).

    config = load_config("experiments/configs/vdvae.py:tiny")
    check_overrides(config, [("model.head", "collage")])
    module = load_task(config.task)      # experiments.tasks.vdvae: its run(config, workdir, mode)
    task = task_of(config)               # the Task that module defines, built from the config

``config.task`` names a module of the package :data:`TASKS` (or, for tests and out-of-tree
experiments, a full dotted module path). The runtime never imports a task by module: it is
imported here, by name, when a config asks for it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import pkgutil
from typing import Any, Sequence

import ml_collections

from collage.train.task import Task

TASKS = "experiments.tasks"  # the package of the experiments' task modules, imported by name


def config_keys(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, str]:
  """Dotted leaf keys of ``config`` -> their type name, e.g. ``{"optimizer.name": "str"}``."""
  out = {}
  for k, v in sorted(config.items()):
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      out.update(config_keys(ml_collections.ConfigDict(v) if isinstance(v, dict) else v,
                             f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = type(v).__name__
  return out


def load_config(spec: str) -> ml_collections.ConfigDict:
  """``get_config(ARG)`` of the file in ``PATH[:ARG]`` (the same call config_flags makes).

  Raises:
    ValueError: no such file, an unknown variant (the config names the valid ones), or a
      ``get_config`` that does not return a ConfigDict.
  """
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ValueError(f"--config={spec}: no such file {path!r}; configs live in "
                     "experiments/configs/.")
  module_spec = importlib.util.spec_from_file_location("_config_under_check", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except ValueError as e:
    raise ValueError(f"--config={spec}: {e}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f"--config={spec}: get_config() returned {type(config).__name__}, not a "
                     "ConfigDict.")
  return config


def key_list(keys: dict[str, str]) -> str:
  """``"a.b (int), c (str)"``: the keys of :func:`config_keys` with their types, for messages."""
  return ", ".join(f"{k} ({t})" for k, t in keys.items())


def closest(word: str, choices: Sequence[str]) -> str:
  """`` (did you mean X?)`` for the closest of ``choices`` to ``word``, or ``""``."""
  close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
  return f" (did you mean {close[0]!r}?)" if close else ""


def check_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[tuple[str, str]]) -> None:
  """Checks ``[(dotted key, value text)]`` against ``config``: known keys, values of their type.

  Raises:
    ValueError: naming the key, and the valid keys or the expected type.
  """
  keys = config_keys(config)
  for key, text in overrides:
    if key not in keys:
      raise ValueError(f"unknown config key {key!r}{closest(key, list(keys))}; this config's "
                       f"valid keys are: {key_list(keys)}.")
    kind = keys[key]
    try:
      if kind == "int":
        int(text)
      elif kind == "float":
        float(text)
      elif kind == "bool" and text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(text)
    except ValueError:
      raise ValueError(f"config key {key!r} takes a {kind}, got {text!r}") from None


def task_names() -> list[str]:
  """The modules of :data:`TASKS`, i.e. the valid short values of ``config.task``."""
  package = importlib.import_module(TASKS)
  return sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                if not m.name.startswith("_"))


def _parents(module_name: str) -> list[str]:
  parts = module_name.split(".")
  return [".".join(parts[:i]) for i in range(1, len(parts))]


def load_task(name: str) -> Any:
  """The module for ``config.task``: ``experiments.tasks.<name>`` or a full dotted path.

  Raises:
    LookupError: an empty or unknown name (listing the valid ones), or a module without
      ``run(config, workdir, mode)``.
  """
  module_name = name if "." in name else f"{TASKS}.{name}"
  valid = task_names()
  if not name:
    raise LookupError(f"config.task is empty; valid tasks: {', '.join(valid) or '(none yet)'}.")
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name not in (module_name, *_parents(module_name)):
      raise  # the task exists but one of its imports is missing: show the real error
    raise LookupError(f"unknown task {name!r} (config.task): no module {module_name}; "
                      f"valid tasks: {', '.join(valid) or '(none yet)'}.") from None
  if not callable(getattr(module, "run", None)):
    raise LookupError(f"task module {module_name} has no run(config, workdir, mode) function.")
  return module


def task_of(config: ml_collections.ConfigDict) -> Task:
  """The :class:`collage.train.task.Task` that ``config.task``'s module defines, built from
  ``config`` (for tools that drive a task's steps themselves, e.g. benchmarks).

  Raises:
    LookupError: the module defines no Task class, or several.
  """
  module = load_task(config.task)
  classes = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Task)
             and v is not Task and v.__module__ == module.__name__]
  if len(classes) != 1:
    raise LookupError(f"task module {module.__name__} defines {len(classes)} Task classes; "
                      "expected one")
  return classes[0](config)
