"""Entry point: parses flags, validates the config, calls train_and_evaluate.

  python -m experiments.main --config=experiments/configs/mnist_cnn.py --workdir=W \
      --config.optimizer.learning_rate=3e-4

Without --config the default experiment runs: a Transformer learns to reverse strings
(experiments/configs/reverse_transformer.py, generated data, offline). Every config
derives from experiments/configs/default.py, the list of every field (its own experiment
is an MLP on three spirals: --config=experiments/configs/default.py). Running the
same command again resumes from the newest checkpoint in W; --fresh starts over instead,
moving the previous run to W/archive/<time>/.

List the experiments, models, datasets, tasks and optimizers with
`python -m experiments.catalog`; evaluate, predict with or export a trained run with
`python -m experiments.evaluate|predict|export --workdir=W`.

A mistake on the command line (a missing config file, an unknown field, a value of the
wrong type) is explained in one line before anything heavy is imported.
"""

import difflib
import pathlib
import re
import sys

from absl import app, flags, logging
from ml_collections import ConfigDict, config_flags
from ml_collections.config_flags import config_path
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

from train.errors import UserError

CONFIG_DIR = pathlib.Path(__file__).parent / 'configs'
DEFAULT_CONFIG = str(CONFIG_DIR / 'reverse_transformer.py')
_CONFIG_FILE_FLAG = re.compile(r'--?config(=|$)')  # as ml_collections finds it in argv
# What ml_collections raises for an override path that names no field of the config.
_PATH_ERRORS = (AttributeError, KeyError, IndexError, TypeError, ValueError)
_LOAD_FAILURE = 'Configuration is not available because of an earlier failure to load'
_KINDS = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string',
          tuple: 'a tuple'}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS, argv=None) -> None:
  """Defines --config, --workdir, --distributed and --fresh.

  Without --config on the command line, ml_collections loads the default config and
  applies the `--config.a.b=value` overrides while defining the flag, so an override of a
  field that config lacks is caught here.

  Args:
    flag_values: where to define the flags (tests pass a fresh `flags.FlagValues()`).
    argv: the command line the overrides are read from; None reads sys.argv.

  Raises:
    UserError: an override names a field the default config does not have.
  """
  try:
    config_flags.DEFINE_config_file('config', DEFAULT_CONFIG, 'Experiment config file.',
                                    flag_values=flag_values, sys_argv=argv,
                                    lock_config=True)
  except _PATH_ERRORS:
    message = _bad_override(argv or sys.argv, DEFAULT_CONFIG)
    if message is None:
      raise
    raise UserError(message) from None
  flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, metrics, plots.',
                      required=True, flag_values=flag_values)
  flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() first: set it '
                    'on every host of a multi-host TPU pod or GPU cluster.',
                    flag_values=flag_values)
  flags.DEFINE_bool('fresh', False, 'Start over in an existing workdir: its previous run '
                    '(checkpoints, metrics, config) is moved to W/archive/<time>/, never '
                    'deleted.', flag_values=flag_values)


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """Parses `argv` into `flag_values`; returns the arguments left, program name first.

  Raises:
    UserError: the config file is missing or cannot be loaded, an override names an
      unknown field or gives a value of the wrong type, or a flag is missing or unknown.
  """
  config_argument = _config_argument(argv)
  config_file = None if config_argument is None else config_argument.split(':', 1)[0]
  if config_file is not None:
    _check_config_file(config_file)
  try:
    rest = flag_values(argv)
  except flags.Error as error:
    if str(error).startswith('flag --config='):
      arity = re.search(r'get_config\(\) (takes|missing) [^\n]*', str(error))
      if arity:  # the file's get_config() and the `:args` after its name disagree
        raise UserError(f'--config={config_argument}: {config_file}\'s {arity.group(0)}; '
                        'add or drop the ":argument" after the file name to match it.'
                        ) from None
      raise  # the config file's own code failed: its traceback is in the message
    raise UserError(_describe_flag_error(error, flag_values)) from None
  except _PATH_ERRORS as error:
    if "has no attribute 'get_config'" in str(error):
      raise UserError(f'--config={config_file} defines no get_config(); a config file '
                      'returns its ConfigDict from get_config(), as '
                      'experiments/configs/default.py does.') from None
    message = _bad_override(argv, config_argument or DEFAULT_CONFIG)
    if message is None:
      raise  # a bug in the config file's own code keeps its traceback
    raise UserError(message) from None
  except OSError as error:  # ml_collections defers a load failure until the config is used
    if not str(error).startswith(_LOAD_FAILURE):
      raise
    raise UserError(_unloadable(config_file, error)) from None
  config = flag_values['config'].value
  if not isinstance(config, ConfigDict):  # ml_collections' stand-in for a failed load
    try:
      config.lock()
    except OSError as error:
      raise UserError(_unloadable(config_file, error)) from None
  _check_tuple_overrides(flag_values)
  if len(rest) > 1:
    raise UserError(f'Unexpected argument {rest[1]!r}: every setting is a flag, such as '
                    '--config.model.hidden=64,64 (quote a value that holds spaces).')
  return rest


