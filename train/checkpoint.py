"""Orbax checkpoints of the train state and the data iterator's position, saved together.

Saves are asynchronous (training continues while the previous step's arrays are written)
and atomic (Orbax writes to a temporary folder and renames it when complete, so a run
killed mid-save leaves the previous checkpoint as the newest). Restoring walks from the
newest checkpoint back: an unreadable one is reported, moved to `<dir>/../corrupt/` (kept,
not deleted, so nothing saved is lost) and the previous one is used.
"""

import pathlib
import shutil

import jax
import orbax.checkpoint as ocp


class Checkpointer:

  def __init__(self, directory: pathlib.Path, max_to_keep: int, async_save: bool = True):
    self.directory = pathlib.Path(directory).absolute()
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            enable_async_checkpointing=async_save))

  def save(self, step: int, state, data_state: dict, force: bool = False) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)),
                      force=force)

  def restore_latest(self, target):
    """(state, data_state, step) from the newest readable checkpoint, or None.

    `target` is the abstract state (ShapeDtypeStructs with shardings): every array is
    read straight into its shards, never through one device.
    """
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
      except Exception as error:  # any failure to read means this step is unusable
        moved = self._quarantine(step)
        reason = f'{type(error).__name__}: {str(error).splitlines()[0][:200]}'
        print(f'WARNING: checkpoint step {step} is corrupt ({reason}); moved it to {moved} '
              'and using the previous one.', flush=True)
        continue
      return restored['state'], restored['data'], step
    return None

  def _quarantine(self, step: int) -> pathlib.Path:
    corrupt_dir = self.directory.parent / 'corrupt_checkpoints'
    corrupt_dir.mkdir(exist_ok=True)
    destination = corrupt_dir / str(step)
    suffix = 0
    while destination.exists():
      suffix += 1
      destination = corrupt_dir / f'{step}.{suffix}'
    shutil.move(str(self.directory / str(step)), destination)
    self.manager.reload()
    return destination

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
