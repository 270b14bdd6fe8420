"""Config validation: one clear sentence per mistake, before anything compiles.

Unknown fields are rejected earlier, by ml_collections when the command line is parsed
(and by `nets.create` for model fields); this checks values.
"""

import math
import pathlib
import re

from ml_collections import ConfigDict

from train import optimizers
from train.parallel import BATCH_AXES, SHARDING_RULES, mesh_axes_of
from train.errors import UserError


class ConfigError(UserError):
  """A config value a run cannot use; the message names the field and the fix."""


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


# The fields every config has (default.py defines them), by the type the engine reads:
# ConfigDict lets Python code set any field to None, which would fail deep inside instead.
_TYPES = {
    'an integer': ('seed', 'num_steps', 'num_epochs', 'log_every', 'eval_every', 'patience',
                   'checkpoint_every', 'keep_checkpoints', 'batch_size', 'eval_batch_size',
                   'optimizer.warmup_steps', 'data.num_classes', 'data.num_train',
                   'data.num_test'),
    'a number': ('l2', 'label_smoothing', 'data.noise', 'model.dropout_rate',
                 'optimizer.learning_rate', 'optimizer.momentum', 'optimizer.b1',
                 'optimizer.b2', 'optimizer.eps', 'optimizer.rho', 'optimizer.weight_decay',
                 'optimizer.decay_factor', 'optimizer.end_factor',
                 'optimizer.clip_global_norm', 'optimizer.clip_value'),
    'a string': ('dataset', 'task', 'loss', 'parallel_mode', 'on_nonfinite', 'select_best',
                 'sharding', 'model.name', 'optimizer.name', 'optimizer.schedule'),
    'a tuple': ('mesh_shape', 'mesh_axes', 'param_sharding', 'logical_axis_rules',
                'optimizer.boundaries'),
}
_CLASSES = {'an integer': int, 'a number': (int, float), 'a string': str, 'a tuple': tuple}
_ABSENT = object()


def _get(config: ConfigDict, name: str):
  """config.<name> for a dotted name; _ABSENT if the config has no such field."""
  for key in name.split('.'):
    if not isinstance(config, ConfigDict) or key not in config:
      return _ABSENT
    config = config[key]
  return config


def _floats(config: ConfigDict, prefix: str = 'config'):
  """(name, value) of every float in `config`, nested ones included."""
  for key, value in config.items():
    if isinstance(value, ConfigDict):
      yield from _floats(value, f'{prefix}.{key}')
    elif isinstance(value, float):
      yield f'{prefix}.{key}', value
    elif isinstance(value, tuple):
      yield from ((f'{prefix}.{key}', v) for v in value if isinstance(v, float))


def validate(config: ConfigDict, num_batch_shards: int = 1) -> None:
  for kind, names in _TYPES.items():
    for name in names:
      value = _get(config, name)
      _require(value is _ABSENT or (isinstance(value, _CLASSES[kind])
                                    and not isinstance(value, bool)),
               f'config.{name}={value!r} must be {kind}.')
  for name, value in _floats(config):
    _require(math.isfinite(value), f'{name}={value} must be a finite number, not NaN or '
             'infinity.')
  _require(0 <= config.seed < 2**32, f'config.seed={config.seed} must be an integer in '
           '[0, 2**32), e.g. --config.seed=0.')
  for field in ('num_classes', 'num_train', 'num_test'):  # sizes of generated data
    _require(config.data.get(field, 1) > 0, f'config.data.{field}='
             f'{config.data.get(field)} must be a positive integer.')
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
  _require(all(_is_number(b) and 0 < b < 1 for b in o.boundaries), 'config.optimizer.'
           f'boundaries={o.boundaries} must be fractions of training in (0, 1).')
  _require(config.l2 >= 0, f'config.l2={config.l2} must be >= 0.')
  _require(0 <= config.label_smoothing < 1,
           f'config.label_smoothing={config.label_smoothing} must be in [0, 1).')
  _check_model_sizes(config.model)
  _require(0 <= config.model.get('dropout_rate', 0.0) < 1,
           f'config.model.dropout_rate={config.model.get("dropout_rate")} must be in [0, 1).')
  _require(config.num_steps > 0 or config.num_epochs > 0, 'Set a positive config.num_steps '
           f'or config.num_epochs (got {config.num_steps} and {config.num_epochs}).')
  _require(config.get('patience', 0) >= 0 and (config.get('patience', 0) == 0 or
                                                config.get('select_best')),
           f'config.patience={config.get("patience")} must be >= 0, and stops early only '
           'with the metric it watches: set config.select_best too (e.g. accuracy).')
  for field in ('log_every', 'eval_every', 'checkpoint_every', 'keep_checkpoints'):
    _require(config[field] > 0, f'config.{field}={config[field]} must be a positive integer.')
  for field in ('batch_size', 'eval_batch_size'):
    size = config[field]
    _require(size > 0 and size % num_batch_shards == 0,
             f'config.{field}={size} must be a positive multiple of the {num_batch_shards} '
             f'devices the batch is split over; use e.g. '
             f'{-(-max(size, 1) // num_batch_shards) * num_batch_shards}.')
  _check_parallelism(config)
  if config.data_dir is not None:
    _require(pathlib.Path(config.data_dir).is_dir(), f'config.data_dir={config.data_dir!r} '
             'is not a directory; point it at the dataset folder (e.g. ../shared/data/'
             'mnist5k) or leave it unset to use the TFDS catalog.')


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_model_sizes(model: ConfigDict) -> None:
  """The integers of config.model, alone or in tuples, are sizes (widths, heads, layers,
  kernel sizes, strides) and must be positive; ids (fields named `*_id`) are exempt."""
  for key, value in model.items():
    values = value if isinstance(value, tuple) else (value,)
    sizes = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    _require(key.endswith('_id') or all(v > 0 for v in sizes), f'config.model.{key}='
             f'{value} must be positive: it is a size (a width, a count or a kernel size).')


