"""Batch size against the time an epoch takes and the accuracy a fixed number of epochs reach.

  python -m experiments.science.batch_size --workdir_root=workdirs/science/batch_size

The MNIST-5k MLP (784-512-256-10, ReLU; no dropout, no augmentation) is trained with Adam
at a constant learning rate (--learning_rate, the same for every batch size) for
--num_epochs epochs at each of --batch_sizes. An epoch is floor(4,000 / B) steps, so a
batch of B examples makes 4,000 / B updates per epoch: large batches take fewer, cheaper-
per-example steps, small ones more, noisier steps.

  seconds per epoch = floor(4,000 / B) * (median step time)

with the step time the engine logs (`step_time_ms`: training steps only, compilation,
evaluation and checkpoints excluded). The plot, batch_size.png in --workdir_root, shows
the seconds per epoch and the test accuracy after the last epoch against B (log scale);
the table and the JSON line add the steps, the step time and the final training loss.
The step time is wall-clock on whatever machine runs the command, shared or not.
"""

import pathlib
import statistics

from absl import app, flags

from experiments.science import common

FLAGS = flags.FLAGS


def variants(data_dir: str, batch_sizes, learning_rate: float, num_epochs: int) -> dict:
  """{run name: config}, one per batch size."""
  configs = {}
  for batch_size in batch_sizes:
    c = common.mnist_config(data_dir, num_epochs=num_epochs, batch_size=batch_size)
    c.optimizer.learning_rate = learning_rate
    configs[f'batch_{batch_size}'] = c
  return configs


def row(config, run: common.Run) -> dict:
  steps_per_epoch = common.MNIST5K_TRAIN // config.batch_size
  step_ms = statistics.median(run.curve('step_time_ms')[1])
  return {'batch_size': config.batch_size, 'steps': config.num_epochs * steps_per_epoch,
          'step_ms': step_ms, 'epoch_s': steps_per_epoch * step_ms / 1e3,
          'train_loss': run.final('loss'), 'test_accuracy': run.test['accuracy']}


def plot(rows: list[dict], path: pathlib.Path, num_epochs: int) -> None:
  fig, (time_ax, accuracy_ax) = common.figure(1, 2, figsize=(10, 3.8))
  sizes = [r['batch_size'] for r in rows]
  time_ax.plot(sizes, [r['epoch_s'] for r in rows], 'o-')
  time_ax.set(xlabel='batch size', ylabel='seconds per epoch (training steps only)',
              xscale='log', yscale='log', title='time per epoch')
  accuracy_ax.plot(sizes, [r['test_accuracy'] for r in rows], 'o-')
  accuracy_ax.set(xlabel='batch size', ylabel='test accuracy', xscale='log',
                  title=f'test accuracy after {num_epochs} epochs')
  for ax in (time_ax, accuracy_ax):
    ax.set_xticks(sizes, [str(s) for s in sizes], minor=False)
    ax.minorticks_off()
  fig.suptitle('Batch size on the MNIST-5k MLP (Adam, one constant learning rate)')
  common.save(fig, path)


def main(argv):
  del argv
  root = pathlib.Path(FLAGS.workdir_root)
  batch_sizes = [int(b) for b in FLAGS.batch_sizes]
  configs = variants(FLAGS.data_dir, batch_sizes, FLAGS.learning_rate, FLAGS.num_epochs)
  runs = common.train_all(configs, root, FLAGS.fresh)
  rows = [row(configs[name], run) for name, run in runs.items()]
  plot(rows, root / 'batch_size.png', FLAGS.num_epochs)
  common.report('batch_size', rows, num_epochs=FLAGS.num_epochs,
                learning_rate=FLAGS.learning_rate)


if __name__ == '__main__':
  common.define_flags('batch_size')
  flags.DEFINE_list('batch_sizes', ['16', '64', '256', '1024'],
                    'Batch sizes to compare.')
  flags.DEFINE_float('learning_rate', 1e-3, 'Adam learning rate of every run.')
  flags.DEFINE_integer('num_epochs', 10, 'Epochs per run.')
  app.run(main)
