"""Eight optimizers on one model: the training loss against the step, on one figure.

  python -m experiments.science.optimizers --workdir_root=workdirs/science/optimizers

The MNIST-5k MLP (784-512-256-10, ReLU, He init; no dropout, no augmentation; batch 128,
constant learning rate) is trained for --num_epochs by each optimizer of
train/optimizers.py, whose docstring holds the update rules (momentum and Nesterov with
mu = 0.9, RMSProp and AdaDelta with rho = 0.9, Adam and Nadam with b1 = 0.9, b2 = 0.999).

The learning rate: each optimizer first runs at its usual default eta_0
(DEFAULT_LEARNING_RATES: the values of the papers and of Keras) times each of --factors
(a half-decade grid: eta_0 / sqrt(10), eta_0, sqrt(10) eta_0). While the lowest final
training loss (the mean over the last 10 steps) is at the edge of the rates tried, one
more rate half a decade past that edge is tried (at most --max_extra), so the chosen rate
has a worse one on either side. The run at the chosen rate is the one plotted: the
comparison is of how fast each optimizer reduces the training loss at its best rate on
this grid. Nothing is chosen on the test split; its accuracy is only reported. A run
that diverges (a NaN or infinite loss; those updates are skipped) counts as the worst.

The plot, optimizers.png in --workdir_root, shows the chosen runs' training loss (log
scale) against the step, and every grid run's final training loss against its learning
rate; the table and the JSON line give each optimizer's chosen rate, final training loss
and test accuracy.
"""

import math
import pathlib

from absl import app, flags

from experiments.science import common

FLAGS = flags.FLAGS

DEFAULT_LEARNING_RATES = {
    'sgd': 0.1, 'momentum': 0.01, 'nesterov': 0.01, 'adagrad': 0.01, 'rmsprop': 1e-3,
    'adadelta': 1.0, 'adam': 1e-3, 'nadam': 1e-3}


def run_name(optimizer: str, learning_rate: float) -> str:
  return f'{optimizer}_lr{learning_rate:g}'


def on_grid(learning_rate: float) -> float:
  """The nearest rate of the half-decade grid ..., 0.1, 0.316, 1, 3.16, 10, ..."""
  k = round(2 * math.log10(learning_rate))
  return float(f'{(3.16 if k % 2 else 1.0) * 10.0 ** (k // 2):.3g}')


def config(data_dir: str, optimizer: str, learning_rate: float, num_epochs: int):
  c = common.mnist_config(data_dir, num_epochs=num_epochs)
  c.optimizer.update(name=optimizer, learning_rate=learning_rate)
  c.on_nonfinite = 'skip'  # a diverging rate is a result of the search, not an error
  return c


def variants(data_dir: str, optimizers, factors, num_epochs: int) -> dict:
  """{run name: config}, one per optimizer and learning rate of the first grid."""
  configs = {}
  for name in optimizers:
    for factor in factors:
      learning_rate = on_grid(DEFAULT_LEARNING_RATES[name] * factor)
      configs[run_name(name, learning_rate)] = config(data_dir, name, learning_rate,
                                                      num_epochs)
  return configs


def next_rate(losses: dict[float, float]) -> float | None:
  """One half-decade past the edge of the rates tried when the lowest final training loss
  is at that edge; None once the best rate has a tried rate on either side."""
  rates = sorted(losses)
  best = min(rates, key=losses.get)
  if not math.isfinite(losses[best]) or len(rates) < 2:
    return None
  if best == rates[-1]:
    return on_grid(best * 10 ** 0.5)
  return on_grid(best / 10 ** 0.5) if best == rates[0] else None


