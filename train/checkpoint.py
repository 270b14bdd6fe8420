"""Orbax checkpoints of the train state and the data iterator's position, saved together.

Saves are asynchronous (training continues while the previous step's arrays are written)
and atomic (Orbax writes to a temporary folder and renames it when complete, so a run
killed mid-save leaves the previous checkpoint as the newest). Once a save has finished,
a SHA-256 of every file is written beside it (`<step>/checksums.json`), so bytes that
change later (a bad disk, a partial copy) are caught on restore, which Orbax alone does
not do. Restoring walks from the newest checkpoint back:

* a checkpoint of other shapes (the model changed) is not corrupt: the run is refused
  with the first differing parameter named (`IncompatibleCheckpoint`);
* an unreadable one, or one whose checksums differ, is reported in one line, moved to
  `<dir>/../corrupt_checkpoints/` (kept, not deleted, so nothing saved is lost) and the
  previous one is used.

The folder may be local or in a bucket (gs://): every file operation goes through epath.
"""

import contextlib
import hashlib
import json
import os

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from train import storage
from train.errors import UserError

CHECKSUMS = 'checksums.json'


class IncompatibleCheckpoint(UserError):
  """The newest checkpoint holds a state of other shapes than the config builds."""

  def __init__(self, step: int, difference: str):
    super().__init__(f'checkpoint step {step}: {difference}')
    self.step, self.difference = step, difference


def _key(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, 'key', getattr(k, 'idx', getattr(k, 'name', k)))) for k in path)


def saved_shapes(step_dir: epath.Path) -> dict[tuple[str, ...], tuple[int, ...]] | None:
  """{parameter path: shape} of a saved state, from Orbax's metadata (None: unreadable)."""
  try:
    with quiet():
      metadata = ocp.StandardCheckpointer().metadata(step_dir / 'state')
    tree = getattr(metadata, 'item_metadata', metadata)
    return {_key(p): tuple(leaf.shape)
            for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}
  except Exception:  # unreadable metadata: left for the restore itself to judge
    return None


def first_difference(saved: dict, target) -> str | None:
  """The first parameter whose shape differs between a checkpoint and `target`."""
  leaves = jax.tree_util.tree_leaves_with_path(target)
  keys = {_key(p) for p, x in leaves if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)}
  saved = {k: v for k, v in saved.items() if k not in keys}  # keys are saved as raw data
  wanted = {_key(p): tuple(x.shape) for p, x in leaves if _key(p) not in keys}
  if saved == wanted:
    return None
  names = sorted(set(saved) | set(wanted), key=lambda k: (k[0] != 'params', k))
  for key in names:
    if saved.get(key) != wanted.get(key):
      show = lambda shape: 'absent' if shape is None else f'shape {list(shape)}'
      return (f'{"/".join(key)} is {show(saved.get(key))} in the checkpoint but '
              f'{show(wanted.get(key))} in the model this config builds')
  return None


def file_digests(directory: epath.Path) -> dict[str, str]:
  return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
          for path in storage.files_under(directory) if path.name != CHECKSUMS}


def verify(step_dir: epath.Path) -> str | None:
  """What is wrong with a checkpoint's files (None: they match their checksums, or none
  were written yet)."""
  try:
    expected = json.loads((step_dir / CHECKSUMS).read_text())
  except FileNotFoundError:
    return None
  except ValueError:
    return f'{CHECKSUMS} is unreadable'
  actual = file_digests(step_dir)
  changed = sorted(f for f in set(expected) | set(actual) if expected.get(f) != actual.get(f))
  return f'{len(changed)} file(s) differ from their checksums, e.g. {changed[0]}' if \
      changed else None


@contextlib.contextmanager
def quiet():
  """Silences Orbax's and TensorStore's logging (Python and C++) while reading."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.FATAL)
  saved_stderr = os.dup(2)
  with open(os.devnull, 'w') as devnull:
    os.dup2(devnull.fileno(), 2)
  try:
    yield
  finally:
    os.dup2(saved_stderr, 2)
    os.close(saved_stderr)
    logging.set_verbosity(verbosity)


def one_line(error: Exception, limit: int = 160) -> str:
  text = ' '.join(str(error).split()) or type(error).__name__
  if len(text) > limit:
    text = text[:limit].rsplit(' ', 1)[0] + ' ...'
  return f'{type(error).__name__}: {text}'


class Checkpointer:

  def __init__(self, directory, max_to_keep: int, async_save: bool = True):
    self.directory = storage.path(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            enable_async_checkpointing=async_save))

  def save(self, step: int, state, data_state: dict, force: bool = False,
           best=None) -> None:
    """`best`: (variables, record) of train/selection.py, saved in the same step."""
    self._seal_finished()
    items = {'state': ocp.args.StandardSave(state), 'data': ocp.args.JsonSave(data_state)}
    if best is not None:
      items.update(best=ocp.args.StandardSave(best[0]), selection=ocp.args.JsonSave(best[1]))
    self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def _seal_finished(self) -> None:
    """Waits for the save in flight, then writes the checksums of unsealed steps."""
    self.manager.wait_until_finished()
    if jax.process_index() != 0:
      return
    for step in self.manager.all_steps():
      step_dir = self.directory / str(step)
      if step_dir.is_dir() and not (step_dir / CHECKSUMS).exists():
        storage.write_atomic(step_dir / CHECKSUMS, json.dumps(file_digests(step_dir), indent=0))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore_latest(self, target, best_target=None):
    """(state, data_state, step, best) from the newest readable checkpoint, or None.

    `target` is the abstract state (ShapeDtypeStructs with shardings): every array is
    read straight into its shards, never through one device. `best` is the step's
    (variables, record) of train/selection.py, read into `best_target`, or None (not
    asked for, or not saved).
    """
    for step in sorted(self.manager.all_steps(), reverse=True):
      saved = saved_shapes(self.directory / str(step))
      difference = saved and first_difference(saved, target)
      if difference:
        raise IncompatibleCheckpoint(step, difference)
      problem = verify(self.directory / str(step))
      if problem is None:
        items = {'state': ocp.args.StandardRestore(target), 'data': ocp.args.JsonRestore()}
        with_best = best_target is not None and (self.directory / str(step) / 'best').is_dir()
        if with_best:
          items.update(best=ocp.args.StandardRestore(best_target),
                       selection=ocp.args.JsonRestore())
        try:
          with quiet():
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
          best = (restored['best'], restored['selection']) if with_best else None
          return restored['state'], restored['data'], step, best
        except Exception as error:  # any failure to read means this step is unusable
          problem = one_line(error)
      moved = self._quarantine(step)
      print(f'WARNING: checkpoint step {step} is corrupt ({problem}); moved it to {moved} '
            'and using the previous one.', flush=True)
    return None

  def _quarantine(self, step: int) -> epath.Path:
    corrupt_dir = self.directory.parent / 'corrupt_checkpoints'
    destination = corrupt_dir / str(step)
    suffix = 0
    while destination.exists():
      suffix += 1
      destination = corrupt_dir / f'{step}.{suffix}'
    storage.move(self.directory / str(step), destination)
    self.manager.reload()
    return destination

  def close(self) -> None:
    """Finishes the save in flight and seals it; closing again does nothing."""
    if self.manager is not None:
      self._seal_finished()
      self.manager.close()
      self.manager = None
