"""Reading a TFDS catalog dataset without TensorFlow, or saying how to prepare it.

`tfds.data_source` reads prepared ArrayRecord files and needs no TensorFlow. A dataset
that was never prepared would make TFDS try to download and build it, which needs
TensorFlow and the internet; instead the user is told, in one sentence, how to prepare
it or which local files to use.
"""

import os

import tensorflow_datasets as tfds

from train.errors import UserError


def data_source(name: str, split, data_dir: str | None, local_hint: str | None):
  """`tfds.data_source(name, split=split, data_dir=data_dir)` of a prepared dataset.

  `local_hint` names the local files the dataset can be read from instead (None: none).
  """
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception:
    if tfds.builder(name, data_dir=data_dir).is_prepared():
      raise  # prepared, so this is not the user's missing step: keep the traceback
  where = data_dir or os.path.join('~', 'tensorflow_datasets')
  local = f', or set --config.data_dir to local files ({local_hint})' if local_hint else ''
  raise UserError(
      f'The TFDS catalog dataset {name!r} is not prepared in {where}: prepare it once on a '
      f'machine with internet (pip install tensorflow; tfds build {name.split("/")[0]} '
      f'--data_dir={where}){local}.')