def _config_argument(argv: list[str]) -> str | None:
  """The value of the last --config=F[:args] (or --config F[:args]) in argv, if any."""
  value = None
  for i, arg in enumerate(argv[1:], 1):
    if arg == '--':
      break
    match = _CONFIG_FILE_FLAG.match(arg)
    if match:
      value = arg[match.end():] if match.group(1) else ''.join(argv[i + 1:i + 2])
  return value


def _check_config_file(path: str) -> None:
  """Raises UserError unless `path` is a file (relative paths start at the cwd)."""
  examples = ', '.join(sorted(p.name for p in CONFIG_DIR.glob('*.py') if p.stem != '__init__'))
  if not path:
    raise UserError(f'--config is empty; pass a config file, e.g. '
                    f'--config=experiments/configs/mnist_mlp.py (there: {examples}).')
  file = pathlib.Path(path)
  if file.is_dir():
    inside = sorted(p.name for p in file.glob('*.py') if p.stem != '__init__')
    raise UserError(f'--config={path} is a directory; pass one of its config files, e.g. '
                    f'--config={file / (inside or ["<name>.py"])[0]}.')
  if not file.is_file():
    where = '' if file.is_absolute() else f' in {pathlib.Path.cwd()}'
    raise UserError(f'--config={path}: no such file{where}; pass a config file such as '
                    f'experiments/configs/mnist_mlp.py (there: {examples}).')
  if file.suffix != '.py':
    raise UserError(f'--config={path} is not a Python file; pass a config file (.py, with a '
                    f'get_config() function) such as experiments/configs/mnist_mlp.py.')


def _unloadable(path: str | None, error: OSError) -> str:
  cause = error.__cause__ or error
  reason = ' '.join(str(cause).split())
  return (f'--config={path or DEFAULT_CONFIG} cannot be loaded ({reason}); fix that file, or '
          'pass another config file.')


def _bad_override(argv: list[str], config_file: str) -> str | None:
  """The sentence for the first `--config.<path>=` whose path names no field of the
  config `config_file` (a --config value) gives; None if every path does."""
  config = ConfigFileFlagParser('config').parse(config_file)
  for arg in argv[1:argv.index('--') if '--' in argv else len(argv)]:
    match = re.match(r'--?(?:no)?config\.([^=]*)', arg)
    if not match:
      continue
    try:  # setting a field to its own value fails where the override would
      config_path.set_value(match.group(1), config,
                            config_path.get_value(match.group(1), config))
    except _PATH_ERRORS:
      return (f'--config.{match.group(1)} names a field the config does not have '
              f'({_missing(match.group(1), config)}); see {config_file} for the fields it '
              'defines.')
  return None


