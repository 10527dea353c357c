r"""The only entrypoint: trains or evaluates the experiment a config names.

    python -m experiments.main --config experiments/configs/NAME.py[:ARG] --workdir DIR \
        [--config.key=value ...] [--mode train|eval|sample|plan]

``--mode plan`` compiles the config's train and sample steps from shapes alone, for
``config.plan.devices`` devices (fake CPU devices when this machine has fewer), and prints and
writes ``DIR/plan.json``: parameters, FLOPs, peak memory per device and whether it fits
``config.plan.device_memory_gb``. Nothing is allocated, trained or read (collage/train/plan.py).
The config is locked: an unknown or ill-typed ``--config.key=value`` stops with a message that
names the key and lists the valid ones. The resolved config is written to ``DIR/config.json``.
``config.task`` names a module ``experiments/tasks/<task>.py`` (or, for tests and out-of-tree
experiments, a full dotted module path); main calls its ``run(config, workdir, mode)``.

Multi-process jobs (SLURM, Open MPI, TPU pods, or the explicit --coordinator_address /
--num_processes / --process_id flags) join with ``jax.distributed.initialize()`` before anything
touches a device; see ``launch/README.md``.
"""

from __future__ import annotations

import ast
import errno
import logging as std_logging
import os
import re
import sys
from typing import Sequence

from absl import app, flags, logging
import jax
import ml_collections
from ml_collections import config_flags

from collage import compilation_cache
from collage.train import distributed
from collage.train import plan as plan_lib
from collage.train.errors import CheckpointError, ConfigError
from collage.train.registry import closest, config_keys, key_list, load_config, load_task
from collage.train.interrupt import Interrupted

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiments/configs/NAME.py[:ARG], the experiment's get_config(arg).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory: config.json, metrics.jsonl, checkpoints/, artifacts/.")
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "eval", "sample", "plan"],
    "train: resume from the latest checkpoint in --workdir if any and train; "
    "eval: restore the latest checkpoint, run the evaluators and write artifacts only; "
    "sample: restore the latest checkpoint and write config.sample.num samples to "
    "DIR/samples/STEP/; plan: compile the train and sample steps from shapes only for "
    "config.plan.devices devices and write DIR/plan.json (parameters, FLOPs, peak memory per "
    "device, the fit against config.plan.device_memory_gb).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for an explicit multi-process launch.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Processes in an explicit multi-process launch.")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's rank in an explicit multi-process launch.")
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the resolved config, each field with its one-line comment, "
    "and exit (nothing runs, nothing is written).")
_TRACEBACK = flags.DEFINE_bool(
    "traceback", False, "Show the full Python traceback of an error instead of one line.")

_MODES = {
    "train": "resume from the latest checkpoint in --workdir if any, and train",
    "eval": "restore the latest checkpoint, run the evaluators, write artifacts",
    "sample": "restore the latest checkpoint, write config.sample.num samples to DIR/samples/",
    "plan": "compile the train and sample steps from shapes only; DIR/plan.json: parameters, "
            "FLOPs, peak memory per device, the fit (nothing is allocated or read)",
}
_OVERRIDE = "--config."
_USAGE = ("Usage: python -m experiments.main --config experiments/configs/NAME.py[:ARG] "
          "--workdir DIR [--config.key=value ...] [--mode train|eval|sample|plan]; "
          "--helpfull lists every flag.")
# Errors that mean the user asked for something impossible: one line on stderr, exit status 2.
_USER_ERRORS = (ConfigError, CheckpointError, FileNotFoundError, FileExistsError,
                NotADirectoryError, IsADirectoryError, ValueError)


# -- flag parsing with clear errors -----------------------------------------------------------

def _die(message: str) -> None:
  sys.stderr.write("error: " + " ".join(message.split()) + "\n")
  sys.exit(2)


