"""Initialisation schemes against the loss of a deep MLP's first steps.

  python -m experiments.science.initialization --workdir_root=workdirs/science/initialization

An MLP of --depth hidden layers of --width units (ReLU; --activations=relu,tanh adds a
panel for tanh) on MNIST-5k is trained for --num_steps steps of SGD with momentum 0.9
(batch 128, constant rate; no dropout, no augmentation), once per scheme of nets/mlp.py's
INITIALIZERS (biases start at 0):

  zeros         W = 0: every unit of a layer computes the same thing and gets the same
                gradient, so a hidden layer never has more than one distinct unit
  small_normal  W ~ N(0, 0.01^2): the signal shrinks by about 0.01 sqrt(fan_in) a layer
  lecun         Var W = 1 / fan_in: keeps the pre-activation variance (tanh's regime)
  glorot        Var W = 2 / (fan_in + fan_out), uniform: the compromise of forward and
                backward variance for tanh and sigmoid
  he            Var W = 2 / fan_in: makes up for ReLU zeroing half of its inputs

Plain SGD is used because adaptive optimizers rescale each weight's step and so hide
part of what a bad scale does to the gradients. The loss is logged at every step. The
plot, initialization.png in --workdir_root, shows the training loss against the step
for each scheme, one panel per activation; the table and the JSON line give the loss
and gradient norm at step 1 (the initial network, before any update), the loss at the
last step and the test accuracy after it.
"""

import pathlib

from absl import app, flags

from experiments.science import common
from nets.mlp import INITIALIZERS

FLAGS = flags.FLAGS


def variants(data_dir: str, activations, initializers, depth: int, width: int,
             num_steps: int, learning_rate: float) -> dict:
  """{'<activation>_<initializer>': config} for every pair."""
  configs = {}
  for activation in activations:
    for initializer in initializers:
      c = common.mnist_config(data_dir)
      c.model.update(hidden=(width,) * depth, activation=activation, initializer=initializer)
      c.optimizer.update(name='momentum', momentum=0.9, learning_rate=learning_rate)
      c.update(num_steps=num_steps, log_every=1, eval_every=num_steps,
               checkpoint_every=num_steps, on_nonfinite='skip')
      configs[f'{activation}_{initializer}'] = c
  return configs


def row(config, run: common.Run) -> dict:
  return {'activation': config.model.activation, 'initializer': config.model.initializer,
          'loss_step_1': run.curve('loss')[1][0], 'grad_norm_step_1': run.curve('grad_norm')[1][0],
          'loss_last': run.final('loss'), 'test_accuracy': run.test['accuracy']}


def plot(runs: dict, configs: dict, path: pathlib.Path) -> None:
  activations = list(dict.fromkeys(c.model.activation for c in configs.values()))
  fig, axes = common.figure(1, len(activations), figsize=(5.5 * len(activations), 4),
                            squeeze=False)
  for ax, activation in zip(axes[0], activations):
    for name, run in runs.items():
      if configs[name].model.activation == activation:
        ax.plot(*run.curve('loss'), label=configs[name].model.initializer)
    ax.set(xlabel='step', ylabel='training loss (one batch)', yscale='log',
           title=f'{activation}')
    ax.legend(fontsize=8)
  c = next(iter(configs.values()))
  fig.suptitle(f'Initialisation of a {len(c.model.hidden)} x {c.model.hidden[0]} MLP on '
               f'MNIST-5k\n(SGD, momentum 0.9, lr {c.optimizer.learning_rate:g})')
  common.save(fig, path)


def main(argv):
  del argv
  root = pathlib.Path(FLAGS.workdir_root)
  configs = variants(FLAGS.data_dir, FLAGS.activations, FLAGS.initializers, FLAGS.depth,
                     FLAGS.width, FLAGS.num_steps, FLAGS.learning_rate)
  runs = common.train_all(configs, root, FLAGS.fresh)
  plot(runs, configs, root / 'initialization.png')
  common.report('initialization', [row(configs[n], run) for n, run in runs.items()],
                depth=FLAGS.depth, width=FLAGS.width, num_steps=FLAGS.num_steps,
                learning_rate=FLAGS.learning_rate)


if __name__ == '__main__':
  common.define_flags('initialization')
  flags.DEFINE_list('activations', ['relu'], 'Hidden-layer activations (relu, tanh, ...).')
  flags.DEFINE_list('initializers', list(INITIALIZERS), 'Schemes of nets/mlp.py.')
  flags.DEFINE_integer('depth', 8, 'Hidden layers.')
  flags.DEFINE_integer('width', 256, 'Units per hidden layer.')
  flags.DEFINE_integer('num_steps', 200, 'Steps per run (the loss is logged at each).')
  flags.DEFINE_float('learning_rate', 0.01, 'SGD learning rate (momentum 0.9).')
  app.run(main)