def search(optimizer: str, root: pathlib.Path, max_extra: int) -> tuple[dict, dict]:
  """(configs, runs) of one optimizer: the first grid, then up to `max_extra` rates more,
  one at a time, while the best rate is at the edge of those tried."""
  configs = variants(FLAGS.data_dir, [optimizer], [float(f) for f in FLAGS.factors],
                     FLAGS.num_epochs)
  runs = common.train_all(configs, root, FLAGS.fresh)
  for _ in range(max_extra):
    learning_rate = next_rate({configs[name].optimizer.learning_rate: final_loss(run)
                               for name, run in runs.items()})
    if learning_rate is None:
      break
    name = run_name(optimizer, learning_rate)
    configs[name] = config(FLAGS.data_dir, optimizer, learning_rate, FLAGS.num_epochs)
    runs[name] = common.train(configs[name], root / name, FLAGS.fresh)
  return configs, runs


def final_loss(run: common.Run) -> float:
  """The last logged training loss; inf if the run diverged."""
  loss = run.final('loss')
  diverged = not math.isfinite(loss) or sum(run.curve('nonfinite_steps')[1]) > 0
  return math.inf if diverged else loss


def choose(runs: dict, configs: dict) -> dict:
  """{optimizer: name of its run with the lowest final training loss}."""
  best = {}
  for name, run in runs.items():
    optimizer = configs[name].optimizer.name
    if optimizer not in best or final_loss(run) < final_loss(runs[best[optimizer]]):
      best[optimizer] = name
  return best


def plot(runs: dict, configs: dict, best: dict, path: pathlib.Path) -> None:
  fig, (curves, grid) = common.figure(1, 2, figsize=(11, 4.2))
  for optimizer, name in best.items():
    line, = curves.plot(*runs[name].curve('loss'),
                        label=f'{optimizer} ({configs[name].optimizer.learning_rate:.3g})')
    points = sorted((configs[n].optimizer.learning_rate, final_loss(r))
                    for n, r in runs.items() if configs[n].optimizer.name == optimizer)
    grid.plot(*zip(*points), 'o-', color=line.get_color(), label=optimizer)
    grid.plot(configs[name].optimizer.learning_rate, final_loss(runs[name]), '*',
              color=line.get_color(), markersize=14)
  curves.set(xlabel='step', ylabel='training loss (mean of 10 steps)', yscale='log',
             title='training loss at the chosen learning rate')
  grid.set(xlabel='learning rate', ylabel='final training loss', xscale='log', yscale='log',
           title='the grid (star: chosen; diverged runs absent)')
  curves.legend(fontsize=8)
  grid.legend(fontsize=8)
  fig.suptitle('Optimizers on the MNIST-5k MLP (batch 128, constant rate)')
  common.save(fig, path)


def main(argv):
  del argv
  root = pathlib.Path(FLAGS.workdir_root)
  configs, runs = {}, {}
  for optimizer in FLAGS.optimizers:
    searched = search(optimizer, root, FLAGS.max_extra)
    configs.update(searched[0])
    runs.update(searched[1])
  best = choose(runs, configs)
  plot(runs, configs, best, root / 'optimizers.png')
  rows = [{'optimizer': optimizer, 'learning_rate': configs[name].optimizer.learning_rate,
           'train_loss': final_loss(runs[name]), 'test_loss': runs[name].test['loss'],
           'test_accuracy': runs[name].test['accuracy']} for optimizer, name in best.items()]
  grid = {name: final_loss(run) if math.isfinite(final_loss(run)) else None  # None: diverged
          for name, run in runs.items()}
  common.report('optimizers', rows, num_epochs=FLAGS.num_epochs,
                factors=[float(f) for f in FLAGS.factors], grid_final_train_loss=grid)


if __name__ == '__main__':
  common.define_flags('optimizers')
  flags.DEFINE_list('optimizers', list(DEFAULT_LEARNING_RATES), 'Optimizers to compare.')
  flags.DEFINE_list('factors', ['0.316', '1', '3.16'],
                    'Learning rates tried: each optimizer default times these.')
  flags.DEFINE_integer('num_epochs', 10, 'Epochs per run (31 steps each).')
  flags.DEFINE_integer('max_extra', 2, 'Rates tried past the edge of the first grid, at '
                       'most, per optimizer, while the best rate is at that edge.')
  app.run(main)