def _override_keys(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """(argv without --config.* overrides, the overridden keys)."""
  rest, keys, skip_next = [], [], False
  for i, a in enumerate(argv):
    if skip_next:
      skip_next = False
      continue
    if a.startswith(_OVERRIDE):
      key = a[len(_OVERRIDE):]
      if "=" in key:
        key = key.split("=", 1)[0]
      elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
        skip_next = True  # "--config.key value"
      keys.append(key)
    else:
      rest.append(a)
  return rest, keys


def _config_path(argv: Sequence[str]) -> str | None:
  """The value of --config in ``argv`` (``--config=PATH`` or ``--config PATH``; the last wins)."""
  found = None
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      found = a.split("=", 1)[1]
    elif a == "--config" and i + 1 < len(argv):
      found = argv[i + 1]
  return found


def _configs_dir() -> str:
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def config_catalogue() -> list[tuple[str, str, tuple[str, ...], dict[str, tuple[str, ...]]]]:
  """``[(experiments/configs/NAME.py, its docstring's first line, its named variants, the axes
  its variants compose from ({} when the variants are a plain list))]``."""
  out = []
  for f in sorted(os.listdir(_configs_dir())):
    if not f.endswith(".py") or f.startswith("_"):
      continue
    with open(os.path.join(_configs_dir(), f), encoding="utf-8") as fh:
      tree = ast.parse(fh.read())
    doc = (ast.get_docstring(tree) or "").strip().splitlines()
    names = {"VARIANTS": (), "AXES": {}}
    for node in tree.body:
      for t in (node.targets if isinstance(node, ast.Assign) else ()):
        if getattr(t, "id", "") in names:
          names[t.id] = ast.literal_eval(node.value)
    out.append((f"experiments/configs/{f}", doc[0] if doc else "", tuple(names["VARIANTS"]),
                dict(names["AXES"])))
  return out


def help_text() -> str:
  """What ``--help`` prints before the flags: usage, the modes, every config and variant."""
  lines = [_USAGE, "", "Modes (--mode):"]
  lines += [f"  {m:<7} {text}" for m, text in _MODES.items()]
  lines += ["", "Configs (--config PATH[:VARIANT]; the first variant is the default):"]
  for path, doc, variants, axes in config_catalogue():
    lines.append(f"  {path}  {doc}")
    if variants:
      lines.append(f"      variants: {', '.join(variants)}")
    if axes:
      lines.append("      or any words joined by '_', one per axis: "
                   + "; ".join(f"{axis}: {' | '.join(words)}" for axis, words in axes.items()))
  lines += ["", "--config PATH[:VARIANT] --print_config prints a config's fields with their "
            "comments.", ""]
  return "\n".join(lines)


def _field_comments(config_path: str) -> dict[str, str]:
  """``{dotted field: its one-line comment}`` from the assignments in the config file and in
  the runtime's shared defaults (``c.model.width = 48  # comment``; a block's fields are keyed
  by their path inside the block, e.g. ``learning_rate`` for every optimizer block)."""
  import collage.train.config as shared  # pylint: disable=g-import-not-at-top
  pattern = re.compile(r"^\s*[A-Za-z_]\w*((?:\.\w+|\[\w+\])+)\s*=[^=].*?#\s*(.+)$")
  comments: dict[str, str] = {}
  for path in (config_path, shared.__file__):  # the first comment of a field is its own
    with open(path, encoding="utf-8") as f:
      for line in f:
        m = pattern.match(line)
        if m:
          key = re.sub(r"\[(\w+)\]", r".\1", m.group(1)).lstrip(".")
          comments.setdefault(key, m.group(2).strip())
  return comments


def describe_config(config: ml_collections.ConfigDict, config_path: str) -> str:
  """Every field of ``config``, its value and its comment, one a line."""
  comments = _field_comments(config_path)
  lines = []
  for key in config_keys(config):
    value = config
    for part in key.split("."):
      value = value[part]
    parts = key.split(".")
    comment = next((comments[".".join(parts[i:])] for i in range(len(parts))
                    if ".".join(parts[i:]) in comments), "")
    lines.append(f"{key} = {value!r}" + (f"  # {comment}" if comment else ""))
  return "\n".join(lines)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parser that turns config errors into one clear paragraph and exit code 2;
  ``--help`` lists the modes, the configs and their variants, then the flags (exit 0)."""
  if any(a in ("--help", "-h", "-?", "--helpshort", "--helpfull") for a in argv[1:]):
    every = "--helpfull" in argv[1:]
    sys.stdout.write(help_text() + "\n" + (flags.FLAGS.get_help() if every else
                                            flags.FLAGS.main_module_help()) + "\n")
    sys.exit(0)
  _, override_keys = _override_keys(argv)
  path, keys = _config_path(argv), {}
  if path:  # load the config once up front to check override keys against it
    try:
      keys = config_keys(load_config(path))
    except ValueError as e:
      _die(str(e))
    for key in override_keys:
      bare = key[2:] if key.startswith("no") and key[2:] in keys else key
      if bare not in keys:
        _die(f"unknown config key {key!r} in {_OVERRIDE}{key}{closest(bare, list(keys))}; "
             f"this config's valid keys are: {key_list(keys)}.")
  try:
    rest = flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    detail = " ".join(str(e).split())
    if override_keys and "config" in detail:  # a --config.key=value of the wrong type
      _die(f"invalid command line: {detail}. Give each --config.key=value a value of the key's "
           f"type; valid keys are: {key_list(keys) or '(load a config with --config first)'}.")
    _die(f"invalid command line: {detail}. {_USAGE}")
  return rest


# -- task dispatch ------------------------------------------------------------------------------

def _quiet_library_info() -> None:
  """Keeps orbax's per-save INFO chatter out of the progress log (warnings still show)."""
  marker = os.sep + "orbax" + os.sep

  def keep(record) -> bool:
    return record.levelno >= std_logging.WARNING or marker not in record.pathname

  logging.get_absl_logger().addFilter(keep)


def _config_names() -> str:
  folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
  return ", ".join(sorted(f"experiments/configs/{f}" for f in os.listdir(folder)
                          if f.endswith(".py") and not f.startswith("_")))


def _check_workdir(path: str) -> str:
  """``--workdir`` as an absolute path; it may be new, or an existing directory."""
  if not path:
    _die("--workdir is required: the directory for config.json, checkpoints/ and metrics.")
  path = os.path.abspath(path)
  if os.path.exists(path) and not os.path.isdir(path):
    _die(f"--workdir={path} is an existing file, not a directory; give a new or existing "
         "directory.")
  parent = os.path.dirname(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    _die(f"--workdir={path}: {parent} is a file, so the directory cannot be created.")
  return path


def _request_cpu_devices(config: ml_collections.ConfigDict) -> None:
  """``--mode plan`` for N devices on a machine with fewer: N fake CPU devices, asked for
  before anything starts JAX's backends (the CPU backend is only used when the default one has
  too few devices). The CPU compiler also schedules for memory, as GPU and TPU compilers do:
  its default concurrency-optimized scheduler keeps many more buffers alive at once (the
  DCTransformer's imagenet step: 26.5 GB against 15.9 GB) and hides what recomputation saves."""
  flag = plan_lib.CPU_MEMORY_SCHEDULER
  if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
  plan = config.get("plan", None)
  if plan is not None and not plan.target and int(plan.devices) > 1:
    jax.config.update("jax_num_cpu_devices", int(plan.devices))


def main(argv: Sequence[str]) -> None:
  _quiet_library_info()
  if len(argv) > 1:
    _die(f"unexpected arguments {list(argv[1:])}; overrides take the form --config.key=value.")
  if _CONFIG.value is None:
    _die(f"--config is required; the experiments are: {_config_names()} (append :VARIANT to "
         "choose a variant).")
  config = _CONFIG.value
  if _PRINT_CONFIG.value:
    sys.stdout.write(describe_config(config, _config_path(sys.argv).partition(":")[0]) + "\n")
    return
  workdir = _check_workdir(_WORKDIR.value)
  if _MODE.value == "plan":
    _request_cpu_devices(config)
  else:  # a rerun or a resume loads its compiled steps from disk (collage/compilation_cache.py)
    compilation_cache.enable()
  distributed.maybe_initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)

  try:
    module = load_task(config.task)
  except LookupError as e:
    _die(str(e))
  try:
    module.run(config, workdir, _MODE.value)
  except Interrupted as e:
    logging.warning("%s", e)
    sys.exit(e.exit_status)
  except Exception as e:  # pylint: disable=broad-except
    disk = _disk_error(e)
    if _TRACEBACK.value or (disk is None and not isinstance(e, _USER_ERRORS)):
      raise
    if disk is not None:
      _die(_disk_message(disk, workdir))
    _die(f"{e} (rerun with --traceback for the full trace)" if not isinstance(
        e, (ConfigError, CheckpointError, FileNotFoundError, FileExistsError)) else str(e))


def _disk_error(e: BaseException) -> OSError | None:
  """The read-only / permission / full-disk OSError behind ``e`` (its causes included)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM,
                                              errno.ENOSPC, errno.EDQUOT):
      return e
    e = e.__cause__ or e.__context__
  return None


def _disk_message(e: OSError, workdir: str) -> str:
  """One line for a disk that refuses a write: what, where, and what is safe on disk."""
  where = e.filename or workdir
  if e.errno in (errno.ENOSPC, errno.EDQUOT):
    ckpt = os.path.join(workdir, "checkpoints")
    steps = sorted(int(p) for p in os.listdir(ckpt) if p.isdigit()) if os.path.isdir(ckpt) else []
    last = (f"the last complete checkpoint is step {steps[-1]} in {ckpt}" if steps else
            "no checkpoint was completed")
    detail = "" if e.strerror == os.strerror(e.errno) else f" ({e.strerror})"
    return (f"no space left on the device while writing {where}{detail}; {last}. Free space "
            "(or give a --workdir on another disk) and rerun the same command to resume.")
  return (f"cannot write {where}: {os.strerror(e.errno)}. Give a --workdir on a writable disk "
          "(the run writes config.json, checkpoints/ and metrics there).")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
