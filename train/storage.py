"""A run's files on a local disk or in a bucket (gs://, s3://), through one API: etils.epath.

Orbax writes checkpoints through epath and TensorStore, and tensorboardX writes gs://
itself; everything else the engine keeps in a workdir goes through here. A bucket differs
from a disk in the two ways the engine relies on:

* an object cannot be appended to: `append_text` rewrites it there;
* an object is written whole or not at all, so one upload is already atomic, where a
  local file needs a temporary file and a rename (`write_atomic`).

gs:// paths need `gcsfs` (in requirements.txt) and the machine's Google credentials.
"""

import os

from etils import epath

REMOTE_SCHEMES = ('gs://', 's3://', 'az://')


def is_local(location) -> bool:
  return not os.fspath(location).startswith(REMOTE_SCHEMES)


def path(location) -> epath.Path:
  """An epath.Path; a local one is made absolute (Orbax requires it)."""
  location = os.fspath(location)
  return epath.Path(os.path.abspath(location) if is_local(location) else location)


def write_atomic(file: epath.Path, data: str | bytes) -> None:
  """Writes `file` so that a reader sees the old contents or the new, never a part."""
  write = lambda p: p.write_text(data) if isinstance(data, str) else p.write_bytes(data)
  if not is_local(file):
    write(file)
    return
  tmp = file.with_name(file.name + '.tmp')
  write(tmp)
  tmp.replace(file)


def append_text(file: epath.Path, text: str) -> None:
  if is_local(file):
    with file.open('a') as f:
      f.write(text)
  else:
    write_atomic(file, (file.read_text() if file.exists() else '') + text)


def files_under(directory: epath.Path) -> list[epath.Path]:
  """Every file below `directory`, sorted (one listing per folder: no `**` glob on GCS)."""
  found = []
  for child in directory.iterdir():
    found.extend(files_under(child) if child.is_dir() else [child])
  return sorted(found, key=str)


def copy_tree(source: epath.Path, destination: epath.Path) -> None:
  """Copies every file below `source`, replacing those already at `destination`; from a
  disk to a bucket too (epath's own copy stays within one filesystem)."""
  for file in files_under(source):
    target = destination / file.relative_to(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_local(file) == is_local(target):
      file.copy(target, overwrite=True)
    else:
      target.write_bytes(file.read_bytes())


def move(source: epath.Path, destination: epath.Path) -> None:
  """Moves a file or folder; `destination` must not exist. A bucket has no folders to
  rename, so there every object is copied first and the originals deleted after."""
  if is_local(source):
    destination.parent.mkdir(parents=True, exist_ok=True)
    source.rename(destination)
  elif source.is_dir():
    copy_tree(source, destination)
    source.rmtree()
  else:
    source.copy(destination)
    source.unlink()
