"""A curve as a sum of sigmoids, and the hard sigmoid as two ReLUs.

  python -m experiments.science.sigmoid_fit --workdir_root=/tmp/science/sigmoid_fit

Sigmoids. A network with one hidden layer of n sigmoid units and a linear output is

    y(x) = b + sum_{i=1..n} c_i sigmoid(w_i x + b_i),

a sum of smoothed steps, each placed at x = -b_i / w_i with steepness w_i and height c_i. The
engine trains it (task 'regression', squared error, model MLP(hidden=(n,), activation=
'sigmoid', output='linear')) on noisy points of the curve of train/data/curves.py, once per
--units value; the test loss is the mean squared distance to the noise-free curve on a grid.
More units fit more bends, so the error falls as n grows.

Hard sigmoids. The hard sigmoid of height c rising linearly from x_0 to x_1 is two ReLUs,

    c [ReLU(w x + b) - ReLU(w x + b')],   w = 1 / (x_1 - x_0),  b = -w x_0,  b' = -w x_1,

0 left of x_0 (both off), c (x - x_0) / (x_1 - x_0) between (one on), and c right of x_1 (both
on, the ramps cancel). A constant plus n of them, with knots x_0 < ... < x_n and heights
c_i = f(x_i) - f(x_{i-1}), is the piecewise-linear interpolation of f at the knots: the
seeds' argument that enough (hard) sigmoids approximate any continuous curve. Between knots
h apart its error is at most h^2 max|f''| / 8, so for a smooth f the mean squared error falls
like 1 / n^4 once the knots resolve every bend. That part is computed, not trained; its knots
are evenly spaced, where the trained sigmoids place their steps where the curve bends.

The plot, sigmoid_fit.png in --workdir_root, shows the data and the trained fits, one hard
sigmoid beside its two ReLUs, the piecewise-linear construction, and both errors against n.
"""

import pathlib

import numpy as np
from absl import app, flags

from experiments.science import common

FLAGS = flags.FLAGS


def relu(x):
  return np.maximum(x, 0.0)


def hard_sigmoid(x, x0: float, x1: float, c: float = 1.0):
  """c [ReLU(w x + b) - ReLU(w x + b')] with w = 1/(x1 - x0), b = -w x0, b' = -w x1."""
  w = 1.0 / (x1 - x0)
  return c * (relu(w * x - w * x0) - relu(w * x - w * x1))


def hard_sigmoid_sum(x, knots, values):
  """f(x_0) + sum_i (f(x_i) - f(x_{i-1})) hard_sigmoid(x; x_{i-1}, x_i): 2n ReLUs."""
  heights = np.diff(values)
  return values[0] + sum(hard_sigmoid(x, a, b, c)
                         for a, b, c in zip(knots[:-1], knots[1:], heights))


def sigmoid_sum(params, x):
  """b + sum_i c_i sigmoid(w_i x + b_i) from the trained MLP's parameters."""
  hidden, out = params['Dense_0'], params['Dense_1']
  w, b_i = np.asarray(hidden['kernel'])[0], np.asarray(hidden['bias'])
  c, b = np.asarray(out['kernel'])[:, 0], float(np.asarray(out['bias'])[0])
  return b + (1.0 / (1.0 + np.exp(-(np.outer(x, w) + b_i)))) @ c


def run_config(units: int, num_steps: int):
  from experiments.configs import default
  c = default.get_config()
  c.update(dataset='curve', task='regression', loss='mse')
  c.data = c.data.__class__({'num_train': 256, 'num_test': 600, 'noise': 0.05})
  c.model.update(hidden=(units,), activation='sigmoid', output='linear')
  c.optimizer.update(name='adam', learning_rate=0.02, schedule='cosine')
  c.update(batch_size=256, num_steps=num_steps, log_every=100, eval_every=num_steps,
           checkpoint_every=num_steps)
  return c


