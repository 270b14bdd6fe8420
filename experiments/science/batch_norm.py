"""The same CNN with and without batch norm, at a moderate and a high learning rate.

  python -m experiments.science.batch_norm --workdir_root=workdirs/science/batch_norm

The MNIST-5k CNN (experiments/configs/mnist_cnn.py: two 3x3 conv blocks of 32 and 64
channels with max pooling, dense 128, He init; no dropout, no augmentation; batch 128)
trained by SGD with momentum 0.9 at a constant rate, for --num_epochs, at each of
--learning_rates, with and without batch norm after each convolution (nets/cnn.py: in
training y = gamma (x - mu_B) / sqrt(var_B + eps) + beta with the batch's statistics per
channel; in evaluation their running averages). Without batch norm each convolution has
its bias back. Batch norm keeps every layer's input at zero mean and unit variance
whatever the scale of the weights before it, which is what lets it train at rates that
make the plain network diverge or crawl (Ioffe & Szegedy 2015).

The plot, batch_norm.png in --workdir_root, shows the training loss (the mean over 10
steps, log scale) and the test accuracy (the held-out digits, evaluated 5 times)
against the step; the table and the JSON line give the final training loss and the test
loss and accuracy.
"""

import pathlib

from absl import app, flags

from experiments.science import common

FLAGS = flags.FLAGS


def variants(data_dir: str, learning_rates, num_epochs: int) -> dict:
  """{run name: config}: with and without batch norm at each learning rate."""
  configs = {}
  for learning_rate in learning_rates:
    for batch_norm in (True, False):
      c = common.mnist_config(data_dir, model='cnn', num_epochs=num_epochs)
      c.model.batch_norm = batch_norm
      c.optimizer.update(name='momentum', momentum=0.9, learning_rate=learning_rate)
      c.on_nonfinite = 'skip'  # a diverging run is a result here
      configs[f'{"bn" if batch_norm else "plain"}_lr{learning_rate:g}'] = c
  return configs


def plot(runs: dict, configs: dict, path: pathlib.Path) -> None:
  fig, (loss_ax, accuracy_ax) = common.figure(1, 2, figsize=(11, 4))
  colors = {}
  for name, run in runs.items():
    c = configs[name]
    with_or_without = 'with' if c.model.batch_norm else 'without'
    label = f'{with_or_without} batch norm, lr {c.optimizer.learning_rate:g}'
    style = '-' if c.model.batch_norm else '--'
    color = colors.setdefault(c.optimizer.learning_rate, f'C{len(colors)}')
    loss_ax.plot(*run.curve('loss'), style, color=color, label=label)
    accuracy_ax.plot(*run.curve('accuracy', 'eval'), style + 'o', color=color, label=label)
  loss_ax.set(xlabel='step', ylabel='training loss (mean of 10 steps)', yscale='log',
              title='training loss')
  accuracy_ax.set(xlabel='step', ylabel='accuracy on the 1,000 held-out digits',
                  title='test accuracy')
  loss_ax.legend(fontsize=8)
  accuracy_ax.legend(fontsize=8)
  fig.suptitle('MNIST-5k CNN with and without batch norm (SGD, momentum 0.9)')
  common.save(fig, path)


def main(argv):
  del argv
  root = pathlib.Path(FLAGS.workdir_root)
  learning_rates = [float(r) for r in FLAGS.learning_rates]
  configs = variants(FLAGS.data_dir, learning_rates, FLAGS.num_epochs)
  runs = common.train_all(configs, root, FLAGS.fresh)
  plot(runs, configs, root / 'batch_norm.png')
  rows = [{'batch_norm': configs[name].model.batch_norm,
           'learning_rate': configs[name].optimizer.learning_rate,
           'train_loss': run.final('loss'), 'test_loss': run.test['loss'],
           'test_accuracy': run.test['accuracy']} for name, run in runs.items()]
  common.report('batch_norm', rows, num_epochs=FLAGS.num_epochs)


if __name__ == '__main__':
  common.define_flags('batch_norm')
  flags.DEFINE_list('learning_rates', ['0.01', '0.1'], 'SGD (momentum 0.9) learning rates.')
  flags.DEFINE_integer('num_epochs', 3, 'Epochs per run (31 steps each).')
  app.run(main)
