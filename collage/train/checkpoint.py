"""Checkpoints in ``WORKDIR/checkpoints``: the train state and every process's data position.

A checkpoint step directory holds two items:

- ``state``: the :class:`~collage.train.state.TrainState` (orbax PyTree, restored into the
  shardings of the *current* mesh, so a run may resume on a different device count);
- ``data``: one JSON file per process, ``process_{i}-of-{n}.json``, with that process's
  train-iterator state (``iterator.get_state()``), so the data order resumes exactly.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from collage.train.errors import CheckpointError


# -- per-process iterator state -----------------------------------------------------------------

def _process_file(directory: epath.Path) -> epath.Path:
  return directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"


class IteratorStateHandler(ocp.CheckpointHandler):
  """Writes / reads this process's data-iterator state as JSON (every process writes its own)."""

  def save(self, directory: epath.Path, args: "IteratorStateSave"):
    state = args.state
    if isinstance(state, (bytes, bytearray)):
      payload = {"encoding": "base64", "state": base64.b64encode(bytes(state)).decode("ascii")}
    else:
      payload = {"encoding": "json", "state": state}
    _process_file(directory).write_text(json.dumps(payload, indent=1, sort_keys=True))

  def restore(self, directory: epath.Path, args: "IteratorStateRestore | None" = None) -> Any:
    del args
    path = _process_file(directory)
    if not path.exists():
      found = sorted(p.name for p in directory.iterdir()) if directory.exists() else []
      raise CheckpointError(
          f"no data-iterator state for this process at {path} (found: {found or 'nothing'}). "
          "Resuming needs the same number of processes as the run that saved it.")
    payload = json.loads(path.read_text())
    if payload["encoding"] == "base64":
      return base64.b64decode(payload["state"])
    return payload["state"]

  def structure(self, directory: epath.Path) -> Any:
    del directory
    return None

  def metadata(self, directory: epath.Path) -> Any:
    del directory
    return None

  def finalize(self, directory: epath.Path) -> None:
    del directory

  def close(self) -> None:
    """Part of orbax's handler interface; this handler holds no open resources."""


@ocp.args.register_with_handler(IteratorStateHandler, for_save=True)
@dataclasses.dataclass
class IteratorStateSave(ocp.args.CheckpointArgs):
  """Args to save: ``state`` is ``iterator.get_state()`` taken *now* (a JSON-able value or bytes)."""
  state: Any


@ocp.args.register_with_handler(IteratorStateHandler, for_restore=True)
@dataclasses.dataclass
class IteratorStateRestore(ocp.args.CheckpointArgs):
  """Args to restore this process's iterator state."""


# -- the manager ----------------------------------------------------------------------------------

class Checkpointer:
  """Saves and restores ``(state, data_state)`` with an orbax ``CheckpointManager``.

  Args:
    directory: the checkpoint root, e.g. ``WORKDIR/checkpoints``.
    keep: how many most recent checkpoints to keep.
    async_save: write in a background thread (arrays are copied off the devices first,
      so donated buffers may be reused immediately).
    read_only: restore only (``--mode eval`` / ``sample``, tools): the manager creates, cleans
      and deletes nothing, so it may read a run that is still training and saving.
  """

  def __init__(self, directory: str, keep: int, async_save: bool = True,
               read_only: bool = False):
    self.directory = epath.Path(os.path.abspath(directory))
    # A save that died before its commit leaves a temporary directory: never a step, and removed
    # when the next writing manager opens the directory (a reader leaves it: it may be the save
    # of a run that is training now).
    if read_only:
      options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                             save_interval_steps=0,
                                             cleanup_tmp_directories=False)
    else:
      options = ocp.CheckpointManagerOptions(
          max_to_keep=keep, create=True, enable_async_checkpointing=async_save,
          cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data"))

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None when the directory holds none.

    Raises:
      CheckpointError: when the directory holds step directories orbax does not recognise
        as complete checkpoints (e.g. a truncated or hand-edited copy), rather than silently
        starting from scratch.
    """
    self._manager.reload()
    steps = list(self._manager.all_steps())
    on_disk = sorted(int(p.name) for p in self.directory.iterdir()
                     if p.is_dir() and p.name.isdigit()) if self.directory.exists() else []
    unknown = [s for s in on_disk if s not in steps]
    if unknown:
      raise CheckpointError(
          f"checkpoint directory {self.directory} holds step directories {unknown} that are not "
          f"complete orbax checkpoints (complete: {steps or 'none'}). The checkpoint is corrupt or "
          "truncated; delete the bad step directories to resume from an earlier one, or use a "
          "new --workdir to start over.")
    return max(steps) if steps else None

  def all_steps(self) -> list[int]:
    """The complete checkpoints' steps, ascending."""
    self._manager.reload()
    return sorted(int(s) for s in self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: Any, force: bool = False) -> bool:
    """Saves ``state`` (a pytree of global arrays) and this process's ``data_state``."""
    return self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                data=IteratorStateSave(data_state)),
        force=force)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, Any]:
    """Restores checkpoint ``step``.

    Args:
      step: the step to restore (see :meth:`latest_step`).
      abstract_state: pytree of ``jax.ShapeDtypeStruct`` with the *current* mesh's shardings;
        the restored arrays take these shardings, whatever device count saved them.

    Returns:
      ``(state, data_state)``.

    Raises:
      CheckpointError: naming the step directory, when anything in it cannot be read or does
        not match the structure this config builds.
    """
    path = self.directory / str(step)
    try:
      restored = self._manager.restore(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                  data=IteratorStateRestore()))
    except CheckpointError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      msg = " ".join(str(e).split())
      if len(msg) > 600:
        msg = msg[:600] + " ..."
      raise CheckpointError(
          f"cannot restore checkpoint {path}: {type(e).__name__}: {msg}. Either it is damaged "
          "(truncated or corrupted: then delete that step directory to resume from an earlier "
          "one), or it was written by a config of another model/optimizer structure (then run "
          "with the run's recorded config.json, or use a new --workdir)."
      ) from e
    return restored["state"], restored["data"]

  def wait(self) -> None:
    """Blocks until background saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