def plot(fits: dict, rows: list[dict], train: dict, path: pathlib.Path):
  from train.data import curves
  grid = np.linspace(curves.LOW, curves.HIGH, 600)
  fig, (fit_ax, relu_ax, pl_ax, err_ax) = common.figure(1, 4, figsize=(18, 4.2))
  fit_ax.plot(train['inputs'][:, 0], train['target'][:, 0], '.', color='0.7', ms=3,
              label='training points')
  for units, params in fits.items():
    fit_ax.plot(grid, sigmoid_sum(params, grid), label=f'{units} sigmoid' + 's' * (units > 1))
  fit_ax.set(xlabel='x', ylabel='y', title='b + sum_i c_i sigmoid(w_i x + b_i), trained')
  fit_ax.legend(fontsize=7)

  x = np.linspace(-1.5, 2.5, 401)
  w, x0, x1 = 1.0 / 1.5, -0.5, 1.0
  relu_ax.plot(x, relu(w * x - w * x0), '--', label='ReLU(w x + b)')
  relu_ax.plot(x, -relu(w * x - w * x1), '--', label="-ReLU(w x + b')")
  relu_ax.plot(x, hard_sigmoid(x, x0, x1), 'k', lw=2, label='sum: hard sigmoid')
  relu_ax.set(xlabel='x', title=f'hard sigmoid from x_0={x0} to x_1={x1}')
  relu_ax.legend(fontsize=8)

  pl_ax.plot(grid, curves.curve(grid), 'k', lw=2, label='f')
  for n in (4, 8, 16):
    knots = np.linspace(curves.LOW, curves.HIGH, n + 1)
    pl_ax.plot(grid, hard_sigmoid_sum(grid, knots, curves.curve(knots)),
               label=f'{n} hard sigmoids ({2 * n} ReLUs)')
  pl_ax.set(xlabel='x', title='constant + sum of hard sigmoids')
  pl_ax.legend(fontsize=7)

  units = [r['units'] for r in rows]
  err_ax.plot(units, [r['test_mse'] for r in rows], 'o-', label='sigmoids, trained')
  err_ax.plot(units, [r['hard_sigmoid_mse'] for r in rows], 's-',
              label='hard sigmoids at even knots')
  err_ax.axhline(0.05 ** 2, ls=':', color='0.5', label='noise variance of the points')
  err_ax.set(xscale='log', yscale='log', xticks=units, xticklabels=[str(u) for u in units],
             xlabel='number of units n', ylabel='mean squared error to f (grid)',
             title='error against n')
  err_ax.legend(fontsize=7)
  common.save(fig, path)


def main(argv):
  del argv
  from train import data
  from train.data import curves

  root = pathlib.Path(FLAGS.workdir_root)
  grid = np.linspace(curves.LOW, curves.HIGH, 600)  # the test split's grid
  fits, rows = {}, []
  for units in map(int, FLAGS.units):
    run = common.train(run_config(units, FLAGS.num_steps), root / f'units_{units}', FLAGS.fresh)
    fits[units] = params = run.state.params
    knots = np.linspace(curves.LOW, curves.HIGH, units + 1)
    rows.append({'units': units, 'train_mse': run.curve('loss')[1][-1],
                 'test_mse': run.test['loss'],
                 'formula_mse': float(np.mean((sigmoid_sum(params, grid) - curves.curve(grid))
                                              ** 2)),
                 'hard_sigmoid_mse': float(np.mean(
                     (hard_sigmoid_sum(grid, knots, curves.curve(knots)) - curves.curve(grid))
                     ** 2))})
  train = data.build(run_config(1, FLAGS.num_steps)).train.arrays
  plot(fits, rows, train, root / 'sigmoid_fit.png')
  common.report('sigmoid_fit', rows, num_steps=FLAGS.num_steps)


if __name__ == '__main__':
  common.define_flags('sigmoid_fit')
  flags.DEFINE_list('units', ['1', '2', '4', '8', '16', '32'], 'Numbers n of sigmoid units.')
  flags.DEFINE_integer('num_steps', 4000, 'Full-batch Adam steps per run.')
  app.run(main)