def _missing(path: str, config: ConfigDict) -> str:
  """Where `path` leaves `config`: the group that lacks the field, or the value in the way."""
  node, where = config, 'config'
  for key in path.split('.'):
    if not isinstance(node, ConfigDict):
      return f'{where} is {_kind(node)}, not a group of fields'
    if '[' in key:
      return f'a tuple is set whole, e.g. --{where}.{key.split("[")[0]}=1,2'
    if key not in node:
      close = difflib.get_close_matches(key, list(node.keys()), n=1)
      return (f'{where} has no field {key!r}' +
              (f'; did you mean {close[0]!r}?' if close else ''))
    node, where = node[key], f'{where}.{key}'
  return f'{where} cannot be set this way'


def _kind(value) -> str:
  return _KINDS.get(type(value), f'a {type(value).__name__}')


def _example(value) -> str:
  """How `value` is written on the command line."""
  if isinstance(value, tuple):
    return f"'{value!r}'"
  return str(value)


def _describe_flag_error(error: flags.Error, flag_values: flags.FlagValues) -> str:
  """One sentence for a flag absl could not parse, naming the flag and the fix."""
  message = ' '.join(str(error).split())
  match = re.match(r'flag --([^=\s]+)=', message)
  name = match and match.group(1)
  if name and name.startswith('config.') and name in flag_values:
    flag = flag_values[name]
    default = tuple(flag.default) if isinstance(flag, flags.MultiFlag) else flag.default
    argument, reason = message[match.end():], ''
    if error.__context__ is not None:  # the parser's own error, appended after ': '
      reason = ' '.join(str(error.__context__).split())
      argument = argument.removesuffix(f': {reason}')
    if default is None:
      return f'--{name}={argument} cannot be parsed ({reason}); fix the value.'
    return (f'--{name}={argument} is not {_kind(default)}; give {name[len("config."):]} '
            f'{_kind(default)} like its default, e.g. --{name}={_example(default)}.')
  if name and 'must have a value other than None' in message:
    return f'--{name} is required; pass it, e.g. --{name}=workdirs/run1.'
  return f'{message.rstrip(".")}; run with --helpshort to see the flags.'


def _check_tuple_overrides(flag_values: flags.FlagValues) -> None:
  """Raises UserError if an overridden tuple holds elements of another type than its
  default's: ml_collections reads `--config.model.hidden=abc` as ('abc',)."""
  for path, value in flag_values['config'].override_values.items():
    flag = flag_values[f'config.{path}']
    if not isinstance(flag, flags.MultiFlag) or not flag.default:
      continue
    default = tuple(flag.default)
    allowed = {type(v) for v in default} | ({int} if float in map(type, default) else set())
    wrong = [v for v in value if type(v) not in allowed]
    if wrong:
      raise UserError(f'--config.{path} gives {value!r}, but {wrong[0]!r} is not '
                      f'{_kind(default[0])} like the elements of its default {default!r}; '
                      f'write e.g. --config.{path}={_example(default)}.')


def _parse_or_exit(argv: list[str]) -> list[str]:
  """The flags parser of `app.run`: a command-line mistake exits with one line."""
  try:
    return parse_flags(argv)
  except UserError as error:
    sys.exit(f'error: {error}')


try:
  define_flags()
except UserError as error:
  sys.exit(f'error: {error}')


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax and TFDS are chatty at INFO
  import jax
  import nets
  from train import loop  # after flag parsing: keeps --help fast
  if flags.FLAGS.distributed:
    jax.distributed.initialize()  # coordinates read from the TPU/SLURM environment
  try:
    loop.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir, fresh=flags.FLAGS.fresh)
  except (UserError, nets.ModelConfigError) as error:
    # The project's own errors are explained in one line; anything else is a bug whose
    # traceback the user needs, so it propagates untouched.
    sys.exit(f'error: {error}')


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_or_exit)
