"""What a workdir records about each start of a run, and the guards around the workdir.

Every start appends one line to `W/run_history.jsonl`: the time, the step it starts
from, the command, the software and hardware it ran on (Python, JAX, Flax, Optax, Orbax,
device kind and count, git commit), and the config fields that changed since the last
start, which are also printed. `W/config.json` always holds the config of the newest
start, so the history, not a silent overwrite, tells what the checkpoints were made with.
"""

import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys

import jax
from etils import epath

from train import storage
from train.errors import UserError

HISTORY = 'run_history.jsonl'
ARCHIVE = 'archive'


def prepare(workdir) -> epath.Path:
  """The workdir (a local folder or a gs:// one), created if needed; a file or an
  unwritable folder is named."""
  workdir = storage.path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise UserError(f'--workdir={workdir} is a file, not a folder; choose another path.')
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise UserError(f'--workdir={workdir} cannot be created ({error.strerror or error}); '
                    'choose a path you can write to.') from None
  if storage.is_local(workdir) and not os.access(workdir, os.W_OK | os.X_OK):
    raise UserError(f'--workdir={workdir} is not writable; choose a path you can write to.')
  return workdir


def archive(workdir: epath.Path) -> epath.Path | None:
  """Moves everything a previous run left in `workdir` to W/archive/<UTC time>/."""
  contents = [p for p in workdir.iterdir() if p.name != ARCHIVE]
  if not contents:
    return None
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%S.%fZ')
  destination = workdir / ARCHIVE / stamp
  for path in contents:
    storage.move(path, destination / path.name)
  return destination


def _git_commit() -> str:
  root = pathlib.Path(__file__).resolve().parents[1]
  try:
    return subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True,
                          text=True, timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return 'unknown (not a git checkout)'


def environment() -> dict:
  import flax
  import optax
  import orbax.checkpoint
  device = jax.devices()[0]
  return {'python': platform.python_version(), 'jax': jax.__version__,
          'jaxlib': jax.lib.__version__, 'flax': flax.__version__,
          'optax': optax.__version__, 'orbax_checkpoint': orbax.checkpoint.__version__,
          'platform': device.platform, 'device_kind': device.device_kind,
          'device_count': jax.device_count(), 'process_count': jax.process_count(),
          'host': platform.node(), 'git_commit': _git_commit()}


def _flatten(tree: dict, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, name + '.'))
    else:
      flat[name] = value
  return flat


def config_changes(old: dict, new: dict) -> list[tuple[str, object, object]]:
  """(field, old value, new value) for every field that differs (None: absent)."""
  old, new = _flatten(old), _flatten(new)
  return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k)]


def describe(changes) -> str:
  return '; '.join(f'{field}: {old!r} -> {new!r}' for field, old, new in changes)


def previous_config(workdir: epath.Path) -> dict | None:
  path = workdir / 'config.json'
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return None


def record_start(workdir: epath.Path, config, start_step: int) -> None:
  """Writes config.json and a run_history.jsonl line; prints what changed."""
  current = json.loads(config.to_json_best_effort())
  previous = previous_config(workdir)
  changes = [] if previous is None else config_changes(previous, current)
  if changes:
    print(f'Config changed since the last start in {workdir} (resuming at step '
          f'{start_step}): {describe(changes)}.', flush=True)
  entry = {'time': datetime.datetime.now(datetime.timezone.utc).isoformat(),
           'start_step': start_step, 'command': sys.argv, 'environment': environment(),
           'config_changes': [list(c) for c in changes]}
  storage.append_text(workdir / HISTORY, json.dumps(entry, default=str) + '\n')
  storage.write_atomic(workdir / 'config.json', config.to_json_best_effort(indent=2))
