"""Choosing an MLP's width by k-fold cross-validation on MNIST-5k, then testing the choice once.

  python -m experiments.science.kfold --data_dir=../shared/data/mnist5k \
      --workdir_root=/tmp/science/kfold

The 4,000 training digits are dealt into k stratified folds V_1..V_k (train/cross_validation.py).
For every candidate width h of a one-hidden-layer MLP 784-h-10 (ReLU, Adam at a constant
1e-3, batch 128, --num_epochs; no dropout or augmentation: common.mnist_config) and every fold
i, the engine trains on T_i = the other folds (config.data.train_indices) and evaluates on V_i
(config.data.eval_indices); the validation accuracy s(h, i) gives

    mean(h) = 1/k sum_i s(h, i),   std(h) over the folds,   h* = argmax_h mean(h).

Only then is h* trained on all 4,000 training digits and scored on the 1,000 test digits, which
nothing was chosen on: that test accuracy estimates how the selected model does on new data.

The plot, kfold.png in --workdir_root, shows each fold's validation accuracy and the mean +- std
against the width, and the chosen width's test accuracy; the table and the closing JSON line
give the same numbers.
"""

import pathlib

from absl import app, flags

from experiments.science import common

FLAGS = flags.FLAGS


def run_config(width: int, train_rows=None, eval_rows=None):
  c = common.mnist_config(FLAGS.data_dir, 'mlp', FLAGS.num_epochs, evaluations=1)
  c.model.hidden = (width,)
  if train_rows is not None:
    c.data.train_indices = tuple(int(i) for i in train_rows)
    c.data.eval_indices = tuple(int(i) for i in eval_rows)
  return c


def plot(widths, selection, test_accuracy: float, path: pathlib.Path):
  import numpy as np
  fig, ax = common.figure(figsize=(6.5, 4.2))
  for scores, width in zip(selection.scores, widths):
    ax.plot([width] * len(scores), scores, 'o', color='0.6', ms=4)
  ax.errorbar(widths, selection.mean, yerr=selection.std, fmt='s-', capsize=4,
              label=f'validation, mean +- std over {selection.scores.shape[1]} folds')
  best = widths[selection.best_index]
  ax.plot([best], [test_accuracy], '*', ms=15, color='tab:red',
          label=f'h={best} retrained on all 4,000: test {test_accuracy:.3f}')
  ax.set(xscale='log', xticks=widths, xticklabels=[str(w) for w in widths],
         xlabel='hidden width h (784-h-10 MLP)', ylabel='accuracy',
         title='Choosing the width by k-fold cross-validation (MNIST-5k)')
  ax.set_ylim(min(np.min(selection.scores), test_accuracy) - 0.01, 1.0)
  ax.legend(loc='lower right')
  common.save(fig, path)


def main(argv):
  del argv
  from train import cross_validation, data

  root = pathlib.Path(FLAGS.workdir_root)
  widths = [int(w) for w in FLAGS.widths]
  labels = data.build(run_config(widths[0])).train.arrays['label']
  folds = {}  # fold training sets, to name each run's workdir by its fold

  def validation_accuracy(width, train_rows, eval_rows):
    fold = folds.setdefault(tuple(eval_rows), len(folds))
    run = common.train(run_config(width, train_rows, eval_rows),
                       root / f'h{width}_fold{fold}', FLAGS.fresh)
    return run.curve('accuracy', 'eval')[1][-1]

  selection = cross_validation.select_by_kfold(
      widths, validation_accuracy, len(labels), FLAGS.k, FLAGS.fold_seed, labels)
  final = common.train(run_config(selection.best), root / f'h{selection.best}_all', FLAGS.fresh)
  test_accuracy = final.test['accuracy']
  plot(widths, selection, test_accuracy, root / 'kfold.png')
  rows = [{'width': w, 'val_mean': float(m), 'val_std': float(s),
           'folds': ' '.join(f'{v:.3f}' for v in scores),
           'chosen': w == selection.best}
          for w, m, s, scores in zip(widths, selection.mean, selection.std, selection.scores)]
  common.report('kfold', rows, k=FLAGS.k, num_epochs=FLAGS.num_epochs, chosen=selection.best,
                chosen_test_accuracy=test_accuracy)


if __name__ == '__main__':
  common.define_flags('kfold')
  flags.DEFINE_list('widths', ['16', '64', '256', '1024'], 'Candidate hidden widths.')
  flags.DEFINE_integer('k', 5, 'Number of folds.')
  flags.DEFINE_integer('num_epochs', 10, 'Epochs per run.')
  flags.DEFINE_integer('fold_seed', 0, 'Seed of the folds.')
  app.run(main)
