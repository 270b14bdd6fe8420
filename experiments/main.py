"""Entry point: parses flags, validates the config, calls train_and_evaluate.

  python -m experiments.main --config=experiments/configs/mnist_cnn.py --workdir=W \
      --config.optimizer.learning_rate=3e-4

Without --config the default experiment (experiments/configs/default.py) runs. Running the
same command again resumes from the newest checkpoint in W.
"""

import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

DEFAULT_CONFIG = str(pathlib.Path(__file__).parent / 'configs' / 'default.py')


def define_flags():
  """Defines --config and --workdir.

  ml_collections applies `--config.a.b=value` overrides while defining the flag, so an
  override of a field the config lacks is caught here and reported in one line.
  """
  try:
    config_flags.DEFINE_config_file('config', DEFAULT_CONFIG, 'Experiment config file.',
                                    lock_config=True)
  except (AttributeError, KeyError) as error:
    detail = str(error).strip('\'"').replace('\\n', ' ').replace("\\'", "'")
    sys.exit(f'error: a --config.* flag names a field the config does not have ({detail}); '
             'see the config file for the fields it defines.')
  flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, metrics, plots.',
                      required=True)
  flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() first: set it '
                    'on every host of a multi-host TPU pod or GPU cluster.')


define_flags()


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax and TFDS are chatty at INFO
  import jax
  import nets
  from train import loop  # after flag parsing: keeps --help fast
  from train.errors import UserError
  if flags.FLAGS.distributed:
    jax.distributed.initialize()  # coordinates read from the TPU/SLURM environment
  try:
    loop.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  except (UserError, nets.ModelConfigError) as error:
    # The project's own errors are explained in one line; anything else is a bug whose
    # traceback the user needs, so it propagates untouched.
    sys.exit(f'error: {error}')


if __name__ == '__main__':
  app.run(main)
