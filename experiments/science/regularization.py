"""L2 strength and dropout rate against the generalisation gap, train - test accuracy.

  python -m experiments.science.regularization --workdir_root=workdirs/science/regularization

The MNIST-5k MLP (784-512-256-10, ReLU, He init; no augmentation; Adam at a constant
1e-3, batch 128) trained for --num_epochs without regularisation, then with each L2
coefficient of --l2s alone (config.l2 = lambda: the loss gains lambda/2 sum ||W||^2 over
the weights, not the biases) and each dropout rate of --dropout_rates alone (each hidden
unit zeroed with probability p in training and the survivors scaled by 1/(1-p)).

  gap = accuracy on the 4,000 training digits - accuracy on the 1,000 held-out digits

both measured after the last step in evaluation mode (no dropout: experiments/evaluate.py
--split=train, then the run's test line); the accuracy the run logged on its training
batches would be lowered by dropout itself. The plot, regularization.png in
--workdir_root, shows the gap (and the test accuracy, dashed, right axis) against the L2
coefficient and against the dropout rate; the table and JSON line give both accuracies.
Nothing is chosen on the test split.
"""

import pathlib

from absl import app, flags

from experiments.science import common

FLAGS = flags.FLAGS


def variants(data_dir: str, l2s, dropout_rates, num_epochs: int) -> dict:
  """{run name: config}: 'none', then 'l2_<lambda>' and 'dropout_<p>' (zeros map to 'none')."""
  settings = {'none': (0.0, 0.0)}
  settings.update({f'l2_{l2:g}': (l2, 0.0) for l2 in l2s if l2})
  settings.update({f'dropout_{p:g}': (0.0, p) for p in dropout_rates if p})
  configs = {}
  for name, (l2, dropout_rate) in settings.items():
    c = common.mnist_config(data_dir, num_epochs=num_epochs)
    c.l2 = l2
    c.model.dropout_rate = dropout_rate
    configs[name] = c
  return configs


def row(config, run: common.Run, train_accuracy: float) -> dict:
  return {'l2': config.l2, 'dropout_rate': config.model.dropout_rate,
          'train_accuracy': train_accuracy, 'test_accuracy': run.test['accuracy'],
          'gap': train_accuracy - run.test['accuracy']}


def plot(rows: list[dict], path: pathlib.Path, num_epochs: int) -> None:
  fig, axes = common.figure(1, 2, figsize=(11, 4))
  for ax, key, other, label in ((axes[0], 'l2', 'dropout_rate', 'L2 coefficient lambda'),
                                (axes[1], 'dropout_rate', 'l2', 'dropout rate p')):
    points = sorted((r[key], 100 * r['gap'], r['test_accuracy']) for r in rows if not r[other])
    x, gap, test = zip(*points)
    ax.plot(x, gap, 'o-', color='C0', label='gap')
    ax.set(xlabel=label, ylabel='train - test accuracy (percentage points)',
           title=f'gap after {num_epochs} epochs against {label.split(" ")[0]}')
    if key == 'l2':
      ax.set_xscale('symlog', linthresh=min((v for v in x if v), default=1.0))
    right = ax.twinx()
    right.plot(x, test, 's--', color='C1', label='test accuracy')
    right.set_ylabel('test accuracy', color='C1')
    ax.legend(loc='upper left', fontsize=8)
    right.legend(loc='upper right', fontsize=8)
  fig.suptitle('Regularisation of the MNIST-5k MLP (Adam 1e-3, no augmentation)')
  common.save(fig, path)


def main(argv):
  del argv
  root = pathlib.Path(FLAGS.workdir_root)
  configs = variants(FLAGS.data_dir, [float(v) for v in FLAGS.l2s],
                     [float(v) for v in FLAGS.dropout_rates], FLAGS.num_epochs)
  runs = common.train_all(configs, root, FLAGS.fresh)
  rows = [row(configs[name], run, common.evaluated(root / name, 'train')['accuracy'])
          for name, run in runs.items()]
  plot(rows, root / 'regularization.png', FLAGS.num_epochs)
  common.report('regularization', rows, num_epochs=FLAGS.num_epochs)


if __name__ == '__main__':
  common.define_flags('regularization')
  flags.DEFINE_list('l2s', ['1e-4', '1e-3', '1e-2'], 'config.l2 values (with 0).')
  flags.DEFINE_list('dropout_rates', ['0.25', '0.5', '0.75'],
                    'Dropout rates of the hidden layers (with 0).')
  flags.DEFINE_integer('num_epochs', 20, 'Epochs per run (31 steps each).')
  app.run(main)