def _check_parallelism(config: ConfigDict) -> None:
  """The mesh and the sharding rules are well formed (what they fit is checked later)."""
  shape, axes = config.mesh_shape, config.mesh_axes
  _require(all(isinstance(d, int) and not isinstance(d, bool) and (d == -1 or d > 0)
               for d in shape), f'config.mesh_shape={shape} must hold positive sizes and at '
           'most one -1 ("the rest"), e.g. (-1,).')
  # XLA aborts the process on an axis name that is not ASCII; keep them identifiers.
  _require(all(isinstance(a, str) and re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', a)
               for a in axes) and len(set(axes)) == len(axes), f'config.mesh_axes={axes} '
           'must be distinct names of ASCII letters, digits and _, e.g. (\'data\',).')
  for rule in config.param_sharding:
    example = "(('kernel', (None, 'model')), ('.*', ()))"
    _require(isinstance(rule, tuple) and len(rule) == 2 and isinstance(rule[0], str)
             and isinstance(rule[1], tuple), f'config.param_sharding rule {rule!r} must be '
             f'(regex, partition spec), as in {example}.')
    pattern, spec = rule
    try:
      re.compile(pattern)
    except re.error as error:
      raise ConfigError(f'config.param_sharding regex {pattern!r} is not a valid regular '
                        f'expression ({error}).') from None
    named = [a for entry in spec for a in (entry if isinstance(entry, tuple) else (entry,))]
    _require(all(a is None or a in axes for a in named), f'config.param_sharding rule '
             f'{rule!r} names axes outside config.mesh_axes={axes}; use those names or None.')
  _check_logical_sharding(config, axes)


def _check_logical_sharding(config: ConfigDict, axes) -> None:
  """config.sharding names a preset whose mesh axes exist; overrides are well formed."""
  _require(config.sharding in SHARDING_RULES, f'config.sharding={config.sharding!r} must be '
           f'one of {sorted(SHARDING_RULES)}.')
  if 'tensor' in config.sharding:
    _require('model' in axes, f'config.sharding={config.sharding!r} splits over a \'model\' '
             f'mesh axis, which config.mesh_axes={axes} lacks; e.g. --config.mesh_axes='
             "\"('data','model')\" --config.mesh_shape='(-1,2)'.")
  if 'fsdp' in config.sharding:
    _require(any(a in BATCH_AXES for a in axes), f'config.sharding={config.sharding!r} splits '
             f'over the batch axes {BATCH_AXES}, and config.mesh_axes={axes} has none.')
  for rule in config.logical_axis_rules:
    _require(isinstance(rule, tuple) and len(rule) == 2 and isinstance(rule[0], str)
             and isinstance(rule[1], (str, tuple, type(None)))
             and all(a in axes for a in mesh_axes_of(rule[1])),
             f'config.logical_axis_rules entry {rule!r} must be (logical name, mesh axis or '
             f'tuple of mesh axes), the mesh axes from config.mesh_axes={axes}, e.g. '
             "('embed', 'data').")

