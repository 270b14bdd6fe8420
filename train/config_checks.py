"""Config validation: one clear sentence per mistake, before anything compiles.

Unknown fields are rejected earlier, by ml_collections when the command line is parsed
(and by `nets.create` for model fields); this checks values.
"""

import pathlib

from ml_collections import ConfigDict

from train import optimizers
from train.errors import UserError


class ConfigError(UserError):
  """A config value a run cannot use; the message names the field and the fix."""


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def validate(config: ConfigDict, num_batch_shards: int = 1) -> None:
  o = config.optimizer
  _require(o.learning_rate > 0, f'config.optimizer.learning_rate={o.learning_rate} must be '
           'positive, e.g. --config.optimizer.learning_rate=1e-3.')
  _require(o.name in optimizers.OPTIMIZERS, f'config.optimizer.name={o.name!r} is not one '
           f'of {list(optimizers.OPTIMIZERS)}.')
  _require(o.schedule in optimizers.SCHEDULES, f'config.optimizer.schedule={o.schedule!r} '
           f'is not one of {list(optimizers.SCHEDULES)}.')
  for field in ('weight_decay', 'clip_global_norm', 'clip_value', 'warmup_steps', 'eps'):
    _require(o[field] >= 0, f'config.optimizer.{field}={o[field]} must be >= 0.')
  _require(0 <= o.momentum < 1, f'config.optimizer.momentum={o.momentum} must be in [0, 1).')
  _require(all(0 < b < 1 for b in o.boundaries), 'config.optimizer.boundaries='
           f'{o.boundaries} must be fractions of training in (0, 1).')
  _require(config.l2 >= 0, f'config.l2={config.l2} must be >= 0.')
  _require(0 <= config.label_smoothing < 1,
           f'config.label_smoothing={config.label_smoothing} must be in [0, 1).')
  _require(0 <= config.model.get('dropout_rate', 0.0) < 1,
           f'config.model.dropout_rate={config.model.get("dropout_rate")} must be in [0, 1).')
  _require(config.num_steps > 0 or config.num_epochs > 0, 'Set a positive config.num_steps '
           f'or config.num_epochs (got {config.num_steps} and {config.num_epochs}).')
  for field in ('log_every', 'eval_every', 'checkpoint_every', 'keep_checkpoints'):
    _require(config[field] > 0, f'config.{field}={config[field]} must be a positive integer.')
  for field in ('batch_size', 'eval_batch_size'):
    size = config[field]
    _require(size > 0 and size % num_batch_shards == 0,
             f'config.{field}={size} must be a positive multiple of the {num_batch_shards} '
             f'devices the batch is split over; use e.g. '
             f'{-(-max(size, 1) // num_batch_shards) * num_batch_shards}.')
  if config.data_dir is not None:
    _require(pathlib.Path(config.data_dir).is_dir(), f'config.data_dir={config.data_dir!r} '
             'is not a directory; point it at the dataset folder (e.g. ../shared/data/'
             'mnist5k) or leave it unset to use the TFDS catalog.')
