"""Self-attention against a CNN as the training set grows (MNIST-5k).

  python -m experiments.science.attention_vs_cnn --data_dir=../shared/data/mnist5k \
      --workdir_root=/tmp/science/attention_vs_cnn

A convolution assumes what images are like: a unit sees only a small neighbourhood, and the
same filter is applied everywhere (locality, translation equivariance). Self-attention over
patches (nets/patch_transformer.py) assumes neither: every patch may draw on every other with
weights computed from the data, and where a patch lies is only a learned position vector. The
attention model can express more functions, so it needs more examples to find the right one;
with few examples the CNN's built-in assumptions win.

Both models train on nested, class-balanced subsets of the 4,000 training digits
(config.data.train_indices; --sizes) for the same --num_steps at batch --batch_size with Adam
at a constant 1e-3, without augmentation (which would give both some translation invariance)
or dropout (common.mnist_config), and are tested on the 1,000 held-out digits (nothing is
chosen on them: one setting per model, fixed in advance):

  cnn                experiments/configs/mnist_cnn.py narrowed: conv-BN-ReLU-pool with 16
                     and 32 channels, dense 64 (106k parameters)
  patch_transformer  16 patches of 7 x 7, [CLS], learned positions, 2 pre-norm blocks,
                     4 heads, D = 64, MLP 128 (nets/patch_transformer.py; 72k parameters)

The plot, attention_vs_cnn.png in --workdir_root, shows test accuracy against the training set
size for both; the table and the closing JSON line give the accuracies and their gap.
"""

import pathlib

import numpy as np
from absl import app, flags

from experiments.science import common

FLAGS = flags.FLAGS

# Sized alike: 106k and 72k parameters (mnist_cnn's own 32 and 64 channels cost 4x the time).
CNN = {'features': (16, 32), 'hidden': (64,)}
PATCH_TRANSFORMER = {'name': 'patch_transformer', 'patch_size': 7, 'num_layers': 2,
                     'num_heads': 4, 'model_dim': 64, 'mlp_dim': 128, 'dropout_rate': 0.0,
                     'norm': 'pre', 'positional': 'learned', 'pool': 'cls'}


def nested_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
  """The first `size` rows (sorted) of a class-balanced random order of the examples.

  Each class is shuffled; the order takes the first example of every class, then the second
  of every class, and so on (classes in random order within a round), so a subset holds
  floor or ceil of size / K of every class while the classes last, and a smaller subset is
  part of every larger one.
  """
  rng = np.random.default_rng(seed)
  round_of = np.empty(len(labels), np.int64)
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    round_of[members] = np.arange(len(members))
  order = np.lexsort((rng.permutation(len(labels)), round_of))  # by round, then at random
  return np.sort(order[:size])


def run_config(model: str, rows: np.ndarray | None = None):
  c = common.mnist_config(FLAGS.data_dir, 'cnn', batch_size=FLAGS.batch_size)
  if model == 'cnn':
    c.model.update(CNN)
  else:
    c.model = c.model.__class__(PATCH_TRANSFORMER)
  c.update(num_epochs=-1, num_steps=FLAGS.num_steps, log_every=50,
           eval_every=FLAGS.num_steps, checkpoint_every=FLAGS.num_steps)
  if rows is not None:
    c.data.train_indices = tuple(int(i) for i in rows)
  return c


def plot(rows: list[dict], path: pathlib.Path):
  fig, ax = common.figure(figsize=(6.5, 4.2))
  sizes = [r['train_size'] for r in rows]
  for model in FLAGS.models:
    ax.plot(sizes, [r[model] for r in rows], 'o-', label=model)
  ax.set(xscale='log', xticks=sizes, xticklabels=[str(s) for s in sizes],
         xlabel='training examples (class-balanced, nested)', ylabel='test accuracy (1,000)',
         title=f'Attention over patches vs a CNN: {FLAGS.num_steps} steps of {FLAGS.batch_size}')
  ax.minorticks_off()
  ax.grid(alpha=0.3)
  ax.legend(loc='lower right')
  common.save(fig, path)


def main(argv):
  del argv
  from train import data

  root = pathlib.Path(FLAGS.workdir_root)
  labels = data.build(run_config('cnn')).train.arrays['label']
  rows = []
  for size in map(int, FLAGS.sizes):
    row = {'train_size': size}
    for model in FLAGS.models:
      run = common.train(run_config(model, nested_subset(labels, size)),
                         root / f'{model}_{size}', FLAGS.fresh)
      row[model] = run.test['accuracy']
    if set(FLAGS.models) == {'cnn', 'patch_transformer'}:
      row['cnn_minus_attention'] = row['cnn'] - row['patch_transformer']
    rows.append(row)
  plot(rows, root / 'attention_vs_cnn.png')
  common.report('attention_vs_cnn', rows, num_steps=FLAGS.num_steps,
                batch_size=FLAGS.batch_size)


if __name__ == '__main__':
  common.define_flags('attention_vs_cnn')
  flags.DEFINE_list('sizes', ['250', '500', '1000', '2000', '4000'], 'Training set sizes.')
  flags.DEFINE_list('models', ['cnn', 'patch_transformer'], 'Models to compare.')
  flags.DEFINE_integer('num_steps', 400, 'Steps per run, whatever the size.')
  flags.DEFINE_integer('batch_size', 64, 'Batch size of every run.')
  app.run(main)
