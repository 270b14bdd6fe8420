"""Learning-rate schedules: the rate each gives against the step, and the loss it reaches.

  python -m experiments.science.schedules --workdir_root=workdirs/science/schedules

The MNIST-5k MLP (784-512-256-10, ReLU; no dropout, no augmentation; batch 128) is trained
by SGD with momentum 0.9 for --num_epochs (T steps) at peak rate --learning_rate (eta),
once per schedule of train/optimizers.py (t = step):

  constant     eta
  step         eta, times 0.1 at t = T/2 and again at 3T/4
  exponential  eta * 0.1^(t/T)       (not in the default --schedules)
  linear       eta * (1 - t/T)
  cosine       eta * (1 + cos(pi t/T)) / 2
  warmup_cosine  eta * t/W for the first W = T/10 steps, then cosine over the rest

The plot, schedules.png in --workdir_root, shows the learning rate and the training loss
(the mean over 10 steps, log scale) against the step; the table and the JSON line give
each schedule's final training loss and test loss and accuracy (nothing is chosen on
them).
"""

import pathlib

from absl import app, flags

from experiments.science import common

FLAGS = flags.FLAGS

# name: (config.optimizer.schedule, warmup as a fraction of the steps)
SCHEDULES = {
    'constant': ('constant', 0.0), 'step': ('step', 0.0), 'exponential': ('exponential', 0.0),
    'linear': ('linear', 0.0), 'cosine': ('cosine', 0.0), 'warmup_cosine': ('cosine', 0.1)}


def variants(data_dir: str, schedules, learning_rate: float, num_epochs: int) -> dict:
  """{schedule name: config}; step decay by 0.1 at 1/2 and 3/4, decays to 0 (exponential:
  to 0.1 eta)."""
  configs = {}
  for name in schedules:
    schedule, warmup = SCHEDULES[name]
    c = common.mnist_config(data_dir, num_epochs=num_epochs)
    steps = num_epochs * (common.MNIST5K_TRAIN // c.batch_size)
    c.optimizer.update(name='momentum', momentum=0.9, learning_rate=learning_rate,
                       schedule=schedule, warmup_steps=int(warmup * steps), decay_factor=0.1,
                       boundaries=(0.5, 0.75), end_factor=0.0)
    c.log_every = 5
    configs[name] = c
  return configs


def plot(runs: dict, path: pathlib.Path, learning_rate: float) -> None:
  fig, (rate_ax, loss_ax) = common.figure(1, 2, figsize=(11, 4))
  for name, run in runs.items():
    line, = rate_ax.plot(*run.curve('learning_rate'), label=name)
    loss_ax.plot(*run.curve('loss'), color=line.get_color(), label=name)
  rate_ax.set(xlabel='step', ylabel='learning rate', title='schedule')
  loss_ax.set(xlabel='step', ylabel='training loss (mean of 5 steps)', yscale='log',
              title='training loss')
  rate_ax.legend(fontsize=8)
  loss_ax.legend(fontsize=8)
  fig.suptitle(f'Schedules on the MNIST-5k MLP (SGD, momentum 0.9, peak rate {learning_rate})')
  common.save(fig, path)


def main(argv):
  del argv
  root = pathlib.Path(FLAGS.workdir_root)
  configs = variants(FLAGS.data_dir, FLAGS.schedules, FLAGS.learning_rate, FLAGS.num_epochs)
  runs = common.train_all(configs, root, FLAGS.fresh)
  plot(runs, root / 'schedules.png', FLAGS.learning_rate)
  rows = [{'schedule': name, 'train_loss': run.final('loss'), 'test_loss': run.test['loss'],
           'test_accuracy': run.test['accuracy']} for name, run in runs.items()]
  common.report('schedules', rows, learning_rate=FLAGS.learning_rate,
                num_epochs=FLAGS.num_epochs)


if __name__ == '__main__':
  common.define_flags('schedules')
  flags.DEFINE_list('schedules', ['constant', 'step', 'linear', 'cosine', 'warmup_cosine'],
                    f'Schedules to compare, of {list(SCHEDULES)}.')
  flags.DEFINE_float('learning_rate', 0.1, 'Peak learning rate of every schedule.')
  flags.DEFINE_integer('num_epochs', 20, 'Epochs per run (31 steps each).')
  app.run(main)
