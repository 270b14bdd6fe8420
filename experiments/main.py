"""Entry point: parses flags, validates the config, calls train_and_evaluate.

  python -m experiments.main --config=experiments/configs/mnist_cnn.py --workdir=W \
      --config.optimizer.learning_rate=3e-4

Without --config the default experiment (experiments/configs/default.py) runs. Running the
same command again resumes from the newest checkpoint in W.
"""

import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

DEFAULT_CONFIG = str(pathlib.Path(__file__).parent / 'configs' / 'default.py')

config_flags.DEFINE_config_file('config', DEFAULT_CONFIG, 'Experiment config file.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, metrics, plots.',
                    required=True)


def main(argv):
  del argv
  from train import config_checks, loop  # after flag parsing: keeps --help fast
  try:
    loop.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  except (config_checks.ConfigError, ValueError) as error:
    sys.exit(f'error: {error}')


if __name__ == '__main__':
  app.run(main)
