"""Does a deeper plain net train worse, and do shortcuts fix it? (He et al. 2016)

  python -m experiments.science.depth --workdir_root=workdirs/science/depth

Three nets of nets/resnet.py on MNIST-5k (no augmentation; batch 128; SGD with momentum
0.9 from the paper's rate 0.1, cosine-decayed to 0 over --num_epochs): a shallow plain net of
--shallow_blocks blocks per stage, a deep plain net of --deep_blocks per stage, and the deep
net with its shortcuts (widths --width, 2 --width, 4 --width; depth = 6 * blocks + 2
weighted layers). Every block computes y = relu(BN(conv(relu(BN(conv(x))))) + s(x)), with
s(x) = x or a 1x1 projection in the residual net and s = 0 in the plain ones.

The deep plain net nearly holds the shallow one as a special case (extra blocks computing
the identity, batch norm's batch statistics aside), so if it reaches a higher TRAINING
loss, that is not over-fitting or too little capacity (model bias) but the optimiser
failing to find that solution; with shortcuts the identity is the zero residual. He et al.
saw the plain net degrade from 20 to 56 layers (CIFAR-10, 64k steps). Measured with the
defaults (8 vs 26 layers, 124 steps, 250 s of CPU): training loss plain-8 0.430, plain-26
0.192, residual-26 0.064 (test accuracy 0.903, 0.935, 0.970). The shortcuts cut the loss
3x, but at this size and budget depth still helps the plain net too: the degradation does
not show. --shallow_blocks=3 --deep_blocks=9 is the paper's 20 vs 56 (not measured: beyond
the shared 2-core machine's budget).

The training loss compared is that of the final parameters on all 4,000 training digits,
evaluated like the test split (batch norm's running averages; experiments/evaluate.py);
the plot, depth.png in --workdir_root, also shows the logged training loss (mean over 10
steps, batch statistics) against the step. The table and the JSON line give both, with the test loss
and accuracy (reported only; nothing is chosen on the test digits).
"""

import pathlib

from absl import app, flags

from experiments.science import common

FLAGS = flags.FLAGS


def depth(blocks: int) -> int:
  return 6 * blocks + 2


def variants(data_dir: str, shallow: int, deep: int, width: int, num_epochs: int) -> dict:
  """{run name: config}: plain shallow, plain deep, residual deep."""
  from experiments.configs import mnist_resnet
  configs = {}
  for residual, blocks in ((False, shallow), (False, deep), (True, deep)):
    c = common.mnist_config(data_dir, 'cnn', num_epochs=num_epochs)
    c.model = mnist_resnet.get_config().model
    c.model.update(stage_blocks=(blocks,) * 3, features=(width, 2 * width, 4 * width),
                   stem_features=width, residual=residual)
    c.optimizer.update(name='momentum', learning_rate=0.1, momentum=0.9, weight_decay=0.0,
                       schedule='cosine')
    configs[f'{"residual" if residual else "plain"}_{depth(blocks)}'] = c
  return configs


def plot(runs: dict, rows: list[dict], path: pathlib.Path) -> None:
  fig, (curves, bars) = common.figure(1, 2, figsize=(11, 4.2))
  for (name, run), row in zip(runs.items(), rows):
    curves.plot(*run.curve('loss'), label=name, linestyle='-' if row['residual'] else '--')
  curves.set(xlabel='step', ylabel='training loss (mean of 10 steps)', yscale='log',
             title='training loss (batch statistics)')
  curves.legend()
  names = list(runs)
  x = range(len(names))
  bars.bar([i - 0.2 for i in x], [r['train_loss'] for r in rows], 0.4,
           label='training loss (final parameters, all training digits)')
  bars.bar([i + 0.2 for i in x], [r['test_loss'] for r in rows], 0.4, label='test loss')
  bars.set(xticks=list(x), xticklabels=names, ylabel='loss', yscale='log',
           title='after the last step')
  bars.legend(fontsize=8)
  fig.suptitle('Plain vs residual nets on MNIST-5k (SGD momentum 0.9, rate 0.1, cosine)')
  common.save(fig, path)


def main(argv):
  del argv
  root = pathlib.Path(FLAGS.workdir_root)
  configs = variants(FLAGS.data_dir, FLAGS.shallow_blocks, FLAGS.deep_blocks, FLAGS.width,
                     FLAGS.num_epochs)
  runs = common.train_all(configs, root, FLAGS.fresh)
  rows = []
  for name, run in runs.items():
    on_train = common.evaluated(root / name, split='train')
    rows.append({'net': name, 'residual': configs[name].model.residual,
                 'layers': depth(configs[name].model.stage_blocks[0]),
                 'train_loss': float(on_train['loss']),
                 'train_accuracy': float(on_train['accuracy']),
                 'logged_train_loss': run.final('loss'), 'test_loss': run.test['loss'],
                 'test_accuracy': run.test['accuracy']})
  plot(runs, rows, root / 'depth.png')
  common.report('depth', rows, num_epochs=FLAGS.num_epochs, width=FLAGS.width)


if __name__ == '__main__':
  common.define_flags('depth')
  flags.DEFINE_integer('shallow_blocks', 1, 'Blocks per stage of the shallow plain net.')
  flags.DEFINE_integer('deep_blocks', 4, 'Blocks per stage of the deep nets.')
  flags.DEFINE_integer('width', 8, 'Channels of the first stage (then 2x, 4x).')
  flags.DEFINE_integer('num_epochs', 4, 'Epochs per run (31 steps each).')
  app.run(main)
